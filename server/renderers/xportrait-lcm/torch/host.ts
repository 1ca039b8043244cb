/**
 * The main thread's side of the torch engine: one long-lived Python worker process per device
 * (models/xportrait/engine/serve.py), started on demand (at server start when --engine torch) and
 * supervised:
 *
 *  - preflight: before the first start, `python -m models.xportrait.engine.serve --check` says whether
 *    the interpreter has torch, numpy and msgpack and (for cuda) a CUDA device; a missing piece is
 *    a clear error naming what to install, never a hang (the check and the start have timeouts);
 *  - heartbeat: a ping every 500 ms on its own connection, answered by a worker thread that runs
 *    no graphs; a ping unanswered for --lcm-hang-timeout, or a batch busy that long (not counting
 *    a first call's CUDA-graph capture or compilation, nor time the engine thread waited for a
 *    CPU), means hung: the process is killed;
 *  - restart: a worker that exits (or was killed) is started again on the same socket path; the
 *    sessions' streams reconnect and re-open themselves (torch/stream.ts). Three failed starts in
 *    a row give up, and sessions asking for the engine get the reason.
 *
 * Metrics: xpl_lcm_torch_workers, xpl_lcm_torch_streams, xpl_lcm_torch_restarts_total{reason},
 * xpl_lcm_torch_calls_total and xpl_lcm_torch_rows_total (rows per batched call).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LcmSettings } from '../../../config.ts';
import { XplError } from '../../../errors.ts';
import { metrics } from '../../../metrics.ts';
import { WorkerConnection } from './connection.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const HEARTBEAT_MS = 500;
const PREFLIGHT_TIMEOUT_MS = 120_000;
const MAX_START_FAILURES = 3;

type Log = (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;

const stderrLog: Log = (level, msg, extra) => {
  process.stderr.write(`${JSON.stringify({ level: { info: 30, warn: 40, error: 50 }[level], svc: 'xportrait-live', worker: 'lcm-torch', msg, ...extra })}\n`);
};

/** Test hooks: extra worker arguments (e.g. --debug-ops). */
export interface HostOptions {
  extraArgs?: string[];
}

const INSTALL = 'Debian/Ubuntu: apt-get install python3-torch python3-numpy python3-msgpack (CPU); for a GPU, a CUDA build of PyTorch (pip install torch numpy msgpack)';

/** Runs the preflight; resolves with what the interpreter has, rejects with an install hint. */
export function preflight(s: Pick<LcmSettings, 'python' | 'device'>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(s.python, ['-m', 'models.xportrait.engine.serve', '--check', '--device', s.device], { cwd: REPO_ROOT, env: { ...process.env, PYTHONPATH: REPO_ROOT }, timeout: PREFLIGHT_TIMEOUT_MS }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      let res: Record<string, unknown> | null = null;
      try {
        res = JSON.parse(line);
      } catch {
        res = null;
      }
      if (res?.ok) return resolve(res);
      const code = (err as NodeJS.ErrnoException | null)?.code;
      let why: string;
      if (code === 'ENOENT') why = `--python ${s.python}: no such interpreter. The torch engine needs Python 3 with PyTorch, numpy and msgpack (${INSTALL}); point --python (XPL_PYTHON) at it`;
      else if (err && (err as { killed?: boolean }).killed) why = `--python ${s.python}: the preflight did not finish in ${PREFLIGHT_TIMEOUT_MS / 1000} s`;
      else if (res?.missing === 'cuda') why = `${res.error}: install a CUDA build of PyTorch and the NVIDIA driver, or run with --device cpu (practical for --weights tiny only)`;
      else if (res?.missing) why = `${s.python} ${res.error}: install ${res.missing === 'torch' ? 'PyTorch' : res.missing} (${INSTALL}), or point --python (XPL_PYTHON) at an interpreter that has it`;
      else why = `--python ${s.python}: preflight failed: ${(stderr || String(err)).trim().split('\n').slice(-3).join(' | ')}`;
      reject(new XplError('bad_config', `xportrait-lcm --engine torch: ${why}`));
    });
  });
}

function workerArgs(s: LcmSettings, socket: string, extra: string[]): string[] {
  const a = ['-m', 'models.xportrait.engine.serve', '--socket', socket, '--weights', s.weights ?? 'tiny', '--seed', String(s.seed),
    '--image-size', String(s.imageSize), '--device', s.device, '--sink', String(s.sink), '--ring', String(s.ring),
    '--threads', String(s.threads), '--batch-wait-ms', String(s.batchWait), '--cuda-graphs', s.cudaGraphs ? 'on' : 'off'];
  if (s.precision) a.push('--dtype', s.precision);
  if (s.lora) a.push('--lcm-lora', s.lora);
  if (s.context) a.push('--context', s.context);
  if (s.taesd) a.push('--taesd', s.taesd);
  if (s.compile) a.push('--compile');
  return [...a, ...extra];
}

