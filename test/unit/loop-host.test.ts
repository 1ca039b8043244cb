/**
 * LoopHost: the main thread's handle on a session's loop worker replaces a worker that crashes,
 * blocks its thread, or reports a stalled render, sets the new one up with the session's current
 * set-up, and gives up after 3 restarts within a minute.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createLogger } from '../../server/log.ts';
import type { FromWorker } from '../../server/loop/messages.ts';
import { LoopHost } from '../../server/loop/worker-host.ts';
import { LoopWorkerPool } from '../../server/loop/worker-pool.ts';
import type { LoopSetup } from '../../server/loop/worker.ts';
import type { RgbaImage } from '../../server/media/frame.ts';
import { waitUntil } from '../support/wait.ts';

const pool = new LoopWorkerPool(0, { renderer: 'passthrough', codec: { name: 'wasm' }, output: { width: 64, height: 64, fps: 30, bitrate: 500_000 } }, createLogger('silent'), new URL('../support/faulty-loop-worker.ts', import.meta.url));
after(() => pool.close());

const portrait: RgbaImage = { width: 2, height: 2, data: new Uint8Array(16).fill(7) };

function host(hangMs = 1500) {
  let params: LoopSetup['params'] = {};
  const setup = (): LoopSetup => ({
    renderer: 'passthrough',
    options: { outputWidth: 64, outputHeight: 64 },
    portrait,
    params,
    codec: { name: 'wasm' },
    output: { width: 64, height: 64, fps: 30, bitrate: 500_000 },
    codecs: { ingest: 'vp8', egress: 'vp8' },
    renderTimeoutMs: hangMs,
  });
  const h = new LoopHost(pool, setup, hangMs);
  const outs: number[] = [];
  const restarts: string[] = [];
  const gaveUp: string[] = [];
  h.onMessage = (m: FromWorker) => m.t === 'out' && outs.push(new Uint8Array(m.data)[0]);
  h.onRestart = (r) => restarts.push(r);
  h.onGiveUp = (r) => gaveUp.push(r);
  let rtp = 0;
  const frame = () => h.post({ t: 'frame', data: new ArrayBuffer(4), keyframe: true, rtp: (rtp += 3000), arrival: performance.now() });
  const arm = (mode: 'crash' | 'block' | 'stall') => h.call('arm' as never, { mode } as never);
  return { h, outs, restarts, gaveUp, frame, arm, setParams: (p: LoopSetup['params']) => (params = p) };
}

test('a crashed loop worker is replaced and set up again with the current set-up', async () => {
  const t = host();
  try {
    await t.h.start();
    assert.ok(t.frame());
    await waitUntil(() => t.outs.length === 1, 5000, 'an answer');
    assert.equal(t.outs[0], 7, 'portrait seen by the worker, no params yet');
    t.setParams({ expressionGain: 2 });
    await t.arm('crash');
    t.frame();
    await waitUntil(() => t.restarts.length === 1 && t.h.ready, 10_000, 'a restart');
    assert.match(t.restarts[0], /crashed/);
    assert.ok(t.frame());
    await waitUntil(() => t.outs.length === 2, 5000, 'an answer');
    assert.equal(t.outs[1], 7 + 20, 'the new worker got the portrait and the current params');
    assert.equal(t.h.restarts, 1);
    assert.deepEqual(t.gaveUp, []);
  } finally {
    await t.h.close();
  }
});

test('a worker whose thread is blocked is detected by its silence and replaced', async () => {
  const t = host(600);
  try {
    await t.h.start();
    await t.arm('block');
    const t0 = performance.now();
    t.frame();
    await waitUntil(() => t.restarts.length === 1 && t.h.ready, 10_000, 'a restart');
    assert.match(t.restarts[0], /hung: no answer/);
    assert.ok(performance.now() - t0 >= 600, 'not before the timeout');
    t.frame();
    await waitUntil(() => t.outs.length === 1, 5000, 'an answer');
  } finally {
    await t.h.close();
  }
});

test('a stalled render reported by the worker replaces it', async () => {
  const t = host();
  try {
    await t.h.start();
    await t.arm('stall');
    t.frame();
    await waitUntil(() => t.restarts.length === 1 && t.h.ready, 10_000, 'a restart');
    assert.match(t.restarts[0], /a render took more than 9999 ms/);
  } finally {
    await t.h.close();
  }
});

test('a worker that keeps crashing is given up on after 3 restarts', async () => {
  const t = host();
  try {
    await t.h.start();
    for (let i = 1; i <= 3; i++) {
      await t.arm('crash');
      t.frame();
      await waitUntil(() => t.restarts.length === i && t.h.ready, 10_000, 'a restart');
    }
    await t.arm('crash');
    t.frame();
    await waitUntil(() => t.gaveUp.length === 1, 10_000, 'giving up');
    assert.match(t.gaveUp[0], /3 restarts within 60 s/);
    assert.equal(t.h.restarts, 3);
  } finally {
    await t.h.close();
  }
});
