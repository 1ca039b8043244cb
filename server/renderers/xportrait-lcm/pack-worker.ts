/**
 * The shared pack worker: one thread per model-pack folder in the server, holding the pack's
 * onnxruntime sessions once for every session that renders with it (acquirePack shares them by
 * folder + EP + precision + decoder). Each session's loop worker reaches it through its own
 * MessagePort (attached by pack-host.ts) and gets its own stream: caches, noise and reference K/V
 * are per stream; only the weights and the device are shared. Streams' calls interleave between
 * graph runs; a run itself is not interrupted.
 */
import { parentPort, type MessagePort } from 'node:worker_threads';
import { packLoadCount } from './pack.ts';
import { serveStream } from './stream.ts';

if (!parentPort) throw new Error('pack-worker.ts must run as a worker thread');
const parent = parentPort;

let streams = 0;

const report = (): void => parent.postMessage({ streams, loads: packLoadCount() });

const log = (msg: string, extra?: Record<string, unknown>): void => {
  process.stderr.write(`${JSON.stringify({ level: 40, svc: 'xportrait-live', worker: 'lcm-pack', msg, ...extra })}\n`);
};

parent.on('message', (m: { attach?: MessagePort; id?: number }) => {
  if (!m.attach) return;
  serveStream(m.attach, {
    log,
    onOpen: () => {
      streams++;
      report();
    },
    onClose: () => {
      streams--;
      report();
    },
  });
  parent.postMessage({ attached: m.id });
});
