/**
 * LoopWorkerPool.close resolves only once every loop worker it started, or a session let go of, is
 * disposed: the server exits right after it, and a worker thread torn down by that exit while
 * onnxruntime-node is at work in it aborts the process (seen as SIGABRT on SIGTERM).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../server/log.ts';
import { dispose, LoopWorkerPool, type BootSettings } from '../../server/loop/worker-pool.ts';
import { waitUntil } from '../support/wait.ts';

const SLOW_BOOT_WORKER = new URL('../support/slow-boot-worker.ts', import.meta.url);

function slowPool(size: number, bootMs: number) {
  const counters = new Int32Array(new SharedArrayBuffer(8));
  const settings = { counters: counters.buffer, bootMs } as unknown as BootSettings;
  return { pool: new LoopWorkerPool(size, settings, createLogger('silent'), SLOW_BOOT_WORKER), booted: () => Atomics.load(counters, 0), disposed: () => Atomics.load(counters, 1) };
}

test('close() waits for a worker still booting and disposes it', async () => {
  const p = slowPool(1, 400);
  await waitUntil(() => p.booted() === 1, 10_000, 'the warm worker to begin booting');
  await p.pool.close();
  assert.equal(p.disposed(), 1, 'the worker that was booting is disposed before close() resolves');
});

test('close() waits for a disposal nobody awaits (a restarted session worker)', async () => {
  const p = slowPool(0, 0);
  const w = await p.pool.take();
  void dispose(w);
  await p.pool.close();
  assert.equal(p.disposed(), 1);
});

test('close() disposes the idle workers', async () => {
  const p = slowPool(2, 0);
  await p.pool.warm();
  assert.equal(p.pool.idleCount, 2);
  await p.pool.close();
  assert.equal(p.disposed(), 2);
});
