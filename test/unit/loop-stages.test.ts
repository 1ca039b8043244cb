/**
 * The frame loop's stages on their own: the decode stage's bounded backlog and temporal-layer
 * skipping (with a decoder whose answers the test releases by hand), the keyframe policy, the
 * frame-rate cap, the frame budget that steers it, and the temporal layer read from RTP.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeStage, MAX_IN_FLIGHT, type EncodedInput } from '../../server/loop/decode.ts';
import { FrameBudget, MIN_FPS, WINDOW_MS } from '../../server/loop/frame-budget.ts';
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

function harness() {
  const decoder = new HeldDecoder();
  const pictures: number[] = [];
  const needs: string[] = [];
  let dropped = 0;
  const stage = new DecodeStage(
    { name: 'wasm' },
    {
      picture: (f) => pictures.push(f.timestamp),
      dropped: () => dropped++,
      needKeyframe: (reason) => needs.push(reason),
      restarted: () => {},
    },
    'vp8',
    decoder,
  );
  let n = 0;
  const push = (keyframe: boolean, tid?: number): number => {
    const id = n++;
    const input: EncodedInput = { data: new Uint8Array([id]), keyframe, tid, rtp: id * 3000, arrival: id };
    stage.push(input);
    return id;
  };
  const settle = () => new Promise((r) => setImmediate(r));
  return { decoder, stage, pictures, needs, push, settle, dropped: () => dropped };
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

  it(`drops its backlog and waits for a keyframe when ${MAX_IN_FLIGHT} frames wait (no temporal layers)`, async () => {
    const h = harness();
    h.push(true);
    for (let i = 0; i < MAX_IN_FLIGHT - 1; i++) h.push(false);
    assert.equal(h.decoder.pendingCount, MAX_IN_FLIGHT);
    h.push(false);
    assert.equal(h.dropped(), 1);
    assert.equal(h.needs.length, 1);
    assert.match(h.needs[0], /behind by 3 frames/);
    h.push(false);
    assert.equal(h.dropped(), 2, 'inter frames wait for the keyframe');
    const key = h.push(true);
    assert.equal(h.decoder.pendingCount, MAX_IN_FLIGHT + 1, 'a keyframe is always decoded');
    while (h.decoder.pendingCount) h.decoder.release();
    await h.settle();
    assert.deepEqual(h.pictures, [0, 1, 2, key]);
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
  /** Feeds `seconds` of 30 fps output at this latency (render 10 ms) and returns the cap after each window. */
  function run(b: FrameBudget, start: number, seconds: number, latencyMs: (fps: number) => number): number[] {
    const caps: number[] = [];
    for (let t = 0; t < seconds * 1000; t += 1000 / 30) {
      const changed = b.observe(latencyMs(b.fps) + 10, 10, start + t);
      if (changed !== undefined) caps.push(changed);
    }
    return caps;
  }

  it('lowers the cap by a factor while over budget, down to the floor, then raises it back a step at a time', () => {
    const b = new FrameBudget(80, 30);
    const down = run(b, 0, 5, () => 200);
    assert.deepEqual(down.slice(0, 3), [22.5, 16.875, 12.65625]);
    assert.equal(b.fps, MIN_FPS, 'never below the floor');
    const up = run(b, 5000, 3, () => 60);
    assert.deepEqual(up.slice(0, 3), [6, 7, 8], 'one fps per window while within the budget');
    assert.ok(up.length >= 3000 / WINDOW_MS - 1, `${up.length} windows in 3 s`);
    assert.equal(b.fps, MIN_FPS + up.length);
  });

  it('a lone slow frame in a window costs nothing; a slow render is not overload', () => {
    const b = new FrameBudget(80, 30);
    let n = 0;
    // One frame in five is 300 ms late (a keyframe, a collection): the median stays low.
    run(b, 0, 5, () => (n++ % 5 === 0 ? 300 : 20));
    assert.equal(b.fps, 30);
    const slow = new FrameBudget(80, 30);
    for (let t = 0; t < 3000; t += 100) slow.observe(400, 380, t);
    assert.equal(slow.fps, 30, 'a 380 ms render is the renderer, not overload');
  });

  it('sessions sharing a CPU settle near the rate it can give them, at equal shares', () => {
    // Two sessions on a CPU that can do 36 frames a second between them: beyond it every frame is late.
    const a = new FrameBudget(80, 30);
    const b = new FrameBudget(80, 30);
    run(b, 0, 4, () => 200);
    assert.ok(b.fps < 10, `b starts low, at ${b.fps}`);
    const late = () => (a.fps + b.fps > 36 ? 150 : 30);
    const rates: Array<[number, number]> = [];
    for (let t = 0; t < 60_000; t += 1000 / 30) {
      a.observe(late() + 10, 10, t);
      b.observe(late() + 10, 10, t);
      if (t > 40_000) rates.push([a.fps, b.fps]);
    }
    const mean = (i: 0 | 1) => rates.reduce((s, r) => s + r[i], 0) / rates.length;
    assert.ok(Math.abs(mean(0) - mean(1)) < 2, `equal shares: ${mean(0).toFixed(1)} and ${mean(1).toFixed(1)} fps`);
    assert.ok(mean(0) + mean(1) > 28 && mean(0) + mean(1) <= 37, `together ${(mean(0) + mean(1)).toFixed(1)} fps of the 36 the CPU gives`);
  });

  it('is off at 0, and starts again from a new maxFps', () => {
    const off = new FrameBudget(0, 30);
    assert.deepEqual(run(off, 0, 3, () => 500), []);
    assert.equal(off.fps, 30);
    const b = new FrameBudget(80, 30);
    run(b, 0, 2, () => 500);
    assert.ok(b.fps < 30);
    b.setMaxFps(24);
    assert.equal(b.fps, 24);
    assert.ok(run(b, 2000, 3, () => 10).every((fps) => fps <= 24), 'never above the new maxFps');
    const low = new FrameBudget(80, 3);
    run(low, 0, 3, () => 500);
    assert.equal(low.fps, 3, 'a maxFps under the floor is kept');
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