let nextSocket = 1;

export class TorchWorkerHost {
  readonly socket = join(tmpdir(), `xpl-torch-${process.pid}-${nextSocket++}.sock`);
  private proc: ChildProcess | null = null;
  private hb: WorkerConnection | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ready: Promise<void> | null = null;
  private failures = 0;
  private closed = false;
  private readonly stderrTail: string[] = [];
  /** The last heartbeat's report (streams, rows, device memory, …). */
  status: Record<string, unknown> = {};
  restarts = 0;
  failedReason: string | null = null;
  private counted = { calls: 0, rows: 0 };

  constructor(
    readonly settings: LcmSettings,
    private readonly log: Log,
    private readonly opts: HostOptions = {},
  ) {}

  get pid(): number | undefined {
    return this.proc?.pid ?? undefined;
  }

  /** Resolves once a worker is ready (starting one if none runs); rejects when starting gave up. */
  whenReady(): Promise<void> {
    if (this.failedReason) return Promise.reject(new XplError('renderer_unavailable', this.failedReason));
    this.ready ??= this.start();
    return this.ready;
  }

  private async start(): Promise<void> {
    const s = this.settings;
    const proc = spawn(s.python, workerArgs(s, this.socket, this.opts.extraArgs ?? []), { cwd: REPO_ROOT, env: { ...process.env, PYTHONPATH: REPO_ROOT }, stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    let buf = '';
    proc.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.stderrTail.push(line);
        if (this.stderrTail.length > 30) this.stderrTail.shift();
        this.log('info', line, { pid: proc.pid });
      }
    });
    const exited = new Promise<never>((_, reject) => {
      proc.once('error', (err) => reject(new Error(`could not start ${s.python}: ${err.message}`)));
      proc.once('exit', (code, signal) => reject(new Error(`the worker exited (code ${code}, signal ${signal}) while starting`)));
    });
    proc.once('exit', (code, signal) => this.exited(proc, code, signal));
    try {
      await Promise.race([this.waitReady(proc), exited]);
    } catch (err) {
      if (this.proc === proc) proc.kill('SIGKILL');
      this.proc = null;
      this.ready = null; // the next session asking tries again, up to MAX_START_FAILURES in a row
      const tail = this.stderrTail.slice(-6).join(' | ');
      const msg = `xportrait-lcm torch worker failed to start: ${(err as Error).message}${tail ? ` — ${tail}` : ''}`;
      if (++this.failures >= MAX_START_FAILURES) this.failedReason = `${msg} (${this.failures} failed starts; giving up)`;
      throw new XplError('renderer_unavailable', msg);
    }
    this.failures = 0;
    metrics.lcmTorchWorkers.inc();
    this.log('info', 'xportrait-lcm torch worker ready', { pid: proc.pid, socket: this.socket });
    this.timer = setInterval(() => this.beat(proc), HEARTBEAT_MS);
    this.timer.unref();
  }

  private async waitReady(proc: ChildProcess): Promise<void> {
    const deadline = Date.now() + this.settings.startTimeout * 1000;
    while (Date.now() < deadline && this.proc === proc) {
      try {
        const c = this.hb ?? (this.hb = await WorkerConnection.connect(this.socket));
        const r = await c.call('ping');
        if (r.header.error) throw Object.assign(new Error(String(r.header.error)), { fatal: true });
        if (r.header.ready) return;
      } catch (err) {
        if ((err as { fatal?: boolean }).fatal) throw err;
        this.hb?.close();
        this.hb = null;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`not ready within ${this.settings.startTimeout} s`);
  }

  private pingSent = 0;
  /** Beats that have found the ping outstanding. */
  private pingBeats = 0;

  private beat(proc: ChildProcess): void {
    if (this.proc !== proc || !this.hb) return;
    const limit = this.settings.hangTimeout * 1000;
    const now = Date.now();
    if (this.pingSent) {
      // Both the clock and the count of beats must pass the limit: when this process itself was
      // stalled (a busy event loop, a starved CPU), one late beat would otherwise find a reply
      // that waits unread in the socket and kill a healthy worker.
      this.pingBeats++;
      if (now - this.pingSent > limit && this.pingBeats * HEARTBEAT_MS >= limit) this.kill(proc, `no heartbeat for ${((now - this.pingSent) / 1000).toFixed(1)} s`);
      return;
    }
    this.pingSent = now;
    this.pingBeats = 0;
    this.hb
      .call('ping')
      .then((r) => {
        this.pingSent = 0;
        const h = r.header;
        this.status = (h.status as Record<string, unknown>) ?? {};
        this.publish();
        // busy_ms leaves out the time the engine thread waited for a CPU (serve.py)
        const busy = h.busy_ms as number;
        if (!h.warming && busy > limit) {
          const waited = (h.cpu_wait_ms as number) ?? 0;
          this.kill(proc, `one batch busy for ${(busy / 1000).toFixed(1)} s${waited >= 100 ? `, not counting ${(waited / 1000).toFixed(1)} s waiting for a CPU` : ''}`);
        }
      })
      .catch(() => {
        this.pingSent = 0; // the connection is gone: the exit handler restarts the worker
      });
  }

  private publish(): void {
    let streams = 0;
    for (const h of hosts.values()) streams += (h.status.streams as number) ?? 0;
    metrics.lcmTorchStreams.set(streams);
    const calls = (this.status.calls as number) ?? 0;
    const rows = (this.status.rows_run as number) ?? 0;
    if (calls > this.counted.calls) metrics.lcmTorchCalls.inc(calls - this.counted.calls);
    if (rows > this.counted.rows) metrics.lcmTorchRows.inc(rows - this.counted.rows);
    this.counted = { calls, rows };
  }

  private hungReason: string | null = null;

  private kill(proc: ChildProcess, why: string): void {
    if (this.proc !== proc || this.hungReason) return;
    this.hungReason = why;
    this.log('warn', `xportrait-lcm torch worker hung (${why}); killing it`, { pid: proc.pid });
    proc.kill('SIGKILL');
  }

  private exited(proc: ChildProcess, code: number | null, signal: string | null): void {
    if (this.proc !== proc) return;
    const wasReady = this.timer !== null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.hb?.close();
    this.hb = null;
    this.pingSent = 0;
    this.proc = null;
    this.status = {};
    this.counted = { calls: 0, rows: 0 };
    this.publish();
    if (wasReady) metrics.lcmTorchWorkers.dec();
    // a worker that never became ready is start()'s failure to report, not restarted here
    if (this.closed || !wasReady) return;
    const reason = this.hungReason ? 'hung' : 'exit';
    this.hungReason = null;
    this.restarts++;
    metrics.lcmTorchRestarts.inc({ reason });
    metrics.workerRestarts.inc({ worker: 'lcm-torch' });
    this.log('warn', `xportrait-lcm torch worker ${reason === 'hung' ? 'killed as hung' : `exited (code ${code}, signal ${signal})`}; restarting`, { restarts: this.restarts });
    this.ready = this.restartLoop();
    this.ready.catch((err: Error) => this.log('error', err.message));
  }

  /** Starts again after a crash, retrying a failed start with a growing pause (1 s, 2 s, …). */
  private async restartLoop(): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        return await this.start();
      } catch (err) {
        if (this.failedReason || this.closed) throw err;
        this.log('warn', (err as Error).message);
        await new Promise((r) => setTimeout(r, 1000 * 2 ** i));
      }
    }
  }

  /** Diagnostics and fault tests: the worker process now running. */
  get process(): ChildProcess | null {
    return this.proc;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.hb?.close();
    const p = this.proc;
    if (!p) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
      setTimeout(() => p.kill('SIGKILL'), 3000).unref();
    });
  }
}

