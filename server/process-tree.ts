/**
 * CPU time and memory of a process and everything it started, read from /proc (Linux): worker
 * threads are part of the process, but the codec processes are its children, and both count
 * towards what a session costs. Elsewhere only this process's own CPU is known.
 */
import { readdir, readFile } from 'node:fs/promises';

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

async function readStat(pid: number): Promise<ProcStat | null> {
  try {
    const raw = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // After the command: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14) … rss pages(21);
    // cutime/cstime hold the children that exited and were reaped, so their CPU is not lost.
    const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    return { pid, ppid: Number(f[1]), cpuS: ticks / TICKS_PER_S, rssMiB: (Number(f[21]) * PAGE) / 2 ** 20 };
  } catch {
    return null;
  }
}

export async function sampleProcessTree(root = process.pid): Promise<TreeSample> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    const u = process.cpuUsage();
    return { cpuS: (u.user + u.system) / 1e6, rssMiB: process.memoryUsage().rss / 2 ** 20, processes: 1 };
  }
  const all = (await Promise.all(names.filter((n) => /^\d+$/.test(n)).map((n) => readStat(Number(n))))).filter((s): s is ProcStat => s !== null);
  const children = new Map<number, ProcStat[]>();
  for (const s of all) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const rootStat = all.find((s) => s.pid === root);
  if (!rootStat) return { cpuS: 0, rssMiB: 0, processes: 0 };
  const out: TreeSample = { cpuS: 0, rssMiB: 0, processes: 0 };
  const stack = [rootStat];
  while (stack.length) {
    const s = stack.pop()!;
    out.cpuS += s.cpuS;
    out.rssMiB += s.rssMiB;
    out.processes++;
    stack.push(...(children.get(s.pid) ?? []));
  }
  return out;
}
