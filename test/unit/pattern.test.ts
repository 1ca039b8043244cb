import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allocI420, type I420Frame } from '../../server/media/frame.ts';
import { drawPattern, readPatternId, encodeWord, decodeWord, ID_MODULO } from '../support/pattern.ts';
import { coverScale, lumaMad } from '../support/scale.ts';
import { cropScaleI420 } from '../../server/media/convert.ts';

const SIZES: Array<[number, number]> = [[640, 480], [1280, 720], [512, 512], [480, 640]];
const IDS = [0, 1, 2, 7, 100, 1234, 2047, 4094, 4095];

function pattern(w: number, h: number, id: number): I420Frame {
  const f = allocI420(w, h);
  drawPattern(f, id);
  return f;
}

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function addNoise(f: I420Frame, amplitude: number, seed = 1): void {
  const r = rng(seed);
  for (let i = 0; i < f.data.length; i++) {
    f.data[i] = Math.max(0, Math.min(255, Math.round(f.data[i] + (r() * 2 - 1) * amplitude)));
  }
}

/** 5×5 box blur of the luma plane, a stand-in for codec smoothing. */
function blurLuma(f: I420Frame, radius = 2): void {
  const { width: w, height: h } = f;
  const src = f.data.slice(0, w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let sum = 0;
      let n = 0;
      for (let dy = -radius; dy <= radius; dy++) {
        const yy = Math.min(h - 1, Math.max(0, y + dy));
        for (let dx = -radius; dx <= radius; dx++) {
          const xx = Math.min(w - 1, Math.max(0, x + dx));
          sum += src[yy * w + xx];
          n++;
        }
      }
      f.data[y * w + x] = Math.round(sum / n);
    }
  }
}

test('every id round-trips through its word, and single-bit errors are caught', () => {
  for (let id = 0; id < ID_MODULO; id++) {
    const word = encodeWord(id);
    assert.equal(decodeWord(word), id);
    for (let b = 0; b < 16; b++) assert.equal(decodeWord(word ^ (1 << b)), null, `id ${id} bit ${b}`);
  }
  assert.equal(decodeWord(0x0000), null, 'all-black grid must not be a valid word');
  assert.equal(decodeWord(0xffff), null, 'all-white grid must not be a valid word');
  assert.equal(encodeWord(ID_MODULO + 5), encodeWord(5), 'ids wrap modulo 4096');
});

test('pattern is read back at its own size', () => {
  for (const [w, h] of SIZES) {
    for (const id of IDS) assert.equal(readPatternId(pattern(w, h, id)), id, `${w}x${h} id ${id}`);
  }
});

test('pattern survives a cover crop and scale to 512×512 (and to other sizes)', () => {
  for (const [w, h] of SIZES) {
    for (const id of [3, 1234, 4095]) {
      const out = coverScale(pattern(w, h, id), 512, 512);
      assert.equal(readPatternId(out), id, `${w}x${h} → 512² id ${id}`);
    }
  }
  const small = coverScale(pattern(1280, 720, 77), 128, 128);
  assert.equal(readPatternId(small), 77, 'down to 128²');
  const up = coverScale(pattern(640, 480, 78), 1024, 1024);
  assert.equal(readPatternId(up), 78, 'up to 1024²');
});

test("pattern survives the server's cropScaleI420 'cover', and matches the reference scaler", () => {
  for (const [w, h] of SIZES) {
    const src = pattern(w, h, 3210);
    const out = allocI420(512, 512);
    cropScaleI420(src, out, 'cover');
    assert.equal(readPatternId(out), 3210, `${w}x${h}`);
    const mad = lumaMad(out, coverScale(src, 512, 512));
    assert.ok(mad < 4, `server scaler vs reference scaler MAD ${mad.toFixed(2)} at ${w}x${h}`);
  }
  // 'contain' letterboxes a wide source: the grid shrinks and moves off the cells, so no read.
  const boxed = allocI420(512, 512);
  cropScaleI420(pattern(1280, 720, 3210), boxed, 'contain');
  assert.notEqual(readPatternId(boxed), 3210);
});

test('pattern survives noise, blur and reduced contrast', () => {
  for (const [w, h] of SIZES) {
    const f = coverScale(pattern(w, h, 2345), 512, 512);
    blurLuma(f);
    addNoise(f, 50, w);
    assert.equal(readPatternId(f), 2345, `${w}x${h} noisy`);
  }
  const f = pattern(640, 480, 999);
  for (let i = 0; i < 640 * 480; i++) f.data[i] = 90 + Math.round((f.data[i] - 16) * 0.4); // range ~90..178
  assert.equal(readPatternId(f), 999, 'low contrast');
});

test('frames without a code read as null', () => {
  const flat = allocI420(512, 512);
  flat.data.fill(128);
  assert.equal(readPatternId(flat), null, 'flat grey');
  flat.data.fill(0);
  assert.equal(readPatternId(flat), null, 'black');
  flat.data.fill(255);
  assert.equal(readPatternId(flat), null, 'white');
  let nulls = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const noise = allocI420(512, 512);
    noise.data.fill(128);
    addNoise(noise, 127, seed);
    if (readPatternId(noise) === null) nulls++;
  }
  assert.equal(nulls, 20, 'random noise never decodes');
  // The wrong crop ('contain'-style letterboxing / stretch) puts the grid elsewhere.
  const stretched = allocI420(512, 512);
  const src = pattern(1280, 720, 1234);
  // Nearest-neighbour stretch of the whole frame (no crop): the grid is squeezed horizontally.
  for (let y = 0; y < 512; y++) {
    for (let x = 0; x < 512; x++) stretched.data[y * 512 + x] = src.data[Math.floor((y * 720) / 512) * 1280 + Math.floor((x * 1280) / 512)];
  }
  assert.notEqual(readPatternId(stretched), 1234, 'a stretched (uncropped) frame does not read as the sent id');
});

test('moving content tells neighbouring frames apart', () => {
  const a = coverScale(pattern(640, 480, 100), 512, 512);
  const same = coverScale(pattern(640, 480, 100), 512, 512);
  const next = coverScale(pattern(640, 480, 105), 512, 512);
  assert.equal(lumaMad(a, same), 0);
  assert.ok(lumaMad(a, next) > 15, `frames 5 apart differ clearly (MAD ${lumaMad(a, next).toFixed(1)})`);
});

test('drawing a 1280×720 frame is cheap enough for 30 fps', () => {
  const f = allocI420(1280, 720);
  const t0 = performance.now();
  for (let i = 0; i < 30; i++) drawPattern(f, i);
  const perFrame = (performance.now() - t0) / 30;
  assert.ok(perFrame < 20, `drawPattern took ${perFrame.toFixed(1)} ms per 720p frame`);
});
