/**
 * The session's side of its render worker. It remembers what the worker was set up with, so a
 * worker that crashes, or hangs on a frame, is replaced and set up again while the session keeps
 * its peer: the viewer sees a short freeze, other sessions see nothing. A worker that keeps
 * failing (more than MAX_RESTARTS within RESTART_WINDOW_MS) is given up on.
 */
import { MessagePort } from 'node:worker_threads';
import type { RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import { fromWire, toWire, type I420Frame, type RgbaImage } from '../media/frame.ts';
import { metrics } from '../metrics.ts';
import { rendererChannels } from '../renderers/index.ts';
import type { RendererOptions } from '../renderers/types.ts';
import { RpcClient } from '../workers/rpc.ts';
import type { RenderMethods, WorkerParams } from './render-worker.ts';

export interface RenderSetup {
  renderer: RendererName;
  options: RendererOptions;
  portrait: RgbaImage;
  params: WorkerParams;
}

export interface RenderHostOptions {
  /** A render call that takes longer than this counts as a hung worker. */
  renderTimeoutMs: number;
  /** Worker module; tests point it at a worker that fails on purpose. */
  workerUrl: URL;
}

const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;
/** A renderer that does not answer dispose within this time is terminated regardless. */
const DISPOSE_TIMEOUT_MS = 2000;

export const DEFAULT_RENDER_WORKER = new URL('./render-worker.ts', import.meta.url);

export class RenderHost {
  private client: RpcClient<RenderMethods>;
  private restarting?: Promise<void>;
  private readonly restartTimes: number[] = [];
  private closed = false;
  restarts = 0;
  onRestart: (reason: string) => void = () => {};
  onGiveUp: (reason: string) => void = () => {};

  constructor(
    /** The setup a new worker must get: read at restart time, so it is always the current one. */
    private readonly setup: () => RenderSetup,
    private readonly opts: RenderHostOptions = { renderTimeoutMs: 5000, workerUrl: DEFAULT_RENDER_WORKER },
  ) {
    this.client = this.spawn();
  }

  private spawn(): RpcClient<RenderMethods> {
    const client = new RpcClient<RenderMethods>(this.opts.workerUrl, 'render');
    client.onCrash = (err) => void this.restart(`crashed: ${err.message}`);
    return client;
  }

  /** Loads a renderer and portrait into the worker (first set-up, renderer switch, size change). */
  async init(s: Pick<RenderSetup, 'renderer' | 'options' | 'portrait'>): Promise<void> {
    await this.ready();
    await this.initWorker(this.client, s);
  }

  private async initWorker(client: RpcClient<RenderMethods>, s: Pick<RenderSetup, 'renderer' | 'options' | 'portrait'>): Promise<void> {
    const { options, transfer } = await rendererChannels(s.renderer, s.options);
    try {
      await client.call('init', { renderer: s.renderer, options, portrait: s.portrait }, transfer);
    } catch (err) {
      // a port that never reached the worker (closed client) would keep its stream's other end open
      for (const t of transfer) if (t instanceof MessagePort) t.close();
      throw err;
    }
  }

  async render(frame: I420Frame, index: number): Promise<{ frame: I420Frame; faceFound: boolean | null; backgroundMs: number }> {
    await this.ready();
    const wire = toWire(frame);
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new XplError('internal', `render took longer than ${this.opts.renderTimeoutMs} ms`)), this.opts.renderTimeoutMs);
    });
    try {
      const r = await Promise.race([this.client.call('render', { frame: wire, index }, [wire.buffer]), hung]);
      return { frame: fromWire(r.frame), faceFound: r.faceFound, backgroundMs: r.backgroundMs };
    } catch (err) {
      if (/longer than/.test((err as Error).message)) void this.restart('hung');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async setPortrait(portrait: RgbaImage): Promise<void> {
    await this.ready();
    await this.client.call('setPortrait', { portrait });
  }

  async setParams(params: WorkerParams): Promise<void> {
    await this.ready();
    await this.client.call('setParams', params);
  }

  async reset(): Promise<boolean> {
    await this.ready();
    return this.client.call('reset', undefined);
  }

  private ready(): Promise<void> {
    if (this.closed) return Promise.reject(new XplError('internal', 'render worker is closed'));
    return this.restarting ?? Promise.resolve();
  }

  /** Replaces the worker and sets the new one up like the old one; concurrent triggers share one restart. */
  private restart(reason: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.restarting) return this.restarting;
    const now = performance.now();
    while (this.restartTimes.length && now - this.restartTimes[0] > RESTART_WINDOW_MS) this.restartTimes.shift();
    if (this.restartTimes.length >= MAX_RESTARTS) {
      this.onGiveUp(`render worker ${reason}; ${MAX_RESTARTS} restarts within ${RESTART_WINDOW_MS / 1000} s`);
      return Promise.resolve();
    }
    this.restartTimes.push(now);
    this.restarts++;
    metrics.workerRestarts.inc({ worker: 'render' });
    this.onRestart(reason);
    const old = this.client;
    this.restarting = (async () => {
      await old.close();
      this.client = this.spawn();
      const s = this.setup();
      await this.initWorker(this.client, s);
      if (Object.keys(s.params).length) await this.client.call('setParams', s.params);
    })().finally(() => {
      this.restarting = undefined;
    });
    this.restarting.catch((err: Error) => this.onGiveUp(`render worker could not be restarted: ${err.message}`));
    return this.restarting;
  }

  /** Lets the renderer free native resources (onnxruntime sessions) before its thread is terminated. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.restarting?.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.client.call('dispose', undefined).catch(() => false), new Promise((r) => (timer = setTimeout(r, DISPOSE_TIMEOUT_MS)))]);
    clearTimeout(timer);
    await this.client.close();
  }
}
