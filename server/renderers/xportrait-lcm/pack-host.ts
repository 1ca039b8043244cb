/**
 * The main thread's side of the shared pack workers (pack-worker.ts): one worker per pack folder,
 * started on the first session that asks for it. connectPack() gives a session's loop worker a
 * fresh MessagePort to its own stream there. A pack worker that dies is forgotten, so the next
 * session (or the restarted loop workers, whose streams died with it) starts a new one.
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { XplError } from '../../errors.ts';
import { metrics } from '../../metrics.ts';
import { spawnWorker } from '../../workers/rpc.ts';

interface PackWorker {
  worker: Worker;
  streams: number;
  loads: number;
  /** Attach requests not yet acknowledged: true when the worker serves the port, false if it died first. */
  attaching: Map<number, (served: boolean) => void>;
}

const workers = new Map<string, PackWorker>();
let shuttingDown = false;
export const PACK_WORKER_URL = new URL('./pack-worker.ts', import.meta.url);

function keyOf(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return resolve(dir); // a missing folder: the stream's open() reports it as bad_pack
  }
}

function publish(): void {
  let streams = 0;
  for (const w of workers.values()) streams += w.streams;
  metrics.lcmPackWorkers.set(workers.size);
  metrics.lcmStreams.set(streams);
}

function start(key: string): PackWorker {
  const w: PackWorker = { worker: spawnWorker(PACK_WORKER_URL), streams: 0, loads: 0, attaching: new Map() };
  w.worker.unref();
  w.worker.on('message', (m: { attached?: number; streams?: number; loads?: number }) => {
    if (m.attached !== undefined) {
      w.attaching.get(m.attached)?.(true);
      w.attaching.delete(m.attached);
      return;
    }
    if (m.loads! > w.loads) metrics.lcmPackLoads.inc(m.loads! - w.loads);
    w.streams = m.streams!;
    w.loads = m.loads!;
    publish();
  });
  const forget = (): void => {
    for (const done of w.attaching.values()) done(false);
    w.attaching.clear();
    if (workers.get(key) !== w) return;
    workers.delete(key);
    publish();
  };
  w.worker.on('error', forget);
  w.worker.on('exit', forget);
  workers.set(key, w);
  publish();
  return w;
}

let nextAttach = 1;

/**
 * A port to a new stream in the pack worker for `dir` (started if needed), once that worker has
 * taken it. A worker that died a moment ago may not have reported its exit yet (its streams' render
 * workers can be restarted first): the attach then fails when the exit arrives, and a new worker is
 * started and asked instead.
 */
export async function connectPack(dir: string): Promise<MessagePort> {
  const key = keyOf(dir);
  for (let attempt = 0; attempt < 3 && !shuttingDown; attempt++) {
    const w = workers.get(key) ?? start(key);
    const { port1, port2 } = new MessageChannel();
    const id = nextAttach++;
    const served = await new Promise<boolean>((done) => {
      w.attaching.set(id, done);
      w.worker.postMessage({ attach: port1, id }, [port1]);
    });
    if (served) return port2;
    port2.close();
  }
  throw new XplError('internal', `xportrait-lcm: no pack worker for ${key} could be started`);
}

/** The pack worker threads now running (diagnostics and fault tests). */
export function packWorkerThreads(): Worker[] {
  return [...workers.values()].map((w) => w.worker);
}

/** Stops every pack worker (server shutdown). */
export async function closePackWorkers(): Promise<void> {
  shuttingDown = true;
  const all = [...workers.values()];
  workers.clear();
  publish();
  await Promise.all(all.map((w) => w.worker.terminate()));
}
