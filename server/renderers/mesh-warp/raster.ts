/**
 * Piecewise-affine warping of a planar 8-bit image along a triangle mesh: per-triangle affine
 * (destination → source) coefficients, scanline rasterisation with a consistent fill rule (pixel
 * centres, left-inclusive / right-exclusive, shared edges computed identically so neighbouring
 * triangles neither overlap nor leave gaps), bilinear sampling. No allocation per pixel or frame.
 */

export interface Plane {
  data: Uint8Array;
  width: number;
  height: number;
}

/** x where the edge (x0,y0)-(x1,y1) crosses row centre yc; edge endpoints ordered by y for bit-identical results. */
function edgeX(x0: number, y0: number, x1: number, y1: number, yc: number): number {
  if (y0 > y1 || (y0 === y1 && x0 > x1)) {
    const tx = x0; x0 = x1; x1 = tx;
    const ty = y0; y0 = y1; y1 = ty;
  }
  return y1 === y0 ? x0 : x0 + ((yc - y0) * (x1 - x0)) / (y1 - y0);
}

/**
 * Rasterises triangle (dst coords, pixel units of `dst`) and calls the span function for each
 * covered row: pixels [xa, xb) of row y.
 */
export function rasterTriangle(
  x0: number, y0: number, x1: number, y1: number, x2: number, y2: number,
  width: number, height: number,
  span: (y: number, xa: number, xb: number) => void,
): void {
  const minY = Math.min(y0, y1, y2);
  const maxY = Math.max(y0, y1, y2);
  let ys = Math.ceil(minY - 0.5);
  let ye = Math.ceil(maxY - 0.5); // exclusive
  if (ys < 0) ys = 0;
  if (ye > height) ye = height;
  for (let y = ys; y < ye; y++) {
    const yc = y + 0.5;
    // the two edges spanning yc
    let xl = Infinity;
    let xr = -Infinity;
    if ((y0 <= yc) !== (y1 <= yc)) { const x = edgeX(x0, y0, x1, y1, yc); if (x < xl) xl = x; if (x > xr) xr = x; }
    if ((y1 <= yc) !== (y2 <= yc)) { const x = edgeX(x1, y1, x2, y2, yc); if (x < xl) xl = x; if (x > xr) xr = x; }
    if ((y2 <= yc) !== (y0 <= yc)) { const x = edgeX(x2, y2, x0, y0, yc); if (x < xl) xl = x; if (x > xr) xr = x; }
    if (!(xr > xl)) continue;
    let xa = Math.ceil(xl - 0.5);
    let xb = Math.ceil(xr - 0.5);
    if (xa < 0) xa = 0;
    if (xb > width) xb = width;
    if (xb > xa) span(y, xa, xb);
  }
}

/**
 * Affine map destination → source for a triangle: returns false when degenerate.
 * coef = [a, b, c, d, e, f] with sx = a·x + b·y + c, sy = d·x + e·y + f (x, y at pixel centres).
 */
export function triangleAffine(
  dx0: number, dy0: number, dx1: number, dy1: number, dx2: number, dy2: number,
  sx0: number, sy0: number, sx1: number, sy1: number, sx2: number, sy2: number,
  coef: Float64Array, o: number,
): boolean {
  const ux = dx1 - dx0, uy = dy1 - dy0, vx = dx2 - dx0, vy = dy2 - dy0;
  const det = ux * vy - uy * vx;
  if (Math.abs(det) < 1e-9) return false;
  const i00 = vy / det, i01 = -vx / det, i10 = -uy / det, i11 = ux / det;
  const su = sx1 - sx0, sv = sx2 - sx0, tu = sy1 - sy0, tv = sy2 - sy0;
  const a = su * i00 + sv * i10;
  const b = su * i01 + sv * i11;
  const d = tu * i00 + tv * i10;
  const e = tu * i01 + tv * i11;
  coef[o] = a;
  coef[o + 1] = b;
  coef[o + 2] = sx0 - a * dx0 - b * dy0;
  coef[o + 3] = d;
  coef[o + 4] = e;
  coef[o + 5] = sy0 - d * dx0 - e * dy0;
  return true;
}

/** How far inside the source's last sample a span must stay for the unclamped loop. */
const INSIDE = 1e-3;

