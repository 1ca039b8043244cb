/**
 * The frame loop's stages on their own: the decode stage's bounded backlog and temporal-layer
 * skipping (with a decoder whose answers the test releases by hand), the keyframe policy, the
 * frame-rate cap, and the temporal layer read from RTP.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeStage, MAX_IN_FLIGHT, type EncodedInput } from '../../server/loop/decode.ts';
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
