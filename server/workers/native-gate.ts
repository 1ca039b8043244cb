/**
 * Keeps a worker thread from being stopped while it is inside an onnxruntime-node call.
 *
 * onnxruntime-node's binding uses node-addon-api with C++ exceptions. Its InferenceSession calls
 * (loadModel, run) are synchronous native code on the calling thread and cannot be interrupted.
 * When the thread is stopped meanwhile — worker.terminate(), or process.exit() (which stops every
 * worker thread, e.g. the test runner's --test-force-exit) — the call runs to its end, its next
 * N-API call fails because the thread may no longer run JavaScript, node-addon-api's
 * ThrowAsJavaScriptException fails as well and throws a second Napi::Error out of the N-API
 * callback, and std::terminate aborts the whole process: SIGABRT, "terminate called after throwing
 * an instance of 'Napi::Error'". A thread that merely holds sessions is stopped safely.
 *
 * So each worker from spawnWorker() gets a gate, one Int32 in a SharedArrayBuffer (workerData
 * `xplGate`): the number of InferenceSession calls in flight in that thread (gateOnnxRuntime()
 * counts them), and a CLOSING bit. To stop the thread the parent sets the bit, so that no call
 * starts any more (such a call's promise never settles: the thread is about to end), waits until
 * the count is 0, and only then stops it. Setting the bit first matters: a worker that runs one
 * model after another is outside a call only for a moment, which polling rarely catches.
 */
import { workerData, type Worker } from 'node:worker_threads';

/** Set by the parent: no call may start. The rest of the word counts the calls in flight. */
const CLOSING = 1 << 30;
/** A native call longer than this is taken to be hung: the thread is stopped anyway. */
const TERMINATE_WAIT_MS = 30_000;
/** The same at process exit, for all the workers together. */
const EXIT_WAIT_MS = 10_000;

// ---- worker side ----

function enter(g: Int32Array): boolean {
  for (;;) {
    const n = Atomics.load(g, 0);
    if (n & CLOSING) return false;
    if (Atomics.compareExchange(g, 0, n, n + 1) === n) return true;
  }
}

function leave(g: Int32Array): void {
  Atomics.sub(g, 0, 1);
  Atomics.notify(g, 0);
}

const GATED = Symbol.for('xpl.nativeGate');

type AsyncFn = (...args: any[]) => Promise<unknown>;
interface SessionClass {
  create: AsyncFn;
  prototype: { run: AsyncFn; release: AsyncFn };
}

/**
 * Counts this thread's InferenceSession calls at the gate its parent gave it (no-op outside a
 * spawnWorker() worker, and after the first call). Patches the class that every importer of
 * onnxruntime-node in this thread shares, so that it covers sessions created anywhere here.
 */
export function gateOnnxRuntime(InferenceSession: object): void {
  const sab = (workerData as { xplGate?: SharedArrayBuffer } | null)?.xplGate;
  // onnxruntime-common types it as a factory interface; at run time it is a class.
  const cls = InferenceSession as SessionClass & { [GATED]?: true };
  if (!sab || cls[GATED]) return;
  cls[GATED] = true;
  const g = new Int32Array(sab);
  const wrap = (f: AsyncFn): AsyncFn =>
    function (this: unknown, ...args: unknown[]) {
      if (!enter(g)) return new Promise(() => {});
      let p: Promise<unknown>;
      try {
        p = f.apply(this, args);
      } catch (err) {
        leave(g);
        throw err;
      }
      return p.finally(() => leave(g));
    };
  cls.create = wrap(cls.create);
  cls.prototype.run = wrap(cls.prototype.run);
  cls.prototype.release = wrap(cls.prototype.release);
}

// ---- parent side ----

/** Gates of the workers still running, for the process exit. */
const open = new Set<Int32Array>();

/** No call starts in that thread from now on; those in flight go on to their end. */
function close(g: Int32Array): void {
  Atomics.or(g, 0, CLOSING);
}

let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // process.exit() stops every worker thread right after the 'exit' listeners. Prepended, because a
  // listener that calls process.exit() itself (test/support/wrtc-exit.ts) ends the process at once.
  process.prependListener('exit', () => {
    const until = performance.now() + EXIT_WAIT_MS;
    for (const g of open) close(g);
    for (const g of open) {
      for (let n = Atomics.load(g, 0); n !== CLOSING && performance.now() < until; n = Atomics.load(g, 0)) Atomics.wait(g, 0, n, 20);
    }
  });
}

/** A new gate for a worker about to be spawned (goes in its workerData as `xplGate`). */
export function newGate(): SharedArrayBuffer {
  return new SharedArrayBuffer(4);
}

/** Makes worker.terminate() (whoever calls it) and the process exit wait for the gate first. */
export function guardWorker(worker: Worker, sab: SharedArrayBuffer): Worker {
  const g = new Int32Array(sab);
  open.add(g);
  worker.once('exit', () => open.delete(g));
  hookExit();
  const terminate = worker.terminate.bind(worker);
  worker.terminate = async () => {
    const until = performance.now() + TERMINATE_WAIT_MS;
    close(g);
    while (Atomics.load(g, 0) !== CLOSING && open.has(g) && performance.now() < until) await new Promise((r) => setTimeout(r, 5));
    return terminate();
  };
  return worker;
}
