import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { XplError } from '../../server/errors.ts';
import { containRect, coverRect, cropScaleI420, i420ToRgba, psnrI420, rgbaToI420, scaleI420 } from '../../server/media/convert.ts';
import { allocI420, planes, type I420Frame, type RgbaImage } from '../../server/media/frame.ts';

function rgba(width: number, height: number): RgbaImage {
  return { width, height, data: new Uint8Array(width * height * 4) };
}

function solid(width: number, height: number, r: number, g: number, b: number): RgbaImage {
  const img = rgba(width, height);
  for (let i = 0; i < width * height; i++) img.data.set([r, g, b, 255], i * 4);
  return img;
}

/** Largest absolute per-channel difference (RGB only) and the mean one. */
function rgbError(a: RgbaImage, b: RgbaImage): { max: number; mean: number } {
  let max = 0, sum = 0, n = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      const d = Math.abs(a.data[i + c] - b.data[i + c]);
      max = Math.max(max, d);
      sum += d;
      n++;
    }
  }
  return { max, mean: sum / n };
}

/** An I420 frame whose luma is f(x, y) and whose chroma is constant. */
function lumaFrame(width: number, height: number, f: (x: number, y: number) => number, u = 90, v = 200): I420Frame {
  const frame = allocI420(width, height);
  const p = planes(frame);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) p.y[y * width + x] = f(x, y);
  p.u.fill(u);
  p.v.fill(v);
  return frame;
}

function maxDeviation(actual: Uint8Array, width: number, height: number, expected: (x: number, y: number) => number): number {
  let worst = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) worst = Math.max(worst, Math.abs(actual[y * width + x] - expected(x, y)));
  }
  return worst;
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

describe('colour conversion (BT.601 limited range)', () => {
  it('maps reference colours to their BT.601 Y′CbCr values', () => {
    // The exact formula, rounded (tables built from 8-bit coefficients give 82 for red's luma; 81.48 is exact).
    const cases: [string, [number, number, number], [number, number, number]][] = [
      ['black', [0, 0, 0], [16, 128, 128]],
      ['white', [255, 255, 255], [235, 128, 128]],
      ['red', [255, 0, 0], [81, 90, 240]],
      ['green', [0, 255, 0], [145, 54, 34]],
      ['blue', [0, 0, 255], [41, 240, 110]],
      ['mid grey', [128, 128, 128], [126, 128, 128]],
    ];
    for (const [name, [r, g, b], [y, u, v]] of cases) {
      const f = allocI420(4, 2);
      rgbaToI420(solid(4, 2, r, g, b), f);
      const p = planes(f);
      assert.deepEqual([p.y[0], p.u[0], p.v[0]], [y, u, v], name);
      assert.ok(p.y.every((s) => s === y) && p.u.every((s) => s === u) && p.v.every((s) => s === v), `${name}: uniform planes`);
    }
  });

  it('maps limited-range black and white back to full-range 0 and 255', () => {
    const out = rgba(2, 2);
    i420ToRgba(lumaFrame(2, 2, () => 16, 128, 128), out);
    assert.deepEqual([...out.data.subarray(0, 4)], [0, 0, 0, 255]);
    i420ToRgba(lumaFrame(2, 2, () => 235, 128, 128), out);
    assert.deepEqual([...out.data.subarray(0, 4)], [255, 255, 255, 255]);
    // Values outside the limited range saturate instead of wrapping around.
    i420ToRgba(lumaFrame(2, 2, () => 255, 128, 128), out);
    assert.deepEqual([...out.data.subarray(0, 3)], [255, 255, 255]);
    i420ToRgba(lumaFrame(2, 2, () => 0, 128, 128), out);
    assert.deepEqual([...out.data.subarray(0, 3)], [0, 0, 0]);
    i420ToRgba(lumaFrame(2, 2, () => 235, 255, 255), out);
    assert.deepEqual([...out.data.subarray(0, 3)], [255, 102, 255]); // R and B would be 457 and 511
  });

  it('round-trips colours that are uniform per 2×2 block within ±3 levels', () => {
    // Chroma subsampling is lossless for such images, so only rounding remains.
    const img = rgba(64, 64);
    for (let by = 0; by < 32; by++) {
      for (let bx = 0; bx < 32; bx++) {
        const c = [(bx * 8 + 3) % 256, (by * 8 + 5) % 256, ((bx + by) * 4) % 256, 255];
        for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) img.data.set(c, ((by * 2 + dy) * 64 + bx * 2 + dx) * 4);
      }
    }
    const f = allocI420(64, 64);
    const back = rgba(64, 64);
    rgbaToI420(img, f);
    i420ToRgba(f, back);
    const err = rgbError(img, back);
    assert.ok(err.max <= 3, `max error ${err.max}`);
    assert.ok(back.data.every((v, i) => i % 4 !== 3 || v === 255), 'alpha is opaque');
  });

  it('round-trips a photograph with a small mean error', async () => {
    const path = fileURLToPath(new URL('../fixtures/astronaut.png', import.meta.url));
    const { data, info } = await sharp(path).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const img: RgbaImage = { width: info.width, height: info.height, data };
    const f = allocI420(info.width, info.height);
    const back = rgba(info.width, info.height);
    rgbaToI420(img, f);
    i420ToRgba(f, back);
    const err = rgbError(img, back);
    // What remains is mostly chroma subsampling at colour edges.
    assert.ok(err.mean < 3, `mean error ${err.mean.toFixed(2)}`);
  });

  it('drops the last column and row of an odd-sized RGBA image', () => {
    const img = solid(5, 3, 255, 0, 0);
    img.data.set([0, 0, 255, 255], (2 * 5 + 4) * 4); // bottom-right pixel, outside the 4×2 result
    const f = allocI420(4, 2);
    rgbaToI420(img, f);
    const p = planes(f);
    assert.ok(p.y.every((s) => s === 81) && p.v.every((s) => s === 240), 'all red');
    assert.throws(() => rgbaToI420(img, allocI420(6, 4)), (e: unknown) => e instanceof XplError && e.code === 'bad_request');
  });

  it('rejects mismatched sizes', () => {
    assert.throws(() => i420ToRgba(allocI420(4, 4), rgba(4, 2)), (e: unknown) => e instanceof XplError && e.code === 'bad_request');
    assert.throws(() => rgbaToI420(rgba(4, 4), { width: 3, height: 4, data: new Uint8Array(64), timestamp: 0 }), XplError);
  });
});

