/**
 * The frame loop's stages on their own: the decode stage's bounded backlog and temporal-layer
 * skipping (with a decoder whose answers the test releases by hand), the keyframe policy, the
 * frame-rate cap, the frame budget that steers it, and the temporal layer read from RTP.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeStage, MAX_BEHIND_MS, MAX_IN_FLIGHT, MAX_QUEUED, type EncodedInput } from '../../server/loop/decode.ts';
import { FrameBudget, MIN_FPS, RenderFloor, WINDOW_MS } from '../../server/loop/frame-budget.ts';
import { KeyframePolicy } from '../../server/loop/keyframes.ts';
import { RateCap } from '../../server/loop/rate-cap.ts';
import { CodecError, type VideoDecoder } from '../../server/media/codec.ts';
import { allocI420, type I420Frame } from '../../server/media/frame.ts';
import { parseVp8Descriptor } from '../../server/rtc/vp8-payload.ts';
import { waitUntil } from '../support/wait.ts';

/** A decoder that holds every frame until the test resolves it; frame n decodes to a picture whose timestamp is n. */
class HeldDecoder implements VideoDecoder {
  readonly backend = 'wasm';
  readonly codec = 'vp8';
  readonly pids: number[] = [];
  lastMs = 0;
  readonly held: Array<{ n: number; resolve(f: I420Frame | null): void; reject(e: Error): void }> = [];
  onLost: (reason: string) => void = () => {};
  get pendingCount(): number {
    return this.held.length;
  }
  prewarm(): void {}
  decode(data: Uint8Array): Promise<I420Frame | null> {
    return new Promise((resolve, reject) => this.held.push({ n: data[0], resolve, reject }));
  }
  /** Answers the oldest frame. */
  release(): void {
    const h = this.held.shift()!;
    h.resolve(allocI420(2, 2, h.n));
  }
  async close(): Promise<void> {}
}

/** A decode stage on a HeldDecoder and a hand-set clock (`clock.ms`); `keep` decides, as each frame arrives, whether its picture will be used. */
function harness(keep: (rtp: number, tid?: number) => boolean = () => true) {
  const clock = { ms: 0 };
  const decoder = new HeldDecoder();
  const pictures: number[] = [];
  /** The decoded pictures that go on (their input was kept). */
  const kept: number[] = [];
  const needs: string[] = [];
  let dropped = 0;
  const stage = new DecodeStage(
    { name: 'wasm' },
    {
      picture: (f, input) => {
        pictures.push(f.timestamp);
        if (input.keep) kept.push(f.timestamp);
      },
      dropped: () => dropped++,
      needKeyframe: (reason) => needs.push(reason),
      restarted: () => {},
    },
    'vp8',
    decoder,
    () => clock.ms,
  );
  let n = 0;
  /** Frame `id` (default: the next) is sent; its RTP time is id × 3000 (30 fps). */
  const push = (keyframe: boolean, tid?: number, id = n): number => {
    n = id + 1;
    const input: EncodedInput = { data: new Uint8Array([id]), keyframe, tid, rtp: id * 3000, arrival: id, keep: keep(id * 3000, tid) };
    stage.push(input);
    return id;
  };
  const settle = () => new Promise((r) => setImmediate(r));
  return { decoder, stage, clock, pictures, kept, needs, push, settle, dropped: () => dropped };
}

