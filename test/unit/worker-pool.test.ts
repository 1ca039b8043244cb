/**
 * LoopWorkerPool.close resolves only once every loop worker it started, or a session let go of, is
 * disposed: the server exits right after it, and a worker thread torn down by that exit while
 * onnxruntime-node is at work in it aborts the process (seen as SIGABRT on SIGTERM). And a worker
 * frees the face models its boot loaded before its thread ends, whatever session it served.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageChannel } from 'node:worker_threads';
import { createLogger } from '../../server/log.ts';
import { dispose, LoopWorkerPool, type BootSettings } from '../../server/loop/worker-pool.ts';
import type { LoopSetup } from '../../server/loop/worker.ts';
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

test('a worker booted for a face-tracking renderer frees its face models on dispose: idle, or after a passthrough session', async () => {
  const output = { width: 64, height: 64, fps: 30, bitrate: 500_000 };
  const pool = new LoopWorkerPool(0, { renderer: 'mesh-warp', codec: { name: 'wasm' }, output }, createLogger('silent'));
  try {
    const idle = await pool.take();
    assert.deepEqual(await idle.call('dispose', undefined), { faceModelsReleased: 3 }, 'blazeface, facemesh and iris of the boot');
    await idle.close();
    const w = await pool.take();
    const { port1, port2 } = new MessageChannel();
    const setup: LoopSetup = {
      renderer: 'passthrough',
      options: { outputWidth: 64, outputHeight: 64 },
      portrait: { width: 2, height: 2, data: new Uint8Array(16) },
      params: {},
      codec: { name: 'wasm' },
      output,
      codecs: { ingest: 'vp8', egress: 'vp8' },
      renderTimeoutMs: 5000,
    };
    await w.call('init', { ...setup, media: port2 }, [port2]);
    assert.deepEqual(await w.call('dispose', undefined), { faceModelsReleased: 3 }, 'a passthrough session did not load them, but the boot did');
    port1.close();
    await w.close();
  } finally {
    await pool.close();
  }
});
