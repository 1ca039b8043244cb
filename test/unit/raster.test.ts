import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rasterTriangle, triangleAffine, warpTriangle, type Plane } from '../../server/renderers/mesh-warp/raster.ts';

/** A source with detail everywhere, so that any misplaced sample shows. */
function source(w: number, h: number): Plane {
  const data = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = (x * 37 + y * 91 + ((x * y) % 13) * 7) & 255;
  return { data, width: w, height: h };
}

/** The warp's definition, pixel by pixel: the affine map at the pixel centre, clamped bilinear sampling. */
function reference(src: Plane, coef: Float64Array, x: number, y: number): number {
  const sx = coef[0] * (x + 0.5) + coef[1] * (y + 0.5) + coef[2] - 0.5;
  const sy = coef[3] * (x + 0.5) + coef[4] * (y + 0.5) + coef[5] - 0.5;
  const X = Math.min(Math.max(sx, 0), src.width - 1);
  const Y = Math.min(Math.max(sy, 0), src.height - 1);
  const ix = Math.min(Math.floor(X), src.width - 2);
  const iy = Math.min(Math.floor(Y), src.height - 2);
  const at = (i: number, j: number): number => src.data[j * src.width + i];
  const top = at(ix, iy) + (at(ix + 1, iy) - at(ix, iy)) * (X - ix);
  const bot = at(ix, iy + 1) + (at(ix + 1, iy + 1) - at(ix, iy + 1)) * (X - ix);
  return Math.round(top + (bot - top) * (Y - iy));
}

/** Warps one triangle and compares every covered pixel with the reference; returns [covered, exact, worst difference]. */
function check(src: Plane, d: number[], s: number[]): [number, number, number] {
  const dst: Plane = { data: new Uint8Array(src.width * src.height), width: src.width, height: src.height };
  const coef = new Float64Array(6);
  assert.ok(triangleAffine(d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1], s[2], s[3], s[4], s[5], coef, 0));
  warpTriangle(src, dst, coef, 0, d[0], d[1], d[2], d[3], d[4], d[5]);
  let covered = 0;
  let exact = 0;
  let worst = 0;
  rasterTriangle(d[0], d[1], d[2], d[3], d[4], d[5], dst.width, dst.height, (y, xa, xb) => {
    for (let x = xa; x < xb; x++) {
      const diff = Math.abs(dst.data[y * dst.width + x] - reference(src, coef, x, y));
      covered++;
      if (diff === 0) exact++;
      worst = Math.max(worst, diff);
    }
  });
  return [covered, exact, worst];
}

test('a triangle mapped onto itself is copied byte for byte', () => {
  const src = source(64, 48);
  const dst: Plane = { data: new Uint8Array(64 * 48), width: 64, height: 48 };
  const coef = new Float64Array(6);
  const tri = [0, 0, 64, 0, 0, 48];
  assert.ok(triangleAffine(tri[0], tri[1], tri[2], tri[3], tri[4], tri[5], tri[0], tri[1], tri[2], tri[3], tri[4], tri[5], coef, 0));
  warpTriangle(src, dst, coef, 0, tri[0], tri[1], tri[2], tri[3], tri[4], tri[5]);
  let n = 0;
  rasterTriangle(tri[0], tri[1], tri[2], tri[3], tri[4], tri[5], 64, 48, (y, xa, xb) => {
    for (let x = xa; x < xb; x++, n++) assert.equal(dst.data[y * 64 + x], src.data[y * 64 + x], `pixel ${x},${y}`);
  });
  assert.ok(n > 1400, `only ${n} pixels covered`);
});

test('samples beyond the source take its edge (the clamped path)', () => {
  const src = source(32, 32);
  const dst: Plane = { data: new Uint8Array(32 * 32), width: 32, height: 32 };
  const coef = new Float64Array(6);
  // the destination's left half reads x from −40 to −8: every sample is left of the source
  assert.ok(triangleAffine(0, 0, 16, 0, 0, 32, -40, 0, -8, 0, -40, 32, coef, 0));
  warpTriangle(src, dst, coef, 0, 0, 0, 16, 0, 0, 32);
  for (const y of [2, 10, 20]) assert.equal(dst.data[y * 32], reference(src, coef, 0, y));
  for (const y of [2, 10, 20]) assert.equal(dst.data[y * 32 + 5], src.data[y * 32], `pixel 5,${y} shows the source's left edge`);
});

test('inside, across and outside the source, the warp follows its per-pixel definition', () => {
  const src = source(96, 80);
  // a fixed pseudo-random sequence, so that a failure repeats
  let seed = 12345;
  const rnd = (lo: number, hi: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return lo + ((hi - lo) * seed) / 0x7fffffff;
  };
  let covered = 0;
  let exact = 0;
  for (let t = 0; t < 300; t++) {
    // destination inside the frame; source anywhere from well inside to partly outside
    const d = [rnd(0, 96), rnd(0, 80), rnd(0, 96), rnd(0, 80), rnd(0, 96), rnd(0, 80)];
    const reach = t % 3 === 0 ? 20 : 0;
    const s = [rnd(-reach, 96 + reach), rnd(-reach, 80 + reach), rnd(-reach, 96 + reach), rnd(-reach, 80 + reach), rnd(-reach, 96 + reach), rnd(-reach, 80 + reach)];
    const det = (d[2] - d[0]) * (d[5] - d[1]) - (d[3] - d[1]) * (d[4] - d[0]);
    if (Math.abs(det) < 1) continue;
    const [c, e, worst] = check(src, d, s);
    covered += c;
    exact += e;
    // the warp steps the source position along a row; the reference computes it afresh, so a
    // sample that lands on a rounding boundary may come out one level apart, never more
    assert.ok(worst <= 1, `triangle ${t}: a pixel ${worst} levels from the reference`);
  }
  assert.ok(covered > 100_000, `only ${covered} pixels covered`);
  assert.ok(exact / covered > 0.999, `only ${((100 * exact) / covered).toFixed(3)} % of the pixels exact`);
});

test('a second pair of planes warped in the same pass comes out as if warped alone', () => {
  const u = source(48, 40);
  const v: Plane = { data: u.data.map((b, i) => (b * 3 + i) & 255), width: 48, height: 40 };
  const alone = [new Uint8Array(48 * 40), new Uint8Array(48 * 40)];
  const paired = [new Uint8Array(48 * 40), new Uint8Array(48 * 40)];
  const plane = (data: Uint8Array): Plane => ({ data, width: 48, height: 40 });
  const coef = new Float64Array(6);
  const d = [3, 2, 47, 9, 12, 39];
  assert.ok(triangleAffine(d[0], d[1], d[2], d[3], d[4], d[5], -6, 4, 44, 1, 10, 45, coef, 0));
  warpTriangle(u, plane(alone[0]), coef, 0, d[0], d[1], d[2], d[3], d[4], d[5]);
  warpTriangle(v, plane(alone[1]), coef, 0, d[0], d[1], d[2], d[3], d[4], d[5]);
  warpTriangle(u, plane(paired[0]), coef, 0, d[0], d[1], d[2], d[3], d[4], d[5], v, plane(paired[1]));
  assert.ok(alone[1].some((b) => b !== 0), 'the triangle covers pixels');
  assert.deepEqual(paired[0], alone[0]);
  assert.deepEqual(paired[1], alone[1]);
  assert.notDeepEqual(paired[1], paired[0], 'the second plane was sampled from its own source');
});
