/**
 * Admission control: a new session is refused (503) when the server's CPU could not carry it,
 * before the machine is overloaded, rather than letting every session's frame rate sag.
 *
 * The server's load is the CPU time of its whole process tree (the Node process with its worker
 * threads, and the codec processes it started), sampled every second and smoothed. A session's
 * cost is learnt from that load divided by the sessions that made it. A new session is admitted
 * when load + (sessions started in the last few seconds, not yet in the load) × cost + one more
 * session's cost stays within `maxLoad` × the machine's cores. The first session is always
 * admitted; `--max-sessions` stays a hard limit beside this one.
 */
import os from 'node:os';
import { metrics } from '../metrics.ts';
import { sampleProcessTree } from '../process-tree.ts';

/** Sessions younger than this are not yet fully in the measured load. */
const SETTLE_MS = 5000;
const SAMPLE_MS = 1000;
/** Smoothing of the load and cost estimates (weight of the newest sample). */
const ALPHA = 0.3;

export interface CapacityReport {
  /** Cores' worth of CPU the server uses now (smoothed). */
  loadCores: number;
  /** Learnt cost of one session, in cores; null until measured. */
  sessionCores: number | null;
  /** What the server may use: maxLoad × cores. */
  budgetCores: number;
  /** Sessions the budget holds at the learnt cost (null until measured). */
  estimate: number | null;
}

export class Capacity {
  private load = 0;
  private cost: number | null = null;
  private lastCpu?: number;
  private lastAt = 0;
  private readonly starts: number[] = [];
  private readonly timer: NodeJS.Timeout;
  readonly budgetCores: number;

  private readonly cpuSeconds: () => Promise<number>;
  private readonly now: () => number;

  constructor(
    maxLoad: number,
    /** Sessions live now. */
    private readonly sessions: () => number,
    opts: { cores?: number; cpuSeconds?: () => Promise<number>; now?: () => number; sampleEveryMs?: number } = {},
  ) {
    this.budgetCores = maxLoad * (opts.cores ?? os.availableParallelism());
    this.cpuSeconds = opts.cpuSeconds ?? (async () => sampleProcessTree().cpuS);
    this.now = opts.now ?? (() => performance.now());
    this.timer = setInterval(() => void this.sample(), opts.sampleEveryMs ?? SAMPLE_MS);
    this.timer.unref();
  }

  /** Takes one load sample (the timer calls it every second). */
  async sample(): Promise<void> {
    const cpu = await this.cpuSeconds();
    const now = this.now();
    const last = this.lastCpu;
    const lastAt = this.lastAt;
    this.lastCpu = cpu;
    this.lastAt = now;
    if (last === undefined) return;
    const load = (cpu - last) / ((now - lastAt) / 1000);
    this.load = this.load === 0 ? load : this.load + ALPHA * (load - this.load);
    const settled = this.sessions() - this.recentStarts(now);
    if (settled > 0 && this.recentStarts(now) === 0) {
      const perSession = this.load / settled;
      this.cost = this.cost === null ? perSession : this.cost + ALPHA * (perSession - this.cost);
    }
    const r = this.report();
    metrics.loadCores.set(r.loadCores);
    metrics.sessionCostCores.set(r.sessionCores ?? 0);
    metrics.capacitySessions.set(r.estimate ?? 0);
  }

  private recentStarts(now: number): number {
    while (this.starts.length && now - this.starts[0] > SETTLE_MS) this.starts.shift();
    return this.starts.length;
  }

  /** Whether one more session fits; when it does not, the reason. */
  admit(): { ok: true } | { ok: false; reason: string } {
    if (this.sessions() === 0 || this.cost === null) return { ok: true };
    const pending = this.recentStarts(this.now()) * this.cost;
    const needed = this.load + pending + this.cost;
    if (needed <= this.budgetCores) return { ok: true };
    return {
      ok: false,
      reason: `the server is at capacity: it uses ${this.load.toFixed(2)} cores (+${pending.toFixed(2)} for sessions still starting), a session costs ~${this.cost.toFixed(2)}, and its budget is ${this.budgetCores.toFixed(2)} cores (--max-load)`,
    };
  }

  /** Sessions admit() would still take now, one after another; null until the cost is measured. */
  room(): number | null {
    if (this.cost === null || this.cost <= 0) return null;
    if (this.sessions() === 0) return Math.max(1, Math.floor(this.budgetCores / this.cost));
    const pending = this.recentStarts(this.now()) * this.cost;
    return Math.max(0, Math.floor((this.budgetCores - this.load - pending) / this.cost + 1e-9));
  }

  /** A session was admitted and started. */
  started(): void {
    this.starts.push(this.now());
  }

  report(): CapacityReport {
    const round = (v: number) => Math.round(v * 100) / 100;
    return {
      loadCores: round(this.load),
      sessionCores: this.cost === null ? null : round(this.cost),
      budgetCores: round(this.budgetCores),
      estimate: this.cost === null || this.cost <= 0 ? null : Math.floor(this.budgetCores / this.cost),
    };
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
