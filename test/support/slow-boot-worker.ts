/**
 * A loop worker whose boot and dispose take time, for testing that LoopWorkerPool.close waits for
 * both. The boot settings carry a SharedArrayBuffer of counters the test reads: [0] boots begun,
 * [1] disposals finished.
 */
import { parentPort } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveRpc } from '../../server/workers/rpc.ts';

let counters: Int32Array | undefined;

serveRpc(parentPort!, {
  async boot(a: { counters: SharedArrayBuffer; bootMs: number }) {
    counters = new Int32Array(a.counters);
    Atomics.add(counters, 0, 1);
    await sleep(a.bootMs);
    return true;
  },
  async dispose() {
    await sleep(150);
    Atomics.add(counters!, 1, 1);
    return true;
  },
});