/**
 * Samples one span of `sd` (width `sw`) into `dd` from p on: n pixels, starting at source sample
 * position (sx, sy) and stepping (a, d) per pixel, bilinear, clamped to the source's edges.
 */
function warpSpan(sd: Uint8Array, sw: number, sh: number, dd: Uint8Array, p: number, n: number, sx: number, sy: number, a: number, d: number): void {
  const swm1 = sw - 1;
  const shm1 = sh - 1;
  // The map is affine along the span, so its source ends bound every sample. Most spans lie
  // well inside the source and need no clamping: that loop is the warp's hot path. The margin
  // covers the rounding of the stepped coordinates, so both loops give the same bytes.
  const ex = sx + a * (n - 1);
  const ey = sy + d * (n - 1);
  const end = p + n;
  if ((sx < ex ? sx : ex) >= INSIDE && (sx > ex ? sx : ex) <= swm1 - INSIDE && (sy < ey ? sy : ey) >= INSIDE && (sy > ey ? sy : ey) <= shm1 - INSIDE) {
    for (; p < end; p++, sx += a, sy += d) {
      const ix = sx | 0;
      const iy = sy | 0;
      const fx = sx - ix;
      const q = iy * sw + ix;
      const s0 = sd[q];
      const s2 = sd[q + sw];
      const top = s0 + (sd[q + 1] - s0) * fx;
      const bot = s2 + (sd[q + sw + 1] - s2) * fx;
      dd[p] = (top + (bot - top) * (sy - iy) + 0.5) | 0;
    }
    return;
  }
  for (; p < end; p++, sx += a, sy += d) {
    const X = sx < 0 ? 0 : sx > swm1 ? swm1 : sx;
    const Y = sy < 0 ? 0 : sy > shm1 ? shm1 : sy;
    let ix = X | 0;
    let iy = Y | 0;
    if (ix >= swm1) ix = swm1 - 1;
    if (iy >= shm1) iy = shm1 - 1;
    const fx = X - ix;
    const fy = Y - iy;
    const q = iy * sw + ix;
    const top = sd[q] + (sd[q + 1] - sd[q]) * fx;
    const bot = sd[q + sw] + (sd[q + sw + 1] - sd[q + sw]) * fx;
    dd[p] = (top + (bot - top) * fy + 0.5) | 0;
  }
}

/**
 * Warps one triangle of `src` into `dst` (same-format planes) with coefficients coef[o..o+5].
 * A second pair of planes of the same sizes (the other chroma plane) is warped in the same pass:
 * same spans, same sample positions.
 */
export function warpTriangle(
  src: Plane, dst: Plane, coef: Float64Array, o: number,
  x0: number, y0: number, x1: number, y1: number, x2: number, y2: number,
  src2?: Plane, dst2?: Plane,
): void {
  const a = coef[o], b = coef[o + 1], c = coef[o + 2], d = coef[o + 3], e = coef[o + 4], f = coef[o + 5];
  const { data: sd, width: sw, height: sh } = src;
  const dd = dst.data;
  const dw = dst.width;
  const sd2 = src2?.data;
  const dd2 = dst2?.data;
  rasterTriangle(x0, y0, x1, y1, x2, y2, dst.width, dst.height, (y, xa, xb) => {
    const yc = y + 0.5;
    // source continuous coords minus 0.5 → sample-space
    const sx = a * (xa + 0.5) + b * yc + c - 0.5;
    const sy = d * (xa + 0.5) + e * yc + f - 0.5;
    const p = y * dw + xa;
    warpSpan(sd, sw, sh, dd, p, xb - xa, sx, sy, a, d);
    if (sd2 && dd2) warpSpan(sd2, sw, sh, dd2, p, xb - xa, sx, sy, a, d);
  });
}

/** Fills one triangle with a shading function value(x, y) (pixel centres), clamped 0..255. */
export function shadeTriangle(
  dst: Plane,
  x0: number, y0: number, x1: number, y1: number, x2: number, y2: number,
  shade: (x: number, y: number) => number,
): void {
  const dd = dst.data;
  const dw = dst.width;
  rasterTriangle(x0, y0, x1, y1, x2, y2, dst.width, dst.height, (y, xa, xb) => {
    let p = y * dw + xa;
    for (let x = xa; x < xb; x++, p++) {
      const v = shade(x + 0.5, y + 0.5);
      dd[p] = v < 0 ? 0 : v > 255 ? 255 : v | 0;
    }
  });
}
