import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitUntil } from '../support/wait.ts';
import { LatestSlot } from '../../server/loop/latest-slot.ts';
import { Ring, RateMeter } from '../../server/session/stats.ts';

/** A stage whose runs finish only when the test says so. */
function controlledStage() {
  const ran: number[] = [];
  const releases: (() => void)[] = [];
  const run = (n: number) =>
    new Promise<void>((resolve) => {
      ran.push(n);
      releases.push(resolve);
    });
  const release = async () => {
    releases.shift()?.();
    await new Promise((r) => setImmediate(r));
  };
  return { ran, run, release };
}

test('a busy stage keeps only the newest waiting item and counts the rest as dropped', async () => {
  const st = controlledStage();
  const dropped: number[] = [];
  const slot = new LatestSlot<number>(st.run, (n) => dropped.push(n));
  for (let i = 1; i <= 5; i++) slot.offer(i);
  assert.deepEqual(st.ran, [1]);
  assert.deepEqual(dropped, [2, 3, 4]);
  await st.release();
  assert.deepEqual(st.ran, [1, 5], 'the newest frame runs next, never an older one');
  await st.release();
  assert.equal(slot.busy, false);
  slot.offer(6);
  assert.deepEqual(st.ran, [1, 5, 6]);
  await st.release();
});

test('the waiting set never holds more than one item, whatever the offer rate', async () => {
  const st = controlledStage();
  let dropped = 0;
  const slot = new LatestSlot<number>(st.run, () => dropped++);
  for (let i = 0; i < 10_000; i++) slot.offer(i);
  assert.equal(dropped, 9_998);
  await st.release();
  assert.deepEqual(st.ran, [0, 9_999]);
  await st.release();
});

test('a failing run does not stop the loop', async () => {
  const ran: number[] = [];
  const slot = new LatestSlot<number>(async (n) => {
    ran.push(n);
    if (n === 1) throw new Error('boom');
  });
  slot.offer(1);
  slot.offer(2);
  await waitUntil(() => ran.length === 2, 1000, 'the waiting item to run after the failed one');
  assert.deepEqual(ran, [1, 2]);
});

test('stop() drops the waiting item and resolves only once the running one has finished', async () => {
  const st = controlledStage();
  const dropped: number[] = [];
  const slot = new LatestSlot<number>(st.run, (n) => dropped.push(n));
  slot.offer(1);
  slot.offer(2);
  let stopped = false;
  const stopping = slot.stop().then(() => (stopped = true));
  assert.deepEqual(dropped, [2]);
  await new Promise((r) => setImmediate(r));
  assert.equal(stopped, false, 'item 1 still runs');
  await st.release();
  await stopping;
  assert.deepEqual(st.ran, [1], 'nothing ran after the stop');
  slot.offer(3);
  assert.deepEqual(st.ran, [1], 'a stopped slot takes nothing');
  assert.equal(await new LatestSlot<number>(st.run).stop(), undefined, 'an idle slot stops at once');
});

test('Ring percentiles are nearest-rank over the last N values', () => {
  const r = new Ring(4);
  assert.ok(Number.isNaN(r.percentile(50)));
  for (const v of [100, 1, 2, 3, 4]) r.push(v);
  assert.equal(r.count, 4);
  assert.equal(r.percentile(50), 2);
  assert.equal(r.percentile(100), 4, 'the oldest value (100) has been overwritten');
});

test('Ring summarises only the values within its time window', () => {
  const r = new Ring(8, 1000);
  r.push(900, 0);
  r.push(800, 100);
  for (const [v, at] of [[1, 1200], [2, 1300], [3, 1400]]) r.push(v, at);
  assert.equal(r.percentile(100, 1400), 3, 'the start-up values (900, 800) are over 1 s old');
  assert.equal(r.percentile(100, 1050), 800, 'at 1.05 s the value of 0.1 s still counts, the one of 0 s no longer');
  assert.ok(Number.isNaN(r.percentile(50, 5000)), 'nothing within the window: no summary');
  assert.equal(r.count, 5);
});

test('RateMeter measures events per second within its window', () => {
  const m = new RateMeter(1000);
  for (let i = 0; i <= 30; i++) m.mark(i * (1000 / 30));
  assert.ok(Math.abs(m.rate(1000) - 30) < 0.5);
  assert.equal(m.rate(5000), 0, 'old events fall out of the window');
});
