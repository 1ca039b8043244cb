/**
 * H.264 on the native codec: round trip through libx264 and ffmpeg's decoder, keyframes on
 * request, parameter sets read before the decoder sees them (a corrupt SPS or PPS, a 16k picture),
 * a size change mid-stream; and the RTP payload format: access units packetised by werift's
 * H.264 packetizer (single NAL, STAP-A, FU-A) come out of the assembler byte for byte.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { H264Packetizer } from 'werift';
import { CodecError, type CodecBackend, type CodecErrorKind } from '../../server/media/codec.ts';
import { psnrI420 } from '../../server/media/convert.ts';
import { bundledFfmpeg, probeFfmpeg } from '../../server/media/ffmpeg.ts';
import { allocI420, planes, type EncodedFrame, type I420Frame } from '../../server/media/frame.ts';
import { inspectAccessUnit, splitAnnexB, spsSize } from '../../server/media/h264.ts';
import { openDecoder, openEncoder } from '../../server/media/open-codec.ts';
import { FrameAssembler, type AssembledFrame } from '../../server/rtc/frame-assembler.ts';
import { h264Payload, parseH264Payload } from '../../server/rtc/h264-payload.ts';

const native = await probeFfmpeg(bundledFfmpeg());
const backend: CodecBackend | null = native.available ? { name: 'native', ffmpegPath: native.path } : null;
const skip = backend ? false : 'no native ffmpeg';

/** A moving gradient with a block: enough detail for a meaningful PSNR. */
function frame(w: number, h: number, i: number): I420Frame {
  const f = allocI420(w, h, i * 33);
  const p = planes(f);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) p.y[y * w + x] = (x + y + i * 4) & 0xff;
  for (let y = 40; y < 80; y++) for (let x = 40 + i * 2; x < 100 + i * 2; x++) p.y[y * w + x] = 235;
  p.u.fill(110);
  p.v.fill(140);
  return f;
}

async function rejectsWith(p: Promise<unknown>, kind: CodecErrorKind): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof CodecError && e.kind === kind);
}

describe('H.264 codec (native)', { skip }, () => {
  const open: { close(): Promise<void> }[] = [];
  after(() => Promise.all(open.map((c) => c.close())));

  it('round-trips 640×480 frames above 35 dB; keyframes come first and on request, with SPS and PPS in band', async () => {
    const enc = await openEncoder(backend!, { width: 640, height: 480 }, 'h264');
    const dec = await openDecoder(backend!, 'h264');
    open.push(enc, dec);
    const packets: EncodedFrame[] = [];
    for (let i = 0; i < 10; i++) {
      const f = frame(640, 480, i);
      const e = await enc.encode(f, { keyframe: i === 6 });
      packets.push(e);
      const types = splitAnnexB(e.data).map((u) => u[0] & 0x1f);
      assert.equal(e.keyframe, i === 0 || i === 6, `frame ${i} keyframe`);
      if (e.keyframe) assert.deepEqual(types.filter((t) => t === 7 || t === 8 || t === 5).slice(0, 3), [7, 8, 5], 'SPS, PPS, IDR');
      const p = await dec.decode(e.data, f.timestamp);
      assert.ok(p, `frame ${i} decoded`);
      assert.deepEqual([p.width, p.height, p.timestamp], [640, 480, f.timestamp]);
      assert.ok(psnrI420(f, p) > 35, `frame ${i}: ${psnrI420(f, p).toFixed(1)} dB`);
    }
    assert.deepEqual(inspectAccessUnit(packets[0].data), { keyframe: true, sps: splitAnnexB(packets[0].data)[0], width: 640, height: 480 });
    // A decoder that never saw frame 0 starts at the requested keyframe.
    const late = await openDecoder(backend!, 'h264');
    open.push(late);
    await rejectsWith(late.decode(packets[3].data, 0), 'awaiting_keyframe');
    assert.ok(await late.decode(packets[6].data, 1));
    assert.ok(await late.decode(packets[7].data, 2));
  });

  it('refuses a corrupt or oversized SPS before the decoder sees it, and recovers at the next keyframe', async () => {
    const enc = await openEncoder(backend!, { width: 320, height: 240 }, 'h264');
    const dec = await openDecoder(backend!, 'h264');
    open.push(enc, dec);
    const key = await enc.encode(frame(320, 240, 0));
    const inter = await enc.encode(frame(320, 240, 1));
    const [sps, pps, ...rest] = splitAnnexB(key.data);
    const annexB = (units: Uint8Array[]) => Uint8Array.from(units.flatMap((u) => [0, 0, 0, 1, ...u]));
    // An SPS cut short after its profile: the parser runs out of bits.
    await rejectsWith(dec.decode(annexB([sps.subarray(0, 4), pps, ...rest]), 0), 'corrupt_frame');
    await rejectsWith(dec.decode(inter.data, 1), 'awaiting_keyframe');
    // An SPS declaring 16384 × 16384: pic_width_in_mbs_minus1 = 1023 ue(v) etc., built bit by bit.
    const huge = spsFor(1024, 1024);
    assert.deepEqual(spsSize(huge), { width: 16384, height: 16384 });
    await rejectsWith(dec.decode(annexB([huge, pps, ...rest]), 2), 'bad_frame');
    // A corrupt PPS passes the header check but not ffmpeg (-xerror): the decoder says so.
    const badPps = Uint8Array.from([pps[0], 0xff, 0xff, 0xff, 0xff]);
    await rejectsWith(dec.decode(annexB([sps, badPps, ...rest]), 3), 'corrupt_frame');
    const p = await dec.decode(key.data, 4);
    assert.ok(p && psnrI420(frame(320, 240, 0), p) > 35, 'the next good keyframe decodes');
    assert.ok(await dec.decode(inter.data, 5));
  });

  it('follows a new picture size from a new SPS: 320×240 → 640×360 → 320×240', async () => {
    const enc = await openEncoder(backend!, { width: 320, height: 240 }, 'h264');
    const dec = await openDecoder(backend!, 'h264');
    open.push(enc, dec);
    let i = 0;
    for (const [w, h] of [[320, 240], [640, 360], [320, 240]]) {
      for (let k = 0; k < 3; k++, i++) {
        const f = frame(w, h, i);
        const e = await enc.encode(f);
        assert.equal(e.keyframe, k === 0);
        const p = await dec.decode(e.data, i);
        assert.deepEqual([p?.width, p?.height], [w, h]);
      }
    }
  });
});

