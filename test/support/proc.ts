/**
 * CPU time and memory of a process and everything it started (worker threads are part of the
 * process; codec child processes are not, so they are summed in), read from /proc.
 */
import { readdir, readFile } from 'node:fs/promises';

/** USER_HZ on Linux: /proc times are in these ticks. */
const TICKS = 100;

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
    // fields after the command: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14) … rss pages(21);
    // cutime/cstime hold the children that exited and were reaped, so their CPU is not lost.
    const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    return { pid, ppid: Number(f[1]), cpuS: ticks / TICKS, rssMiB: (Number(f[21]) * 4096) / 2 ** 20 };
  } catch {
    return null;
  }
}

export interface TreeSample {
  /** CPU seconds used so far by the process and its live descendants. */
  cpuS: number;
  /** Resident memory of the process and its live descendants. */
  rssMiB: number;
  processes: number;
}

export async function sampleTree(root: number): Promise<TreeSample> {
  const all: ProcStat[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = await readStat(Number(name));
    if (s) all.push(s);
  }
  const children = new Map<number, ProcStat[]>();
  for (const s of all) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const rootStat = all.find((s) => s.pid === root);
  if (!rootStat) return { cpuS: 0, rssMiB: 0, processes: 0 };
  let cpuS = 0;
  let rssMiB = 0;
  let processes = 0;
  const stack = [rootStat];
  while (stack.length) {
    const s = stack.pop()!;
    cpuS += s.cpuS;
    rssMiB += s.rssMiB;
    processes++;
    stack.push(...(children.get(s.pid) ?? []));
  }
  return { cpuS, rssMiB, processes };
}