const hosts = new Map<string, TorchWorkerHost>();
let defaultLog: Log = stderrLog;

function keyOf(s: LcmSettings): string {
  const { python, weights, lora, context, taesd, device, precision, sink, ring, imageSize, seed, threads, cudaGraphs, compile, batchWait } = s;
  return JSON.stringify({ python, weights, lora, context, taesd, device, precision, sink, ring, imageSize, seed, threads, cudaGraphs, compile, batchWait });
}

/**
 * The socket of a ready worker for these settings (started — after its preflight — if none runs).
 * Rejects with a clear error when the interpreter lacks torch/CUDA or the worker cannot start.
 */
export async function ensureTorchWorker(s: LcmSettings, opts: { log?: Log; host?: HostOptions } = {}): Promise<TorchWorkerHost> {
  const key = keyOf(s);
  let h = hosts.get(key);
  if (!h) {
    await preflight(s);
    h = hosts.get(key);
    if (!h) {
      h = new TorchWorkerHost(s, opts.log ?? defaultLog, opts.host);
      hosts.set(key, h);
    }
  }
  await h.whenReady();
  return h;
}

/** Server start: the logger for worker output, and the eager start of the configured worker. */
export async function startTorchEngine(s: LcmSettings, log: Log): Promise<TorchWorkerHost> {
  defaultLog = log;
  return ensureTorchWorker(s, { log });
}

export function torchWorkerHosts(): TorchWorkerHost[] {
  return [...hosts.values()];
}

export async function closeTorchWorkers(): Promise<void> {
  const all = [...hosts.values()];
  hosts.clear();
  await Promise.all(all.map((h) => h.close()));
}
