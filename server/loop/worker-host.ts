/**
 * The main thread's side of a session's loop worker. It remembers what the worker was set up
 * with, so a worker that crashes or hangs is replaced (from the warm pool) and set up again while
 * the session keeps its peer: the viewer sees a short freeze, other sessions see nothing. A worker
 * that keeps failing (more than MAX_RESTARTS within RESTART_WINDOW_MS) is given up on.
 *
 * Hung: the worker answers nothing for `hangTimeoutMs` while frames are waiting for it (every
 * frame it is given produces a message: decoded, dropped or out), or it reports that a render
 * took longer than that.
 */
import { MessageChannel, MessagePort, type Transferable } from 'node:worker_threads';
import type { RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import { metrics } from '../metrics.ts';
import { rendererChannels } from '../renderers/index.ts';
import type { FromWorker, ToWorker } from './messages.ts';
import type { LoopWorker, LoopWorkerPool } from './worker-pool.ts';
import { dispose } from './worker-pool.ts';
import type { LoopMethods, LoopSetup } from './worker.ts';

const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;
const WATCH_INTERVAL_MS = 250;

export class LoopHost {
  onMessage: (msg: FromWorker) => void = () => {};
  /** A new worker is set up and frames may flow again (after a restart). */
  onRestart: (reason: string) => void = () => {};
  onGiveUp: (reason: string) => void = () => {};
  restarts = 0;

  private worker?: LoopWorker;
  private port?: MessagePort;
  private starting?: Promise<void>;
  private readonly restartTimes: number[] = [];
  private closed = false;
  /** When the oldest frame the worker has not answered was posted; 0 when it owes nothing. */
  private owedSince = 0;
  private readonly watch: NodeJS.Timeout;

  constructor(
    private readonly pool: LoopWorkerPool,
    /** The set-up a new worker must get: read at (re)start, so it is always the current one. */
    private readonly setup: () => LoopSetup,
    private readonly hangTimeoutMs: number,
  ) {
    this.watch = setInterval(() => {
      if (this.owedSince && performance.now() - this.owedSince > this.hangTimeoutMs) void this.restart('hung: no answer from the loop worker');
    }, WATCH_INTERVAL_MS);
    this.watch.unref();
  }

  /** Takes a worker and sets it up; resolves when frames may flow. Rejects (with the renderer's error) when set-up fails. */
  start(): Promise<void> {
    this.starting ??= this.attach().finally(() => (this.starting = undefined));
    return this.starting;
  }

  get ready(): boolean {
    return !!this.port && !this.starting;
  }

  private async attach(): Promise<void> {
    const worker = await this.pool.take();
    if (this.closed) return dispose(worker);
    worker.onCrash = (err) => void this.restart(`crashed: ${err.message}`);
    const s = this.setup();
    const { port1, port2 } = new MessageChannel();
    const { options, transfer } = await rendererChannels(s.renderer, s.options);
    try {
      await worker.call('init', { ...s, options, media: port2 }, [port2, ...transfer]);
    } catch (err) {
      port1.close();
      // A port that never reached the worker would keep its stream's other end open.
      for (const t of transfer) if (t instanceof MessagePort) t.close();
      await dispose(worker);
      throw err;
    }
    if (this.closed) return dispose(worker);
    port1.on('message', (msg: FromWorker) => {
      this.owedSince = 0;
      if (msg.t === 'stalled') void this.restart(`hung: a render took more than ${Math.round(msg.ms)} ms`);
      else this.onMessage(msg);
    });
    this.worker = worker;
    this.port = port1;
    this.owedSince = 0;
  }

  /** Posts to the worker; false when no worker is ready (starting or restarting), so the caller keeps or drops the item. */
  post(msg: ToWorker, transfer: Transferable[] = []): boolean {
    if (!this.port || this.starting) return false;
    if (msg.t === 'frame' && !this.owedSince) this.owedSince = performance.now();
    this.port.postMessage(msg, transfer);
    return true;
  }

  /** A control call to the worker, once it is set up. */
  async call<K extends keyof LoopMethods & string>(method: K, args: Parameters<LoopMethods[K]>[0], transfer: Transferable[] = []): Promise<Awaited<ReturnType<LoopMethods[K]>>> {
    if (this.closed) throw new XplError('internal', 'the loop worker is closed');
    await this.starting;
    if (!this.worker) throw new XplError('internal', 'the loop worker is not running');
    return this.worker.call(method, args, transfer);
  }

  /** Switches the renderer (or re-creates it at a new output size): the pack channel is attached here, on the main thread. */
  async setRenderer(a: { renderer: RendererName; options: LoopSetup['options']; portrait: LoopSetup['portrait']; output: { width: number; height: number; maxFps: number } }): Promise<void> {
    const { options, transfer } = await rendererChannels(a.renderer, a.options);
    try {
      await this.call('setRenderer', { ...a, options }, transfer);
    } catch (err) {
      for (const t of transfer) if (t instanceof MessagePort) t.close();
      throw err;
    }
  }

  /** Replaces the worker and sets the new one up like the old one; concurrent triggers share one restart. */
  restart(reason: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.starting) return this.starting;
    const now = performance.now();
    while (this.restartTimes.length && now - this.restartTimes[0] > RESTART_WINDOW_MS) this.restartTimes.shift();
    if (this.restartTimes.length >= MAX_RESTARTS) {
      this.onGiveUp(`loop worker ${reason}; ${MAX_RESTARTS} restarts within ${RESTART_WINDOW_MS / 1000} s`);
      return Promise.resolve();
    }
    this.restartTimes.push(now);
    this.restarts++;
    metrics.workerRestarts.inc({ worker: 'loop' });
    const old = this.worker;
    this.detach();
    // A hung worker may never answer dispose: it is terminated after dispose's own time limit.
    if (old) void dispose(old);
    const starting = this.start();
    starting.then(
      () => this.onRestart(reason),
      (err: Error) => this.onGiveUp(`loop worker could not be restarted: ${err.message}`),
    );
    return starting.catch(() => {});
  }

  private detach(): void {
    if (this.worker) this.worker.onCrash = () => {};
    this.port?.close();
    this.port = undefined;
    this.worker = undefined;
    this.owedSince = 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watch);
    await this.starting?.catch(() => {});
    const w = this.worker;
    this.detach();
    if (w) await dispose(w);
  }
}
