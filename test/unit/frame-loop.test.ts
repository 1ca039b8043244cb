import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../server/log.ts';
import { FrameBudget } from '../../server/loop/frame-budget.ts';
import { FrameLoop } from '../../server/loop/frame-loop.ts';
import type { FromWorker, ToWorker } from '../../server/loop/messages.ts';
import type { LoopHost } from '../../server/loop/worker-host.ts';
import { StatsCollector } from '../../server/session/stats.ts';
import { waitUntil } from '../support/wait.ts';

/** A frame budget that records when it is told about a frame, and what. */
class RecordingBudget extends FrameBudget {
  readonly told: { at: number; latencyMs: number }[] = [];
  override observe(latencyMs: number, ownRenderMs: number, maxFps: number, now: number): void {
    this.told.push({ at: now, latencyMs });
    super.observe(latencyMs, ownRenderMs, maxFps, now);
  }
}

/**
 * A frame loop on a stand-in worker: the test plays the worker's side of the media port. The
 * worker takes messages (kept in `posted`) once started.
 */
function loopOnFakeWorker() {
  let ready = false;
  const posted: ToWorker[] = [];
  const host = {
    onMessage: (_m: FromWorker) => {},
    onRestart: (_r: string) => {},
    post: (m: ToWorker) => ready && posted.push(m) > 0,
    start: async () => {
      ready = true;
    },
    close: async () => {},
  };
  const peer = { sendsBack: true, sent: 0, sendFrame() { this.sent++; }, requestKeyframe() {}, waitingForKeyframe: false, shares: [] as number[], limitIncoming(share: number) { this.shares.push(share); } };
  const budget = new RecordingBudget(60);
  const stats = new StatsCollector();
  const loop = new FrameLoop({ peer, viewers: new Map(), host: host as unknown as LoopHost, stats, log: createLogger('silent'), maxFps: 30, budget });
  let rtp = 0;
  /** The worker sends an encoded frame whose driving frame arrived `latencyMs` ago. */
  const out = (latencyMs: number) => host.onMessage({ t: 'out', data: new ArrayBuffer(16), keyframe: false, rtp: (rtp += 3000), arrival: performance.now() - latencyMs, times: { decodeMs: 1, renderMs: 5, backgroundMs: 0, encodeMs: 1 }, held: false });
  return { loop, host, peer, budget, stats, posted, out };
}

/** Sends a frame every 20 ms until the budget has been told of one; returns when the first frame went out. */
async function sendUntilTold(f: ReturnType<typeof loopOnFakeWorker>, latencyMs: number): Promise<number> {
  const first = performance.now();
  const told = f.budget.told.length;
  f.out(latencyMs);
  const timer = setInterval(() => f.out(latencyMs), 20);
  try {
    await waitUntil(() => f.budget.told.length > told, 10_000, 'the frame budget to be told of a frame');
  } finally {
    clearInterval(timer);
  }
  return first;
}

describe('frame loop', () => {
  it('does not tell the frame budget about the first second of output after a start or a worker restart', async () => {
    const f = loopOnFakeWorker();
    await f.loop.start();
    const first = await sendUntilTold(f, 400);
    assert.ok(f.peer.sent > 1, 'frames went out meanwhile');
    assert.ok(f.budget.told[0].at - first >= 1000, `first told ${(f.budget.told[0].at - first).toFixed(0)} ms after the first frame out`);
    assert.equal(f.budget.told[0].latencyMs >= 400, true);

    f.host.onRestart('test');
    const told = f.budget.told.length;
    const again = await sendUntilTold(f, 400);
    assert.ok(f.budget.told[told].at - again >= 1000, `after the restart, first told ${(f.budget.told[told].at - again).toFixed(0)} ms after its first frame out`);
    await f.loop.close();
  });

  it('frames that came while the worker started go on from their latest keyframe once it is ready, each counted once', async () => {
    const { loop, stats, posted } = loopOnFakeWorker();
    const frame = (n: number, keyframe: boolean) => loop.ingest({ data: new Uint8Array([n]), keyframe, arrival: n, rtpTimestamp: n * 3000 });
    frame(0, true);
    frame(1, false);
    frame(2, true);
    for (let n = 3; n < 12; n++) frame(n, false);
    assert.equal(posted.length, 0, 'nothing posted before the worker is ready');
    await loop.start();
    frame(12, false);
    const frames = posted.filter((m): m is Extract<ToWorker, { t: 'frame' }> => m.t === 'frame');
    assert.deepEqual(frames.map((m) => new Uint8Array(m.data)[0]), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'from the latest keyframe on');
    assert.equal(stats.framesReceived, 13, 'each frame counted once, kept or not');
    await loop.close();
  });

  it('the frame budget\'s cap reaches the peer as a share of the session\'s frame rate, and its lift as 1', async () => {
    const f = loopOnFakeWorker();
    await f.loop.start();
    f.loop.peerAttached();
    assert.deepEqual(f.peer.shares, [1], 'a peer that comes while no cap applies is told so');
    // Two half-second windows: one far over the budget (the cap drops at once), then lateness gone.
    f.budget.observe(500, 0, 30, 0);
    f.budget.observe(500, 0, 30, 600);
    assert.deepEqual(f.peer.shares, [1, 0.75], 'capped at 22.5 of 30 fps');
    for (let t = 1200; f.peer.shares.at(-1)! < 1 && t < 20_000; t += 600) f.budget.observe(0, 0, 30, t);
    assert.equal(f.peer.shares.at(-1), 1, 'the cap lifted');
    assert.ok(f.peer.shares.slice(2, -1).every((s, i, a) => s > 0.75 && (i === 0 || s > a[i - 1])), `rising: ${f.peer.shares}`);
    await f.loop.close();
  });

  it('a held (paused) frame is never counted', async () => {
    const f = loopOnFakeWorker();
    await f.loop.start();
    await sendUntilTold(f, 10);
    const told = f.budget.told.length;
    for (let i = 0; i < 5; i++) f.host.onMessage({ t: 'out', data: new ArrayBuffer(16), keyframe: false, rtp: i, arrival: performance.now() - 900, times: { decodeMs: 1, renderMs: 5, backgroundMs: 0, encodeMs: 1 }, held: true });
    assert.equal(f.peer.sent > 5, true, 'held frames still go out');
    assert.equal(f.budget.told.length, told, 'but say nothing about the CPU');
    await f.loop.close();
  });
});