/** A minimal Baseline SPS for a picture of `mbsW` × `mbsH` macroblocks. */
function spsFor(mbsW: number, mbsH: number): Uint8Array {
  const bits: number[] = [];
  const u = (v: number, n: number) => {
    for (let i = n - 1; i >= 0; i--) bits.push((v >> i) & 1);
  };
  const ue = (v: number) => {
    const x = v + 1;
    const n = Math.floor(Math.log2(x));
    u(0, n);
    u(x, n + 1);
  };
  u(66, 8); // profile_idc: Baseline
  u(0xc0, 8); // constraint flags
  u(31, 8); // level
  ue(0); // sps id
  ue(0); // log2_max_frame_num_minus4
  ue(2); // pic_order_cnt_type
  ue(1); // max_num_ref_frames
  u(0, 1); // gaps
  ue(mbsW - 1);
  ue(mbsH - 1);
  u(1, 1); // frame_mbs_only
  u(1, 1); // direct_8x8
  u(0, 1); // no cropping
  u(0, 1); // no VUI
  u(1, 1); // rbsp stop bit
  while (bits.length % 8) bits.push(0);
  const out = [0x67];
  for (let i = 0; i < bits.length; i += 8) out.push(bits.slice(i, i + 8).reduce((a, b) => a * 2 + b, 0));
  return Uint8Array.from(out);
}

describe('H.264 RTP payload (packetization mode 1)', { skip }, () => {
  it('access units packetised by werift (STAP-A, FU-A, single NAL) are reassembled byte for byte', async () => {
    const enc = await openEncoder(backend!, { width: 640, height: 480 }, 'h264');
    const units: EncodedFrame[] = [];
    for (let i = 0; i < 6; i++) units.push(await enc.encode(frame(640, 480, i)));
    await enc.close();
    const packetizer = new H264Packetizer({ maxPayloadSize: 1100, payloadType: 102, inputFormat: 'annexb' });
    const frames: AssembledFrame[] = [];
    const a = new FrameAssembler(h264Payload, (f) => frames.push(f), () => assert.fail('no loss on a clean stream'));
    const kinds = new Set<number>();
    for (const [i, au] of units.entries()) {
      for (const p of packetizer.packetize(Buffer.from(au.data), i * 3000)) {
        kinds.add(p.payload[0] & 0x1f);
        a.push({ sequenceNumber: p.header.sequenceNumber, timestamp: p.header.timestamp, marker: p.header.marker, payload: p.payload });
      }
    }
    assert.ok(kinds.has(24) && kinds.has(28), `STAP-A and FU-A seen (${[...kinds].join(',')})`);
    assert.equal(frames.length, units.length);
    for (const [i, f] of frames.entries()) {
      assert.equal(f.keyframe, units[i].keyframe, `frame ${i} keyframe flag`);
      assert.deepEqual(splitAnnexB(f.data).map((u) => Buffer.from(u).toString('hex')), splitAnnexB(units[i].data).map((u) => Buffer.from(u).toString('hex')), `frame ${i} NAL units`);
    }
  });

  it('reads where access units start and which are keyframes; refuses the interleaved-mode types', () => {
    const slice = (type: number, firstMb0: boolean) => Uint8Array.from([0x60 | type, firstMb0 ? 0x88 : 0x08, 0x00]);
    assert.deepEqual(pick(parseH264Payload(slice(5, true))), { start: true, keyframe: true });
    assert.deepEqual(pick(parseH264Payload(slice(1, true))), { start: true, keyframe: false });
    assert.deepEqual(pick(parseH264Payload(slice(1, false))), { start: false, keyframe: false }, 'a second slice of a picture');
    const stap = Uint8Array.from([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]);
    assert.deepEqual(pick(parseH264Payload(stap)), { start: true, keyframe: true }, 'STAP-A with SPS and PPS');
    const fuStart = Uint8Array.from([0x7c, 0x85, 0x88, 0x01]);
    const fuMid = Uint8Array.from([0x7c, 0x05, 0x01]);
    assert.deepEqual(pick(parseH264Payload(fuStart)), { start: true, keyframe: true });
    assert.deepEqual(pick(parseH264Payload(fuMid)), { start: false, keyframe: false });
    assert.equal(parseH264Payload(Uint8Array.from([0x79, 0x00, 0x00])), null, 'STAP-B');
    assert.equal(parseH264Payload(Uint8Array.from([0x78, 0x00, 0x09, 0x67])), null, 'STAP-A whose size overruns');
    assert.equal(parseH264Payload(Uint8Array.from([0xe5, 0x88])), null, 'forbidden bit');
  });
});

function pick(p: { start: boolean; keyframe: boolean } | null) {
  assert.ok(p);
  return { start: p.start, keyframe: p.keyframe };
}
