import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allocI420, type RgbaImage } from '../../server/media/frame.ts';
import { RenderHost } from '../../server/session/render-host.ts';

const WORKER = new URL('../support/faulty-render-worker.ts', import.meta.url);
const portrait: RgbaImage = { width: 2, height: 2, data: new Uint8Array(16).fill(7) };

function host(timeoutMs = 1500) {
  const h = new RenderHost(
    () => ({ renderer: 'passthrough', options: { outputWidth: 64, outputHeight: 64 }, portrait, params: { expressionGain: 2 } }),
    { renderTimeoutMs: timeoutMs, workerUrl: WORKER },
  );
  const restarts: string[] = [];
  const gaveUp: string[] = [];
  h.onRestart = (r) => restarts.push(r);
  h.onGiveUp = (r) => gaveUp.push(r);
  return { h, restarts, gaveUp, arm: (mode: 'crash' | 'hang') => (h as unknown as { client: { call(m: string, a: unknown): Promise<unknown> } }).client.call('arm', { mode }) };
}

const frame = () => allocI420(32, 32, 5);

test('a crashed render worker is replaced and set up again with the current set-up', async () => {
  const { h, restarts, gaveUp, arm } = host();
  try {
    await h.init({ renderer: 'passthrough', options: { outputWidth: 64, outputHeight: 64 }, portrait });
    const first = await h.render(frame(), 0);
    assert.equal(first.frame.width, 64);
    assert.equal(first.frame.data[0], 7, 'portrait seen by the worker (no params sent yet)');
    await arm('crash');
    await assert.rejects(h.render(frame(), 1), /render worker failed|exited/);
    const after = await h.render(frame(), 2);
    assert.equal(after.frame.data[0], 7 + 20, 'the new worker got the portrait and the params back');
    assert.equal(after.frame.timestamp, 5);
    assert.equal(h.restarts, 1);
    assert.match(restarts[0], /crashed/);
    assert.deepEqual(gaveUp, []);
  } finally {
    await h.close();
  }
});

test('a render that hangs is abandoned after the timeout and the worker replaced', async () => {
  const { h, restarts, arm } = host(400);
  try {
    await h.init({ renderer: 'passthrough', options: { outputWidth: 64, outputHeight: 64 }, portrait });
    await arm('hang');
    const t0 = performance.now();
    await assert.rejects(h.render(frame(), 0), /longer than 400 ms/);
    assert.ok(performance.now() - t0 < 3000);
    const r = await h.render(frame(), 1);
    assert.equal(r.frame.width, 64);
    assert.deepEqual(restarts, ['hung']);
  } finally {
    await h.close();
  }
});

test('a worker that keeps crashing is given up on after 3 restarts', async () => {
  const { h, gaveUp, arm } = host();
  try {
    await h.init({ renderer: 'passthrough', options: { outputWidth: 64, outputHeight: 64 }, portrait });
    for (let i = 0; i < 3; i++) {
      await arm('crash');
      await assert.rejects(h.render(frame(), i));
      await h.render(frame(), 10 + i);
    }
    assert.equal(h.restarts, 3);
    await arm('crash');
    await assert.rejects(h.render(frame(), 99));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(gaveUp.length, 1);
    assert.match(gaveUp[0], /3 restarts within 60 s/);
  } finally {
    await h.close();
  }
});
