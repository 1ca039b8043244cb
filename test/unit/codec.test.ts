import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { XplError } from '../../server/errors.ts';
import { CodecError, type CodecBackend, type CodecErrorKind, type VideoDecoder, type Vp8EncoderOptions } from '../../server/media/codec.ts';
import { bundledFfmpeg, probeFfmpeg } from '../../server/media/ffmpeg.ts';
import { openDecoder, openEncoder } from '../../server/media/open-codec.ts';
import { cropScaleI420, psnrI420, rgbaToI420 } from '../../server/media/convert.ts';
import { allocI420, planes, type I420Frame } from '../../server/media/frame.ts';

/** Luma PSNR every decoded frame must reach at the default settings (bench/codec.ts measures 41 dB mean, 34 dB worst at 512²). */
const MIN_PSNR_DB = 30;
const FPS = 30;

let portrait: I420Frame;

before(async () => {
  const path = fileURLToPath(new URL('../fixtures/astronaut.png', import.meta.url));
  const { data, info } = await sharp(path).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  portrait = allocI420(info.width, info.height);
  rgbaToI420({ width: info.width, height: info.height, data }, portrait);
});

/** The portrait at `width`×`height`, shifted by (dx, dy) with wrap-around: a moving picture. */
function movingFrame(width: number, height: number, i: number): I420Frame {
  const still = allocI420(width, height);
  cropScaleI420(portrait, still, 'cover');
  const out = allocI420(width, height, (i * 1000) / FPS);
  const s = planes(still), d = planes(out);
  const shift = (sp: Uint8Array, dp: Uint8Array, w: number, h: number, dx: number, dy: number) => {
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) dp[y * w + x] = sp[((y + dy) % h) * w + ((x + dx) % w)];
  };
  shift(s.y, d.y, width, height, 2 * i, i);
  shift(s.u, d.u, s.cw, s.ch, i, i >> 1);
  shift(s.v, d.v, s.cw, s.ch, i, i >> 1);
  return out;
}

/** Deterministic pseudo-random bytes. */
function noise(length: number, seed: number): Uint8Array {
  let state = seed >>> 0;
  return Uint8Array.from({ length }, () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 24);
}

/** A VP8 keyframe header (RFC 6386 §9.1: tag with a 1000-byte first partition, start code, size) over random bytes. */
function fakeKeyframe(width: number, height: number, seed: number): Uint8Array {
  const data = noise(3000, seed);
  const tag = (1 << 4) | (1000 << 5); // keyframe, version 0, shown
  data.set([tag & 0xff, (tag >> 8) & 0xff, tag >> 16, 0x9d, 0x01, 0x2a, width & 0xff, width >> 8, height & 0xff, height >> 8]);
  return data;
}

function isVp8Keyframe(data: Uint8Array): boolean {
  return (data[0] & 1) === 0;
}

async function rejectsWith(p: Promise<unknown>, kind: CodecErrorKind, code?: XplError['code']): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CodecError, `expected a CodecError, got ${String(err)}`);
    assert.ok(err instanceof XplError);
    assert.equal(err.kind, kind, err.message);
    if (code) assert.equal(err.code, code);
    return true;
  });
}

const native = await probeFfmpeg(bundledFfmpeg());
const BACKENDS: CodecBackend[] = [{ name: 'wasm' }, ...(native.available ? [{ name: 'native' as const, ffmpegPath: native.path }] : [])];

it('the npm package ships a native codec that passes its probe', () => {
  assert.ok(native.available, native.available ? '' : native.reason);
});

/** Ends a decoder's worker thread or process from outside, as a crash would. */
async function crash(dec: VideoDecoder): Promise<void> {
  const inner = dec as unknown as { channel?: { rpc: { worker: { terminate(): Promise<number> } } }; proc?: { kill(): Promise<void> } };
  if (inner.channel) await inner.channel.rpc.worker.terminate();
  else await inner.proc!.kill();
}