describe('scaling', () => {
  const ramp = (x: number) => x; // luma = column index, 0..255

  it('upscales a gradient 2× bilinearly', () => {
    const src = lumaFrame(256, 8, ramp);
    const dst = allocI420(512, 16);
    scaleI420(src, dst);
    // Destination pixel centre x + 0.5 maps to source position (x + 0.5) / 2 - 0.5.
    const dev = maxDeviation(planes(dst).y, 512, 16, (x) => clamp((x + 0.5) / 2 - 0.5, 0, 255));
    assert.ok(dev <= 1, `deviation ${dev}`);
    assert.ok(planes(dst).u.every((v) => v === 90) && planes(dst).v.every((v) => v === 200), 'flat chroma stays flat');
  });

  it('downscales a gradient 2× bilinearly (pairs are averaged)', () => {
    const src = lumaFrame(256, 8, ramp);
    const dst = allocI420(128, 4);
    scaleI420(src, dst);
    const dev = maxDeviation(planes(dst).y, 128, 4, (x) => 2 * x + 0.5);
    assert.ok(dev <= 1, `deviation ${dev}`);
  });

  it('downscales a gradient 4× by area averaging', () => {
    const src = lumaFrame(256, 16, ramp);
    const dst = allocI420(64, 4);
    scaleI420(src, dst);
    const dev = maxDeviation(planes(dst).y, 64, 4, (x) => 4 * x + 1.5);
    assert.ok(dev <= 1, `deviation ${dev}`);
  });

  it('averages away a pixel-level checkerboard when downscaling 4×, instead of aliasing', () => {
    const src = lumaFrame(64, 64, (x, y) => ((x + y) % 2 ? 200 : 40));
    const dst = allocI420(16, 16);
    scaleI420(src, dst);
    assert.equal(maxDeviation(planes(dst).y, 16, 16, () => 120), 0);
  });

  it('scales vertically as it does horizontally', () => {
    const src = lumaFrame(8, 256, (_x, y) => y);
    const dst = allocI420(16, 512);
    scaleI420(src, dst);
    const dev = maxDeviation(planes(dst).y, 16, 512, (_x, y) => clamp((y + 0.5) / 2 - 0.5, 0, 255));
    assert.ok(dev <= 1, `deviation ${dev}`);
  });

  it('copies exactly when the sizes are equal', () => {
    const src = lumaFrame(32, 16, (x, y) => (x * 7 + y * 13) & 255);
    const dst = allocI420(32, 16);
    scaleI420(src, dst);
    assert.deepEqual(dst.data, src.data);
  });
});

