import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameAssembler, type AssembledFrame, type RtpIn } from '../../server/rtc/frame-assembler.ts';
import { parseVp8Descriptor, vp8Payload } from '../../server/rtc/vp8-payload.ts';

/**
 * Builds the RTP packets of one VP8 frame the way libwebrtc does: extended descriptor with a
 * 15-bit picture id; the first byte of the VP8 payload carries the keyframe bit.
 */
function packetsOf(frame: { seq: number; ts: number; key: boolean; body: number[]; split: number; pictureId: number }): RtpIn[] {
  const payload = Uint8Array.from([frame.key ? 0x10 : 0x11, ...frame.body]);
  const out: RtpIn[] = [];
  for (let off = 0, i = 0; off < payload.length; off += frame.split, i++) {
    const chunk = payload.subarray(off, off + frame.split);
    const desc = [0x80 | (off === 0 ? 0x10 : 0), 0x80, 0x80 | (frame.pictureId >> 8), frame.pictureId & 0xff];
    out.push({ sequenceNumber: (frame.seq + i) & 0xffff, timestamp: frame.ts, marker: off + frame.split >= payload.length, payload: Uint8Array.from([...desc, ...chunk]) });
  }
  return out;
}

function stream(count: number, firstSeq = 100, split = 3) {
  const frames: RtpIn[][] = [];
  let seq = firstSeq;
  for (let i = 0; i < count; i++) {
    const p = packetsOf({ seq, ts: 3000 * i, key: i === 0, body: [i, i + 1, i + 2, i + 3, i + 4], split, pictureId: i });
    seq += p.length;
    frames.push(p);
  }
  return frames;
}

function collector(opts = { lossTimeoutMs: 100, maxPackets: 1024 }) {
  const frames: AssembledFrame[] = [];
  const losses: string[] = [];
  const a = new FrameAssembler(vp8Payload, (f) => frames.push(f), (r) => losses.push(r), opts);
  return { a, frames, losses };
}

test('the descriptor parser skips every optional field and finds the keyframe bit', () => {
  const d = parseVp8Descriptor(Uint8Array.from([0x90, 0xe0, 0x81, 0x02, 0x05, 0x40, 0x10, 0xaa]))!;
  assert.equal(d.start, true);
  assert.deepEqual([...d.payload], [0x10, 0xaa], 'X, I (2-byte id), L and T/K bytes are all skipped');
  assert.equal(d.keyframe, true);
  const inter = parseVp8Descriptor(Uint8Array.from([0x10, 0x01, 0x02]))!;
  assert.deepEqual([...inter.payload], [0x01, 0x02]);
  assert.equal(inter.keyframe, false);
  assert.equal(parseVp8Descriptor(Uint8Array.from([0x80])), null);
});

test('in-order packets become whole frames with their RTP timestamps, payload bytes intact', () => {
  const { a, frames, losses } = collector();
  for (const f of stream(4)) for (const p of f) a.push(p, 0);
  assert.equal(frames.length, 4);
  assert.deepEqual([...frames[2].data], [0x11, 2, 3, 4, 5, 6]);
  assert.deepEqual(frames.map((f) => f.keyframe), [true, false, false, false]);
  assert.deepEqual(frames.map((f) => f.rtpTimestamp), [0, 3000, 6000, 9000]);
  assert.equal(losses.length, 0);
});

test('reordered packets and a retransmission arriving within the timeout lose nothing', () => {
  const { a, frames, losses } = collector();
  const s = stream(3).flat();
  const late = s.splice(2, 1)[0];
  for (const i of [1, 0, 4, 2, 3]) a.push(s[i], 10);
  a.tick(50);
  assert.equal(frames.length, 1, 'frame 1 waits for its missing packet');
  a.push(late, 60);
  assert.equal(frames.length, 3);
  assert.equal(losses.length, 0);
});

test('a packet lost for good breaks the chain: inter frames are held back until the next keyframe', () => {
  const { a, frames, losses } = collector();
  const s = stream(3);
  const key2 = packetsOf({ seq: 100 + s.flat().length, ts: 9000, key: true, body: [9, 9, 9, 9, 9], split: 3, pictureId: 3 });
  for (const p of s[0]) a.push(p, 0);
  for (const p of s[1].slice(1)) a.push(p, 0);
  for (const p of s[2]) a.push(p, 0);
  assert.equal(frames.length, 1);
  a.tick(200);
  assert.deepEqual(losses, ['packets lost']);
  assert.equal(a.waitingForKeyframe, true);
  assert.equal(frames.length, 1, 'frame 2 references the lost frame 1 and must not reach the decoder');
  for (const p of key2) a.push(p, 210);
  assert.equal(frames.length, 2);
  assert.equal(frames[1].keyframe, true);
  assert.equal(frames[1].rtpTimestamp, 9000);
});

test('a keyframe lost in part is given up once: the next keyframe starts the chain as soon as it is whole', () => {
  const { a, frames, losses } = collector();
  const s = stream(2);
  let seq = 100 + s.flat().length;
  const broken = packetsOf({ seq, ts: 6000, key: true, body: [7, 7, 7, 7, 7, 7, 7, 7], split: 3, pictureId: 2 });
  seq += broken.length;
  const after = packetsOf({ seq, ts: 9000, key: false, body: [8, 8, 8], split: 3, pictureId: 3 });
  seq += after.length;
  const key2 = packetsOf({ seq, ts: 12000, key: true, body: [9, 9, 9, 9, 9], split: 3, pictureId: 4 });
  for (const p of s.flat()) a.push(p, 0);
  assert.equal(frames.length, 2);
  // The keyframe's middle packet never comes (neither it nor its retransmission).
  for (const p of [...broken.slice(0, 1), ...broken.slice(2), ...after]) a.push(p, 10);
  a.tick(200);
  assert.deepEqual(losses, ['packets lost']);
  a.tick(400);
  a.tick(600);
  assert.deepEqual(losses, ['packets lost'], 'the broken keyframe is not retried and found lost again every timeout');
  for (const p of key2) a.push(p, 610);
  assert.equal(frames.length, 3, 'the new keyframe is decodable at once');
  assert.equal(frames[2].keyframe, true);
  assert.equal(frames[2].rtpTimestamp, 12000);
  assert.equal(a.waitingForKeyframe, false);
});