for (const backend of BACKENDS) describe(`VP8 codec, ${backend.name} backend`, () => {
  const Vp8Encoder = { create: (opts: Vp8EncoderOptions) => openEncoder(backend, opts) };
  const Vp8Decoder = { create: () => openDecoder(backend) };
  const open: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(c: T): T => (open.push(c), c);
  after(() => Promise.all(open.map((c) => c.close())));

  it(`round-trips a moving portrait at 1.5 Mbps, 512², every frame above ${MIN_PSNR_DB} dB`, async () => {
    const enc = track(await Vp8Encoder.create({ width: 512, height: 512, fps: FPS, bitrate: 1_500_000 }));
    const dec = track(await Vp8Decoder.create());
    const frames = 30;
    let bytes = 0;
    for (let i = 0; i < frames; i++) {
      const frame = movingFrame(512, 512, i);
      const packet = await enc.encode(frame);
      assert.equal(packet.timestamp, frame.timestamp);
      assert.equal(packet.keyframe, i === 0, `frame ${i} keyframe flag`);
      assert.equal(isVp8Keyframe(packet.data), i === 0, `frame ${i} bitstream frame type`);
      bytes += packet.data.length;
      const picture = await dec.decode(packet.data, frame.timestamp);
      assert.ok(picture, `frame ${i} decoded to a picture`);
      assert.deepEqual([picture.width, picture.height, picture.timestamp], [512, 512, frame.timestamp]);
      const psnr = psnrI420(frame, picture);
      assert.ok(psnr > MIN_PSNR_DB, `frame ${i}: ${psnr.toFixed(1)} dB`);
    }
    assert.ok(enc.lastMs > 0 && dec.lastMs > 0, 'codec time is reported');
    const kbps = (bytes * 8 * FPS) / frames / 1000;
    assert.ok(kbps > 750 && kbps < 2250, `${kbps.toFixed(0)} kbps for a 1500 kbps target`);
  });

  it('spends fewer bits at a lower bitrate', async () => {
    const sizeAt = async (bitrate: number) => {
      const enc = track(await Vp8Encoder.create({ width: 512, height: 512, fps: FPS, bitrate }));
      let bytes = 0;
      // Inter frames only: the opening keyframe is large whatever the target.
      for (let i = 0; i < 20; i++) {
        const packet = await enc.encode(movingFrame(512, 512, i));
        if (i > 0) bytes += packet.data.length;
      }
      await enc.close();
      return bytes;
    };
    // 600 kbps is about the floor for this moving picture at 512² (measured: ~560 vs ~1700 kbps).
    const low = await sizeAt(600_000);
    const high = await sizeAt(3_000_000);
    assert.ok(high > 2 * low, `3 Mbps: ${high} bytes, 600 kbps: ${low} bytes`);
  });

  it('makes an intra frame on request, decodable on its own', async () => {
    const enc = track(await Vp8Encoder.create({ width: 512, height: 512 }));
    for (let i = 0; i < 5; i++) assert.equal((await enc.encode(movingFrame(512, 512, i))).keyframe, i === 0);
    const forced = movingFrame(512, 512, 5);
    const key = await enc.encode(forced, { keyframe: true });
    assert.ok(key.keyframe && isVp8Keyframe(key.data), 'requested frame is a keyframe');
    const next = await enc.encode(movingFrame(512, 512, 6));
    assert.ok(!next.keyframe && !isVp8Keyframe(next.data), 'the following frame is not');
    // A decoder that never saw the first keyframe decodes from the requested one.
    const dec = track(await Vp8Decoder.create());
    const picture = await dec.decode(key.data, forced.timestamp);
    assert.ok(picture && psnrI420(forced, picture) > MIN_PSNR_DB);
  });

  it('follows size changes mid-stream: 320×240 → 1280×720 → 320×240', async () => {
    const enc = track(await Vp8Encoder.create({ width: 320, height: 240 }));
    const dec = track(await Vp8Decoder.create());
    let i = 0;
    for (const [w, h] of [[320, 240], [1280, 720], [320, 240]]) {
      for (let k = 0; k < 3; k++, i++) {
        const frame = movingFrame(w, h, i);
        // The encoder re-opens itself for a frame of another size; the first frame after is a keyframe.
        const packet = await enc.encode(frame);
        assert.equal(packet.keyframe, k === 0, `${w}×${h} frame ${k}`);
        const picture = await dec.decode(packet.data, frame.timestamp);
        assert.ok(picture);
        assert.deepEqual([picture.width, picture.height], [w, h]);
        const psnr = psnrI420(frame, picture);
        assert.ok(psnr > MIN_PSNR_DB, `${w}×${h} frame ${k}: ${psnr.toFixed(1)} dB`);
      }
      assert.deepEqual([enc.settings.width, enc.settings.height], [w, h]);
    }
  });

  it('crops odd-sized pictures to even dimensions', async () => {
    const enc = track(await Vp8Encoder.create({ width: 320, height: 240 }));
    const frame = movingFrame(320, 240, 0);
    const key = (await enc.encode(frame)).data.slice();
    // Declare the stream 319×239: the same macroblock grid, so the same data decodes at that size.
    key[6] = 319 & 0xff;
    key[7] = (key[7] & 0xc0) | (319 >> 8);
    key[8] = 239 & 0xff;
    key[9] = (key[9] & 0xc0) | (239 >> 8);
    const dec = track(await Vp8Decoder.create());
    const picture = await dec.decode(key, 0);
    assert.ok(picture);
    assert.deepEqual([picture.width, picture.height, picture.data.length], [318, 238, 318 * 238 * 1.5]);
    const expected = allocI420(318, 238);
    for (let y = 0; y < 238; y++) expected.data.set(frame.data.subarray(y * 320, y * 320 + 318), y * 318);
    assert.ok(psnrI420(expected, picture) > MIN_PSNR_DB, 'top-left 318×238 of the source');
  });

  it('reports corrupt input, stays alive, and recovers at the next keyframe', async () => {
    const enc = track(await Vp8Encoder.create({ width: 320, height: 240 }));
    const dec = track(await Vp8Decoder.create());
    const frames = Array.from({ length: 6 }, (_, i) => movingFrame(320, 240, i));
    const p = await Promise.all(frames.map((f, i) => enc.encode(f, { keyframe: i === 3 })));
    assert.deepEqual(p.map((x) => x.keyframe), [true, false, false, true, false, false]);

    assert.ok(await dec.decode(p[0].data, 0));
    assert.ok(await dec.decode(p[1].data, 1));
    await rejectsWith(dec.decode(noise(2000, 7), 2), 'corrupt_frame', 'bad_request');
    // References may be damaged now: inter frames are refused until a keyframe.
    await rejectsWith(dec.decode(p[2].data, 3), 'awaiting_keyframe', 'bad_request');
    const recovered = await dec.decode(p[3].data, 4);
    assert.ok(recovered && psnrI420(frames[3], recovered) > MIN_PSNR_DB, 'keyframe after garbage decodes');
    assert.ok(await dec.decode(p[4].data, 5), 'and so does the stream after it');

    // Damage only libvpx can see: a well-formed keyframe header over a random body. VP8 has no
    // checksum, so libvpx rejects only some random bodies (about 70%); this seed is one of them.
    // A keyframe's decoding does not depend on earlier frames, so neither does the outcome.
    await rejectsWith(dec.decode(fakeKeyframe(320, 240, 1), 6), 'corrupt_frame');
    await rejectsWith(dec.decode(p[0].data.subarray(0, 40), 7), 'corrupt_frame');
    await rejectsWith(dec.decode(new Uint8Array(0), 8), 'corrupt_frame');
    // A size that would make libvpx allocate hundreds of megabytes is refused up front.
    await rejectsWith(dec.decode(fakeKeyframe(8000, 8000, 1), 8), 'bad_frame', 'bad_request');
    const again = await dec.decode(p[3].data, 9);
    assert.ok(again && psnrI420(frames[3], again) > MIN_PSNR_DB);
  });

  it('refuses inter frames before the first keyframe', async () => {
    const enc = track(await Vp8Encoder.create({ width: 320, height: 240 }));
    const dec = track(await Vp8Decoder.create());
    await enc.encode(movingFrame(320, 240, 0));
    const inter = await enc.encode(movingFrame(320, 240, 1));
    await rejectsWith(dec.decode(inter.data, 0), 'awaiting_keyframe');
  });

  it('rejects bad frames and settings with bad_request and keeps working', async () => {
    const enc = track(await Vp8Encoder.create({ width: 320, height: 240 }));
    await assert.rejects(Vp8Encoder.create({ width: 321, height: 240 }), (e: unknown) => e instanceof CodecError && e.kind === 'bad_settings' && e.code === 'bad_request');
    await assert.rejects(Vp8Encoder.create({ width: 320, height: 240, bitrate: -1 }), (e: unknown) => e instanceof CodecError && e.kind === 'bad_settings');
    await rejectsWith(enc.encode({ width: 321, height: 240, data: new Uint8Array(321 * 240 * 2), timestamp: 0 }), 'bad_frame', 'bad_request');
    await rejectsWith(enc.encode({ width: 320, height: 240, data: new Uint8Array(100), timestamp: 0 }), 'bad_frame', 'bad_request');
    await rejectsWith(enc.encode({ width: 32768, height: 16, data: new Uint8Array(32768 * 24), timestamp: 0 }), 'bad_frame');
    assert.ok((await enc.encode(movingFrame(320, 240, 0))).keyframe);
  });

  it('re-opens on reconfigure, starting again with a keyframe', async () => {
    const enc = track(await Vp8Encoder.create({ width: 320, height: 240, bitrate: 500_000 }));
    await enc.encode(movingFrame(320, 240, 0));
    assert.equal((await enc.encode(movingFrame(320, 240, 1))).keyframe, false);
    await enc.reconfigure({ width: 320, height: 240, bitrate: 800_000 });
    assert.equal(enc.settings.bitrate, 800_000);
    assert.equal((await enc.encode(movingFrame(320, 240, 2))).keyframe, true);
  });

  it('answers each frame before the next at every rate a session may ask for (maxFps 1..60)', async () => {
    for (const fps of [1, 3, 60]) {
      const enc = track(await Vp8Encoder.create({ width: 320, height: 240, fps, bitrate: 500_000 }));
      for (let i = 0; i < 3; i++) {
        // One frame at a time: the next is written only once this one came back.
        const packet = await Promise.race([enc.encode(movingFrame(320, 240, i)), new Promise<null>((r) => setTimeout(() => r(null), 5000).unref())]);
        assert.ok(packet, `${fps} fps: frame ${i} came back within 5 s`);
      }
      await enc.close();
    }
  });

  it('rejects pending calls when the worker or process dies', async () => {
    const enc = track(await Vp8Encoder.create({ width: 320, height: 240 }));
    const key = await enc.encode(movingFrame(320, 240, 0));
    const inter = await enc.encode(movingFrame(320, 240, 1));
    const dec = track(await Vp8Decoder.create());
    const pending = [0, 1].map((i) => dec.decode(key.data, i));
    await crash(dec);
    for (const p of pending) await rejectsWith(p, 'worker_failed', 'internal');
    if (backend.name === 'wasm') {
      // A dead worker stays dead: the frame loop replaces the decoder.
      await rejectsWith(dec.decode(key.data, 2), 'worker_failed');
    } else {
      // A dead process is replaced by the next keyframe; inter frames wait for it.
      await rejectsWith(dec.decode(inter.data, 2), 'awaiting_keyframe');
      assert.ok(await dec.decode(key.data, 3));
    }
  });

  it('rejects pending and later calls once closed; close is idempotent', async () => {
    const enc = await Vp8Encoder.create({ width: 320, height: 240 });
    const key = await enc.encode(movingFrame(320, 240, 0));
    const dec = await Vp8Decoder.create();
    const pendingDecodes = [0, 1, 2].map((i) => dec.decode(key.data, i));
    const pendingEncodes = [1, 2].map((i) => enc.encode(movingFrame(320, 240, i)));
    assert.equal(dec.pendingCount, 3);
    const closing = [dec.close(), enc.close()];
    for (const p of [...pendingDecodes, ...pendingEncodes]) await rejectsWith(p, 'closed', 'internal');
    await Promise.all(closing);
    await rejectsWith(dec.decode(key.data, 3), 'closed');
    await rejectsWith(enc.encode(movingFrame(320, 240, 3)), 'closed');
    await Promise.all([dec.close(), enc.close()]);
    assert.equal(dec.pendingCount, 0);
  });
});