describe('crop geometry', () => {
  it("computes the centred 'cover' window", () => {
    assert.deepEqual(coverRect(1280, 720, 512, 512), { x: 280, y: 0, width: 720, height: 720 });
    assert.deepEqual(coverRect(480, 640, 512, 512), { x: 0, y: 80, width: 480, height: 480 });
    assert.deepEqual(coverRect(512, 512, 1280, 720), { x: 0, y: 112, width: 512, height: 288 });
    assert.deepEqual(coverRect(640, 480, 640, 480), { x: 0, y: 0, width: 640, height: 480 });
  });

  it("computes the centred 'contain' area", () => {
    assert.deepEqual(containRect(1280, 720, 512, 512), { x: 0, y: 112, width: 512, height: 288 });
    assert.deepEqual(containRect(480, 640, 512, 512), { x: 64, y: 0, width: 384, height: 512 });
  });

  it('keeps windows on even coordinates for any size', () => {
    for (const [sw, sh, dw, dh] of [[1278, 722, 500, 498], [642, 480, 512, 288], [322, 242, 160, 120], [1920, 1080, 514, 386]]) {
      for (const r of [coverRect(sw, sh, dw, dh), containRect(sw, sh, dw, dh)]) {
        assert.ok([r.x, r.y, r.width, r.height].every((v) => v % 2 === 0), JSON.stringify(r));
      }
      const c = coverRect(sw, sh, dw, dh);
      assert.ok(c.x + c.width <= sw && c.y + c.height <= sh, 'cover window inside the source');
    }
  });

  it("'cover' keeps only the centre of a wide frame", () => {
    // Three vertical bands; the centre one is exactly the 720×720 cover window.
    const src = lumaFrame(1280, 720, (x) => (x < 280 ? 50 : x < 1000 ? 200 : 90), 100, 150);
    const dst = allocI420(512, 512);
    cropScaleI420(src, dst, 'cover');
    const p = planes(dst);
    assert.equal(maxDeviation(p.y, 512, 512, () => 200), 0);
    assert.ok(p.u.every((v) => v === 100) && p.v.every((v) => v === 150));
  });

  it("'contain' letterboxes with black bars", () => {
    const src = lumaFrame(1280, 720, () => 180, 60, 70);
    const dst = allocI420(512, 512);
    cropScaleI420(src, dst, 'contain');
    const p = planes(dst);
    const expected = (_x: number, y: number) => (y >= 112 && y < 400 ? 180 : 16);
    assert.equal(maxDeviation(p.y, 512, 512, expected), 0);
    assert.equal(maxDeviation(p.u, 256, 256, (_x, y) => (y >= 56 && y < 200 ? 60 : 128)), 0);
  });

  it('rejects an unknown mode', () => {
    assert.throws(() => cropScaleI420(allocI420(4, 4), allocI420(2, 2), 'fill' as 'cover'), XplError);
  });
});

describe('psnrI420', () => {
  it('is infinite for identical frames and 48.13 dB for an error of one level everywhere', () => {
    const a = lumaFrame(16, 16, (x, y) => (x * 16 + y) & 255);
    const b = lumaFrame(16, 16, (x, y) => ((x * 16 + y) & 255) ^ 1);
    assert.equal(psnrI420(a, a), Infinity);
    assert.ok(Math.abs(psnrI420(a, b) - 10 * Math.log10(255 * 255)) < 1e-9);
  });

  it('ignores chroma and rejects different sizes', () => {
    const a = lumaFrame(8, 8, () => 100, 10, 10);
    const b = lumaFrame(8, 8, () => 100, 250, 250);
    assert.equal(psnrI420(a, b), Infinity);
    assert.throws(() => psnrI420(a, allocI420(8, 4)), XplError);
  });
});

describe('cover fit around a focus point', () => {
  it('centres the window on the focus as far as the source allows', () => {
    // 512×600 portrait into 16:9: a 512×288 window.
    assert.deepEqual(coverRect(512, 600, 1280, 720), { x: 0, y: 156, width: 512, height: 288 });
    assert.deepEqual(coverRect(512, 600, 1280, 720, { x: 256, y: 200 }), { x: 0, y: 56, width: 512, height: 288 });
    assert.deepEqual(coverRect(512, 600, 1280, 720, { x: 256, y: 10 }), { x: 0, y: 0, width: 512, height: 288 }, 'clamped at the top');
    assert.deepEqual(coverRect(512, 600, 1280, 720, { x: 256, y: 599 }), { x: 0, y: 312, width: 512, height: 288 }, 'clamped at the bottom');
    const r = coverRect(640, 480, 512, 512, { x: 101, y: 240 });
    assert.equal(r.x % 2, 0, 'even-aligned');
    assert.deepEqual(r, { x: 0, y: 0, width: 480, height: 480 });
  });
});