test('a large frame paced over longer than the timeout is still arriving, not lost', () => {
  const { a, frames, losses } = collector();
  const s = stream(2);
  const big = packetsOf({ seq: 100 + s.flat().length, ts: 6000, key: false, body: Array.from({ length: 40 }, (_, i) => i), split: 4, pictureId: 2 });
  for (const p of s.flat()) a.push(p, 0);
  const half = big.length >> 1;
  for (const p of big.slice(0, half)) a.push(p, 0);
  a.tick(250);
  a.tick(500);
  assert.deepEqual(losses, [], 'nothing is missing below the highest packet: no gap to time');
  for (const p of big.slice(half)) a.push(p, 510);
  assert.equal(frames.length, 3);
  assert.equal(frames[2].data.length, 41);
});

test('a frame whose last packets are lost is found lost once later packets show the gap', () => {
  const { a, frames, losses } = collector();
  const s = stream(3);
  for (const p of s[0]) a.push(p, 0);
  for (const p of s[1].slice(0, -1)) a.push(p, 0);
  a.tick(500);
  assert.deepEqual(losses, [], 'while nothing came after it, frame 1 may still be arriving');
  for (const p of s[2]) a.push(p, 510);
  a.tick(560);
  assert.deepEqual(losses, [], 'the gap is timed from when it showed');
  a.tick(620);
  assert.deepEqual(losses, ['packets lost']);
  assert.equal(frames.length, 1);
});

/** A padding-only packet as werift hands it over: the padding stripped, nothing left. */
const padding = (seq: number, ts: number): RtpIn => ({ sequenceNumber: seq & 0xffff, timestamp: ts, marker: false, payload: new Uint8Array(0) });

test('padding-only packets between frames (bandwidth probes without RTX) are no gap', () => {
  const { a, frames, losses } = collector();
  const s = stream(3, 200);
  for (const p of s[0]) a.push(p, 0);
  // libwebrtc sends probes after a frame's marker, on the media SSRC, with that frame's timestamp
  const after0 = 200 + s[0].length;
  for (let i = 0; i < 5; i++) a.push(padding(after0 + i, 0), 1);
  const shifted = (f: RtpIn[], by: number) => f.map((p) => ({ ...p, sequenceNumber: (p.sequenceNumber + by) & 0xffff }));
  for (const p of shifted(s[1], 5)) a.push(p, 33);
  a.tick(300);
  for (const p of shifted(s[2], 5)) a.push(p, 400);
  a.tick(800);
  assert.deepEqual(losses, []);
  assert.deepEqual(frames.map((f) => f.rtpTimestamp), [0, 3000, 6000]);
  assert.equal(a.counters.malformed, 0, 'padding is not malformed');
});

test('padding inside a frame, or a frame that ends without its marker, is timed like a gap (not held until the packet limit)', () => {
  for (const broken of ['padding inside', 'no marker'] as const) {
    const { a, frames, losses } = collector();
    const s = stream(3, 300, 2);
    for (const p of s[0]) a.push(p, 0);
    const f1 = s[1].map((p) => ({ ...p }));
    if (broken === 'padding inside') f1[1] = padding(f1[1].sequenceNumber, f1[1].timestamp);
    else f1[f1.length - 1].marker = false;
    for (const p of f1) a.push(p, 10);
    for (const p of s[2]) a.push(p, 20);
    a.tick(60);
    assert.deepEqual(losses, [], `${broken}: within the timeout`);
    a.tick(130);
    assert.deepEqual(losses, ['packets lost'], broken);
    assert.equal(frames.length, 1, broken);
    assert.equal(a.waitingForKeyframe, true, `${broken}: waits for a keyframe`);
  }
});

test('a stream joined mid-way waits for a keyframe', () => {
  const { a, frames } = collector();
  const s = stream(3);
  for (const p of s[1]) a.push(p, 0);
  for (const p of s[2]) a.push(p, 0);
  assert.equal(frames.length, 0);
  assert.equal(a.waitingForKeyframe, true);
});

test('sequence numbers wrap around 65535 without a hiccup', () => {
  const { a, frames, losses } = collector();
  for (const f of stream(6, 65530)) for (const p of f) a.push(p, 0);
  assert.equal(frames.length, 6);
  assert.equal(losses.length, 0);
});

test('garbage payloads are counted and ignored; memory stays bounded', () => {
  const { a, frames } = collector({ lossTimeoutMs: 100, maxPackets: 64 });
  a.push({ sequenceNumber: 1, timestamp: 0, marker: true, payload: Uint8Array.from([0x80]) }, 0);
  assert.equal(a.counters.malformed, 1, 'a descriptor cut short');
  for (let i = 0; i < 5000; i++) a.push({ sequenceNumber: i & 0xffff, timestamp: i, marker: false, payload: Uint8Array.from([0x00, 0x01, 0x02]) }, i);
  assert.ok((a as unknown as { packets: Map<number, unknown> }).packets.size <= 256);
  assert.equal(frames.length, 0);
});
