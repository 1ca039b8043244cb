/**
 * The one request/response channel to every worker thread (codec, loop, pack), or to whoever holds
 * the other end of a MessagePort: each call gets an id, replies are matched by id, and every
 * pending call is rejected when the worker exits or the channel closes, so that no caller ever
 * waits forever on a dead worker. A server may run its calls strictly in arrival order
 * (`inOrder`), for workers whose methods are steps of one stream (a codec, a diffusion stream).
 */
import { MessagePort, Worker, workerData, type Transferable } from 'node:worker_threads';
import { XplError } from '../errors.ts';
import { workerBundles } from './bundle.ts';
import { guardWorker, newGate } from './native-gate.ts';

export interface RpcRequest {
  id: number;
  method: string;
  args: unknown;
}

export type RpcReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

/** The methods a worker offers: name → (args) → result. */
export type RpcMethods = Record<string, (args: any) => unknown>;

/**
 * Starts a worker thread from a TypeScript module. Deno runs .ts natively. Under Node, tsx's
 * loader hooks registered by `--import tsx` do not take effect inside worker threads (Node 20 +
 * tsx 4: "Unknown file extension .ts"), so a tiny JS bootstrap imports the module through tsx's
 * API. tsx is resolved next to this file, because eval'd code would resolve it from the cwd.
 */
export function spawnWorker(url: URL): Worker {
  if ('Deno' in globalThis) return new Worker(url);
  // The server bundles its worker entries at start (bundle.ts); workers learn the bundles from their parent.
  const bundles: Record<string, string> = { ...(workerData as { xplBundles?: Record<string, string> } | null)?.xplBundles, ...workerBundles };
  // Its terminate() waits until the worker is outside every onnxruntime call (native-gate.ts).
  const gate = newGate();
  const data = { xplBundles: bundles, xplGate: gate };
  const bundle = bundles[url.href];
  if (bundle) return guardWorker(new Worker(bundle, { workerData: data }), gate);
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((tsx) => tsx.tsImport(${JSON.stringify(url.href)}, ${JSON.stringify(import.meta.url)}));`;
  return guardWorker(new Worker(boot, { eval: true, workerData: data }), gate);
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class RpcClient<M extends RpcMethods> {
  private readonly worker: Worker | MessagePort;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  /** Why the worker died, for every call made after it. */
  private failure?: XplError;
  /** Called once when the worker dies (or the port's other end closes) unexpectedly, not after close(). */
  onCrash: (err: Error) => void = () => {};

  /**
   * `target`: a worker module to start, or a port whose other end serves the methods (serveRpc).
   * `unrefWhenIdle`: an idle worker does not keep the process alive (pending calls do).
   */
  constructor(
    target: URL | MessagePort,
    private readonly label: string,
    private readonly unrefWhenIdle = false,
  ) {
    this.worker = target instanceof MessagePort ? target : spawnWorker(target);
    this.worker.on('message', (msg: RpcReply) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (this.pending.size === 0 && this.unrefWhenIdle) this.worker.unref();
      if (msg.ok) p.resolve(msg.value);
      else p.reject(new XplError((msg.error.code as XplError['code']) ?? 'internal', msg.error.message, { details: msg.error.details }));
    });
    if (this.unrefWhenIdle) this.worker.unref();
    if (this.worker instanceof MessagePort) {
      this.worker.on('close', () => this.fail(new Error(`${this.label} channel closed`)));
    } else {
      this.worker.on('error', (err) => this.fail(err));
      this.worker.on('exit', (code) => this.fail(new Error(`${this.label} worker exited with code ${code}`)));
    }
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  call<K extends keyof M & string>(method: K, args: Parameters<M[K]>[0], transfer: Transferable[] = []): Promise<Awaited<ReturnType<M[K]>>> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new XplError('internal', `${this.label} worker is closed`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0 && this.unrefWhenIdle) this.worker.ref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, method, args } satisfies RpcRequest, transfer);
    });
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = new XplError('internal', `${this.label} worker failed: ${err.message}`, { cause: err });
    this.rejectAll(this.failure);
    this.onCrash(err);
  }

  private rejectAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rejectAll(new XplError('internal', `${this.label} worker is closed`));
    if (this.worker instanceof MessagePort) this.worker.close();
    else await this.worker.terminate();
  }
}

/**
 * Worker side: answers RpcClient calls with the given methods. A method may return `{ value,
 * transfer }` via `withTransfer`. With `inOrder`, a call starts only when the one before it has
 * finished (methods that await would otherwise interleave).
 */
export function serveRpc(port: import('node:worker_threads').MessagePort, methods: RpcMethods, opts: { inOrder?: boolean } = {}): void {
  const answer = async (req: RpcRequest): Promise<void> => {
    try {
      const fn = methods[req.method];
      if (!fn) throw new XplError('internal', `unknown worker method ${req.method}`);
      const result = await fn(req.args);
      if (result instanceof Transfer) port.postMessage({ id: req.id, ok: true, value: result.value } satisfies RpcReply, result.list);
      else port.postMessage({ id: req.id, ok: true, value: result } satisfies RpcReply);
    } catch (err) {
      const e = err as Partial<XplError>;
      port.postMessage({ id: req.id, ok: false, error: { code: e.code ?? 'internal', message: e.message ?? String(err), ...(e.details ? { details: e.details } : {}) } } satisfies RpcReply);
    }
  };
  let queue = Promise.resolve();
  port.on('message', (req: RpcRequest) => {
    if (opts.inOrder) queue = queue.then(() => answer(req));
    else void answer(req);
  });
}

class Transfer<T> {
  constructor(readonly value: T, readonly list: Transferable[]) {}
}

/** Marks a worker method's result to be sent with its buffers transferred rather than copied. */
export function withTransfer<T>(value: T, list: Transferable[]): T {
  return new Transfer(value, list) as unknown as T;
}
