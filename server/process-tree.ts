/**
 * CPU time and memory of a process and everything it started, read from /proc (Linux): worker
 * threads are part of the process, but the codec processes are its children, and both count
 * towards what a session costs. Elsewhere only this process's own CPU is known.
 *
 * The reads are synchronous on purpose: procfs files are generated in memory, and a sample is a
 * hundred or so small reads. Through fs/promises each file was four thread-pool round trips, and a
 * scan of all of /proc: a sample of a server with five sessions took 14 ms of CPU, now 5 ms.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';

/** USER_HZ: /proc times are in these ticks. */
const TICKS_PER_S = 100;
const PAGE = 4096;

export interface TreeSample {
  /** CPU seconds used so far by the process and its live descendants (and the children they reaped). */
  cpuS: number;
  /** Resident memory of the process and its live descendants. */
  rssMiB: number;
  processes: number;
}

interface ProcStat {
  pid: number;
  ppid: number;
  cpuS: number;
  rssMiB: number;
}

function readStat(pid: number): ProcStat | null {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // After the command: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14) … rss pages(21);
    // cutime/cstime hold the children that exited and were reaped, so their CPU is not lost.
    const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    return { pid, ppid: Number(f[1]), cpuS: ticks / TICKS_PER_S, rssMiB: (Number(f[21]) * PAGE) / 2 ** 20 };
  } catch {
    return null;
  }
}

/**
 * Whether the kernel lists each thread's children in /proc/PID/task/TID/children
 * (CONFIG_PROC_CHILDREN): then a sample visits only the tree, not every process on the machine.
 */
const CHILDREN_FILES = existsSync(`/proc/self/task/${process.pid}/children`);

/** The direct children of `pid` (each of its threads lists the children it forked) that are still there. */
function childrenOf(pid: number): ProcStat[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return []; // the process is gone
  }
  const out: ProcStat[] = [];
  for (const tid of tids) {
    let list = '';
    try {
      list = readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1');
    } catch {
      // a thread that ended between the two reads
    }
    for (const c of list.split(' ')) {
      const child = c ? readStat(Number(c)) : null;
      if (child) out.push(child);
    }
  }
  return out;
}

/** Every process's children, by parent, from a scan of all of /proc. */
function childrenByScan(): Map<number, ProcStat[]> {
  const children = new Map<number, ProcStat[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (!s) continue;
    const list = children.get(s.ppid);
    if (list) list.push(s);
    else children.set(s.ppid, [s]);
  }
  return children;
}

/** Whether there is a /proc to read (Linux); elsewhere only this process's own figures are known. */
const PROC = existsSync('/proc/self/stat');

/**
 * `walk`: how children are found, "children" files or a "scan" of /proc; the default is the
 * cheaper one this kernel supports (the choice is a parameter so a test can compare the two).
 */
export function sampleProcessTree(root = process.pid, walk: 'children' | 'scan' = CHILDREN_FILES ? 'children' : 'scan'): TreeSample {
  if (!PROC) {
    const u = process.cpuUsage();
    return { cpuS: (u.user + u.system) / 1e6, rssMiB: process.memoryUsage().rss / 2 ** 20, processes: 1 };
  }
  const rootStat = readStat(root);
  if (!rootStat) return { cpuS: 0, rssMiB: 0, processes: 0 };
  const scanned = walk === 'scan' ? childrenByScan() : undefined;
  const out: TreeSample = { cpuS: 0, rssMiB: 0, processes: 0 };
  const stack = [rootStat];
  while (stack.length) {
    const s = stack.pop()!;
    out.cpuS += s.cpuS;
    out.rssMiB += s.rssMiB;
    out.processes++;
    // The scan read every stat already; the walk reads each child's as it finds it.
    stack.push(...(scanned ? scanned.get(s.pid) ?? [] : childrenOf(s.pid)));
  }
  return out;
}