describe('decode stage', () => {
  it('waits for a keyframe, then decodes every frame while it keeps up', async () => {
    const h = harness();
    h.push(false);
    assert.equal(h.dropped(), 1, 'an inter frame before any keyframe is dropped');
    h.push(true);
    h.decoder.release();
    for (let i = 0; i < 5; i++) {
      h.push(false);
      h.decoder.release();
    }
    await h.settle();
    assert.deepEqual(h.pictures, [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(h.needs, []);
  });

  it(`drops its backlog and waits for a keyframe when ${MAX_IN_FLIGHT} frames wait, the oldest for over ${MAX_BEHIND_MS} ms (no temporal layers)`, async () => {
    const h = harness();
    h.push(true);
    for (let i = 0; i < MAX_IN_FLIGHT - 1; i++) {
      h.clock.ms += 10;
      h.push(false);
    }
    assert.equal(h.decoder.pendingCount, MAX_IN_FLIGHT);
    h.clock.ms = MAX_BEHIND_MS + 1;
    h.push(false);
    assert.equal(h.dropped(), 0, 'first the pictures already waiting are read (one turn of the event loop)');
    await h.settle();
    assert.equal(h.dropped(), 1);
    assert.equal(h.needs.length, 1);
    assert.match(h.needs[0], new RegExp(`behind by 3 frames \\(${MAX_BEHIND_MS + 1} ms\\)`));
    h.push(false);
    assert.equal(h.dropped(), 2, 'inter frames wait for the keyframe');
    const key = h.push(true);
    assert.equal(h.decoder.pendingCount, MAX_IN_FLIGHT + 1, 'a keyframe is always decoded');
    while (h.decoder.pendingCount) h.decoder.release();
    await h.settle();
    assert.deepEqual(h.pictures, [0, 1, 2, key]);
  });

  it('decodes a burst of frames that queued up while its thread was busy: the count alone is no backlog', async () => {
    const h = harness();
    h.push(true);
    // The thread rendered for 40 ms; meanwhile three frames queued (a sender faster than 30 fps, or
    // ones held up on the way) and the decoder's picture waited unread.
    h.clock.ms = MAX_BEHIND_MS - 10;
    for (let i = 0; i < 3; i++) h.push(false);
    assert.equal(h.decoder.pendingCount, 4);
    assert.deepEqual(h.needs, []);
    assert.equal(h.dropped(), 0);
    while (h.decoder.pendingCount) h.decoder.release();
    await h.settle();
    assert.deepEqual(h.pictures, [0, 1, 2, 3]);
    // Once the pictures are read nothing is owed: the next frames start a fresh count.
    h.clock.ms = 500;
    h.push(false);
    assert.deepEqual(h.needs, []);
  });

  it(`drops its backlog at ${MAX_QUEUED} frames owed, however recent`, async () => {
    const h = harness();
    h.push(true);
    for (let i = 1; i < MAX_QUEUED; i++) h.push(false);
    assert.deepEqual(h.needs, []);
    h.push(false);
    await h.settle();
    assert.equal(h.dropped(), 1);
    assert.match(h.needs[0], /behind by 8 frames \(0 ms\)/);
  });

  it('looks again after the pictures already waiting are read: a thread busy rendering is no decoder behind', async () => {
    const h = harness();
    h.push(true);
    for (let i = 0; i < MAX_IN_FLIGHT - 1; i++) h.push(false);
    // A render held the thread for 70 ms; meanwhile the decoder answered the first two frames,
    // whose pictures wait in its pipe, and two more frames came.
    h.clock.ms = 70;
    const a = h.push(false);
    const b = h.push(false);
    assert.equal(h.decoder.pendingCount, MAX_IN_FLIGHT, 'both wait for the rule to look again');
    h.decoder.release();
    h.decoder.release();
    await h.settle();
    assert.deepEqual(h.needs, []);
    assert.equal(h.dropped(), 0);
    assert.equal(h.decoder.pendingCount, 3, `frames ${a} and ${b} went to the decoder, in order`);
    while (h.decoder.pendingCount) h.decoder.release();
    await h.settle();
    assert.deepEqual(h.pictures, [0, 1, 2, a, b]);
  });

  it('skips enhancement-layer frames while busy, down to the next base-layer frame, without asking for a keyframe', async () => {
    const h = harness();
    h.push(true, 0); // 0
    h.push(false, 1); // 1: skipped, decoder busy with 0
    h.push(false, 1); // 2: skipped until a base-layer frame
    h.decoder.release();
    h.push(false, 1); // 3: decoder idle, but still after a skipped one: skipped
    h.push(false, 0); // 4: base layer: decoded
    h.decoder.release();
    h.push(false, 1); // 5: idle → decoded
    h.decoder.release();
    await h.settle();
    assert.deepEqual(h.pictures, [0, 4, 5]);
    assert.equal(h.dropped(), 3);
    assert.deepEqual(h.needs, [], 'no keyframe was needed: nothing refers to the skipped frames');
  });

  it('does not decode the enhancement-layer frames the rate cap refused: 15 fps of a 30 fps L1T2 stream decodes half', async () => {
    const rate = new RateCap(15);
    // As the pipeline does: the rate cap decides as each frame arrives.
    const h = harness((rtp, tid) => rate.accept(rtp, tid));
    for (let i = 0; i < 60; i++) {
      h.push(i === 0, i % 2);
      while (h.decoder.pendingCount) h.decoder.release();
      await h.settle();
    }
    assert.equal(h.pictures.length, 30, `decoded ${h.pictures.length} of 60`);
    assert.ok(h.pictures.every((n) => n % 2 === 0), 'only base-layer frames were decoded');
    assert.equal(h.kept.length, 30, 'and every one of them goes on: 15 fps out');
    assert.deepEqual(h.needs, []);
    // Uncapped, every frame is decoded and goes on again.
    rate.fps = 30;
    for (let i = 60; i < 80; i++) {
      h.push(false, i % 2);
      while (h.decoder.pendingCount) h.decoder.release();
      await h.settle();
    }
    assert.equal(h.pictures.length, 50);
    assert.equal(h.kept.length, 50);
  });

  it('keeps to the base layer after a lost or late frame (slots alone would shift onto the enhancement layer)', async () => {
    const rate = new RateCap(15);
    const h = harness((rtp, tid) => rate.accept(rtp, tid));
    for (let i = 0; i < 60; i++) {
      if (i === 20) continue; // a base-layer frame lost on the way
      h.push(i === 0, i % 2, i);
      while (h.decoder.pendingCount) h.decoder.release();
      await h.settle();
    }
    // Right after the loss the base layer looks half as fast for one step, which lets one enhancement frame on.
    const others = h.kept.filter((n) => n % 2 === 1);
    assert.ok(others.length <= 1 && others.every((n) => n < 24), `enhancement-layer frames that went on: ${others.join(', ')}`);
    assert.ok(h.kept.length >= 28, `${h.kept.length} frames went on`);
    assert.deepEqual(h.pictures, h.kept, 'and nothing was decoded that did not go on');
  });

  it('without layers every frame is decoded (the reference chain), and the refused ones are not kept', async () => {
    const rate = new RateCap(15);
    const h = harness((rtp) => rate.accept(rtp));
    for (let i = 0; i < 60; i++) {
      h.push(i === 0);
      while (h.decoder.pendingCount) h.decoder.release();
      await h.settle();
    }
    assert.equal(h.pictures.length, 60);
    assert.equal(h.kept.length, 30);
  });

  it('a failed decode makes it wait for a keyframe and say why', async () => {
    const h = harness();
    h.push(true);
    h.decoder.held.shift()!.reject(new CodecError('corrupt_frame', 'bad bits'));
    await h.settle();
    assert.deepEqual(h.needs, ['bad bits']);
    h.push(false);
    assert.equal(h.dropped(), 1);
  });
});

describe('keyframe policy', () => {
  it('holds inter frames back until a keyframe, asks the sender while it waits, and forces output keyframes', async () => {
    const asked: string[] = [];
    let forced = 0;
    let counted = 0;
    const source = { waitingForKeyframe: false, requestKeyframe: (r: string) => asked.push(r) };
    const p = new KeyframePolicy(source, () => forced++, () => counted++);
    try {
      assert.equal(p.admit(false), false, 'at start nothing but a keyframe passes');
      const t0 = asked.length;
      await waitUntil(() => asked.length > t0, 2000, 'the sender asked again while no keyframe comes');
      assert.equal(p.admit(true), true);
      assert.equal(p.admit(false), true);
      p.needKeyframe('decoder failed');
      assert.equal(counted, 1);
      assert.equal(asked.at(-1), 'decoder failed');
      assert.equal(p.admit(false), false);
      assert.equal(p.admit(true), true);
      p.keyframeOut();
      assert.equal(forced, 1);
    } finally {
      p.stop();
    }
  });

  it('asks again at the next 50 ms check while waiting, so an ask the peer held back goes out as soon as its spacing allows', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    let now = 0;
    let lastPli = -Infinity;
    const plis: number[] = [];
    // The peer's rule (rtc/peer.ts): PLIs at least 300 ms apart.
    const source = {
      waitingForKeyframe: false,
      requestKeyframe: () => {
        if (now - lastPli < 300) return;
        lastPli = now;
        plis.push(now);
      },
    };
    const advance = (to: number) => {
      while (now < to) {
        now += 10;
        t.mock.timers.tick(10);
      }
    };
    const p = new KeyframePolicy(source, () => {}, () => {});
    try {
      p.admit(true);
      p.needKeyframe('packets lost');
      p.admit(true);
      // 100 ms later the decoder falls behind: the peer holds this ask back (too soon after the last).
      advance(100);
      p.needKeyframe('decoder behind');
      assert.deepEqual(plis, [0]);
      advance(650);
      assert.deepEqual(plis, [0, 300, 600], 'asked again as soon as the spacing allowed, then every 300 ms while still waiting');
      p.admit(true);
      advance(1500);
      assert.deepEqual(plis, [0, 300, 600], 'no asks once the keyframe came');
    } finally {
      p.stop();
    }
  });
});

describe('rate cap', () => {
  it('passes a 30 fps stream whole at a 30 fps cap, halves a 60 fps one, and survives an RTP wrap', () => {
    const cap = new RateCap(30);
    let passed = 0;
    for (let i = 0; i < 30; i++) if (cap.accept(i * 3000)) passed++;
    assert.equal(passed, 30);
    const fast = new RateCap(30);
    passed = 0;
    for (let i = 0; i < 60; i++) if (fast.accept(i * 1500)) passed++;
    assert.equal(passed, 30);
    const wrap = new RateCap(30);
    assert.ok(wrap.accept(0xffffffff - 1000));
    assert.ok(wrap.accept(2000), 'a timestamp just past the wrap is 3000 ticks later');
    assert.equal(wrap.accept(2100), false);
  });

  it('meets a rate between the input\'s fractions on average (20 of 30 fps), and restarts after a pause without a burst', () => {
    const cap = new RateCap(20);
    const passed: number[] = [];
    for (let i = 0; i < 90; i++) if (cap.accept(i * 3000)) passed.push(i);
    assert.equal(passed.length, 60, '3 s of 30 fps at a 20 fps cap');
    assert.deepEqual(passed.slice(0, 6), [0, 2, 3, 5, 6, 8], 'two frames of every three');
    cap.fps = 10;
    const resumed = [100, 101, 102, 103, 104, 105, 106].filter((i) => cap.accept(i * 3000));
    assert.deepEqual(resumed, [100, 103, 106], 'after a 10-frame pause: one frame, then one in three — no catch-up burst');
  });

  it('a capture clock a little early still passes whole at its own rate', () => {
    const cap = new RateCap(30);
    // ±10 % jitter on the sender's capture clock.
    const jitter = [0, 300, -300, 250, -250, 0, 300, -300];
    let passed = 0;
    for (let i = 0; i < 240; i++) if (cap.accept(i * 3000 + jitter[i % jitter.length])) passed++;
    assert.equal(passed, 240);
  });
});

describe('frame budget', () => {
  /** Feeds `seconds` of 30 fps output per session at this latency (render 10 ms); returns the caps it changed to. */
  function run(b: FrameBudget, start: number, seconds: number, latencyMs: () => number, maxFps: number[] = [30]): number[] {
    const caps: number[] = [];
    const off = b.onChange((cap) => caps.push(cap));
    for (let t = 0; t < seconds * 1000; t += 1000 / 30) for (const m of maxFps) b.observe(latencyMs() + 10, 10, m, start + t);
    off();
    return caps;
  }

  it('lowers every session\'s cap by a factor while over budget, down to the floor, then raises it back a step at a time', () => {
    const b = new FrameBudget(60);
    const down = run(b, 0, 5, () => 200);
    assert.deepEqual(down.slice(0, 3), [22.5, 16.875, 12.65625], 'more than twice over budget: down from the first window');
    assert.equal(b.capFor(30), MIN_FPS, 'never below the floor');
    assert.equal(b.capFor(3), 3, 'a maxFps under the cap is kept');
    const up = run(b, 5000, 3, () => 40);
    assert.deepEqual(up.slice(0, 3), [6, 7, 8], 'one fps per window while within the budget');
    assert.ok(up.length >= 3000 / WINDOW_MS - 1, `${up.length} windows in 3 s`);
    const mild = new FrameBudget(60);
    assert.deepEqual(run(mild, 0, 2.2, () => 90).slice(0, 2), [22.5, 16.875], 'over budget but not twice: down from the second window on');
    run(b, 8000, 15, () => 40);
    assert.equal(b.capFor(30), 30, 'back to the sessions\' own cap');
    assert.equal(b.capFor(60), 60, 'and lifted altogether');
  });

  it('a lone slow frame or a short burst costs nothing; a slow render is not overload; 0 turns it off', () => {
    const b = new FrameBudget(60);
    let n = 0;
    // One frame in eight is 300 ms late (keyframes, collections): two in a window of 16, above its 75th percentile.
    assert.deepEqual(run(b, 0, 5, () => (n++ % 8 === 0 ? 300 : 20)), []);
    // One in three is the tail the budget is for: it goes down.
    let m = 0;
    assert.ok(run(new FrameBudget(60), 0, 2, () => (m++ % 3 === 0 ? 300 : 20)).length > 0, 'a third of the frames 300 ms late lowers the cap');
    // A burst over the budget (but not twice over) for a third of a second within one window is gone before fewer
    // frames could help. Windows close at frames 15, 30, 45, …: frames 31–40 lie in the third.
    const burst = (from: number) => {
      let frame = 0;
      return () => {
        const k = frame++;
        return k >= from && k < from + 10 ? 100 : 20;
      };
    };
    assert.deepEqual(run(new FrameBudget(60), 0, 4, burst(31)), []);
    // The same burst across two windows is over budget in both (5 of 16 frames, above a quarter): that is the 75th percentile's price.
    assert.deepEqual(run(new FrameBudget(60), 0, 4, burst(26)).slice(0, 1), [22.5]);
    const slow = new FrameBudget(60);
    for (let t = 0; t < 3000; t += 100) slow.observe(400, 380, 30, t);
    assert.equal(slow.capFor(30), 30, 'a 380 ms render is the renderer, not overload');
    const off = new FrameBudget(0);
    assert.deepEqual(run(off, 0, 3, () => 500), []);
    assert.equal(off.capFor(30), 30);
  });

  it('one cap for all sessions: it starts from the highest maxFps among them and settles near what the CPU can give', () => {
    const b = new FrameBudget(60);
    // Sessions at 30 and 15 fps: lowering starts from 30, and the 15 fps one is slowed only below 15.
    const caps = run(b, 0, 1.5, () => 200, [30, 15]);
    assert.equal(caps[0], 22.5);
    assert.equal(b.capFor(15), Math.min(15, caps[caps.length - 1]));
    // A CPU that gives 2 × 18 fps: beyond it every frame is late.
    const seen: number[] = [];
    for (let t = 2000; t < 60_000; t += 1000 / 30) {
      const cap = b.capFor(30);
      for (let s = 0; s < 2; s++) b.observe((2 * cap > 36 ? 150 : 30) + 10, 10, 30, t);
      if (t > 30_000) seen.push(b.capFor(30));
    }
    const mean = seen.reduce((a, c) => a + c, 0) / seen.length;
    assert.ok(mean > 14 && mean <= 19, `settled at ${mean.toFixed(1)} fps per session`);
  });

  it('counts what a shortage adds to a render, not the render\'s own time', () => {
    const floor = new RenderFloor();
    for (let i = 0; i < 30; i++) floor.push(20 + (i % 3));
    assert.equal(floor.push(80), 20, 'a render slowed to 80 ms counts 60 ms against the budget');
    for (let i = 0; i < 299; i++) floor.push(80);
    assert.equal(floor.push(80), 80, 'after ~10 s at 80 ms, 80 ms is the renderer\'s own time');
    const b = new FrameBudget(60);
    const slow = new RenderFloor();
    const mesh = new RenderFloor();
    for (let t = 0; t < 3000; t += 1000 / 30) {
      b.observe(400 + (t % 7), slow.push(380 + (t % 5)), 30, t);
      b.observe(30, mesh.push(20), 30, t);
    }
    assert.equal(b.capFor(30), 30, 'a 380 ms renderer beside a 20 ms one: no overload');
    for (let t = 3000; t < 6000; t += 1000 / 30) b.observe(110, mesh.push(100), 30, t);
    assert.ok(b.capFor(30) < 15, `renders slowed from 20 to 100 ms lower the cap (${b.capFor(30)})`);
  });

  it('after a pause with no frames at all the cap is lifted', () => {
    const b = new FrameBudget(60);
    run(b, 0, 3, () => 200);
    assert.ok(b.capFor(30) < 10);
    const lifted: number[] = [];
    b.onChange((cap) => lifted.push(cap));
    b.observe(20, 10, 30, 10_000);
    assert.deepEqual(lifted, [Number.POSITIVE_INFINITY]);
    assert.equal(b.capFor(30), 30);
  });
});

describe('VP8 payload descriptor', () => {
  it('reads the temporal layer when the T bit is set, after the picture id and TL0PICIDX', () => {
    // X=1, S=1; I, L, T set; 15-bit picture id; TL0PICIDX; TID=2, Y=1.
    const withLayers = new Uint8Array([0x90, 0xe0, 0x80, 0x01, 0x07, (2 << 6) | 0x20, 0x00, 0xaa]);
    const d = parseVp8Descriptor(withLayers)!;
    assert.equal(d.tid, 2);
    assert.equal(d.keyframe, true);
    assert.deepEqual([...d.payload], [0x00, 0xaa]);
    const plain = parseVp8Descriptor(new Uint8Array([0x10, 0x01, 0xbb]))!;
    assert.equal(plain.tid, undefined);
    assert.equal(plain.keyframe, false);
  });
});
