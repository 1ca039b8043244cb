/**
 * Loop workers started ahead of need. Starting a worker thread costs ~200 ms (loading the code)
 * and a face-tracking renderer's models another ~100 ms; a new session should not wait for
 * either. The pool keeps `size` workers booted and idle; a session takes one and the pool starts
 * the next in the background. With size 0 every session starts its own.
 */
import type { RendererName } from '../config.ts';
import type { CodecBackend } from '../media/codec.ts';
import type { EncodeSettings } from './encode.ts';
import type { Logger } from '../log.ts';
import { RpcClient } from '../workers/rpc.ts';
import type { LoopMethods } from './worker.ts';

export const LOOP_WORKER_URL = new URL('./worker.ts', import.meta.url);

export type LoopWorker = RpcClient<LoopMethods>;

/** What booted workers prepare for: the server's default renderer, codec and output. */
export interface BootSettings {
  renderer: RendererName;
  codec: CodecBackend;
  output: EncodeSettings;
}

export class LoopWorkerPool {
  private readonly idle: LoopWorker[] = [];
  private filling = 0;
  private closed = false;
  private readonly boots = new Set<Promise<unknown>>();

  constructor(
    private readonly size: number,
    private readonly settings: BootSettings,
    private readonly log: Logger,
    private readonly workerUrl: URL = LOOP_WORKER_URL,
  ) {
    this.refill();
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Resolves when the workers being started now are booted (or failed to), so a server can open its doors warm. */
  async warm(): Promise<void> {
    await Promise.allSettled([...this.boots]);
  }

  /** A booted worker: an idle one when there is one, else a new one (booted before it is returned). */
  async take(): Promise<LoopWorker> {
    const w = this.idle.shift();
    this.refill();
    if (w) return w;
    return this.boot();
  }

  private async boot(): Promise<LoopWorker> {
    const w = new RpcClient<LoopMethods>(this.workerUrl, 'loop');
    try {
      await w.call('boot', this.settings);
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  private refill(): void {
    while (!this.closed && this.idle.length + this.filling < this.size) {
      this.filling++;
      const booting = this.boot()
        .then(
          (w) => {
            if (this.closed) return dispose(w);
            // A worker that dies while it waits is dropped from the pool.
            w.onCrash = () => {
              const i = this.idle.indexOf(w);
              if (i >= 0) this.idle.splice(i, 1);
              this.refill();
            };
            this.idle.push(w);
          },
          (err: Error) => this.log.warn({ err: err.message }, 'a warm loop worker could not be started'),
        )
        .finally(() => {
          this.filling--;
          this.boots.delete(booting);
        });
      this.boots.add(booting);
    }
  }

  /**
   * Resolves once no loop worker thread is left: the idle ones, the ones still booting, and those
   * a session let go of. The process should exit only then: a worker thread torn down by the exit
   * while it is inside an onnxruntime-node call (creating, running or freeing a session) aborts the
   * whole process (SIGABRT, "terminate called after throwing an instance of 'Napi::Error'"); the
   * exit waits for such a call (workers/native-gate.ts), but only up to 10 s.
   */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.boots]);
    await Promise.all(this.idle.splice(0).map(dispose));
    await Promise.allSettled([...disposing]);
  }
}

/** Disposals under way, also those nobody awaits (a restart's old worker), for LoopWorkerPool.close. */
const disposing = new Set<Promise<void>>();

/** Lets a worker free its native resources (onnxruntime sessions) before its thread ends. */
export function dispose(w: LoopWorker): Promise<void> {
  const done = (async () => {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([w.call('dispose', undefined).catch(() => false), new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    await w.close();
  })().finally(() => disposing.delete(done));
  disposing.add(done);
  return done;
}
