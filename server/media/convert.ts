/**
 * Pixel operations on I420 and RGBA frames: colour conversion, scaling, cropping, PSNR.
 *
 * All of them write into a destination the caller owns, so the frame loop can reuse its buffers
 * and nothing is allocated per pixel or per frame (apart from small cached index tables). Colour
 * is BT.601 limited range ("studio swing"), the matrix browsers assume for untagged VP8, with
 * 16-bit fixed-point coefficients so results are exact integers on every platform.
 */
import { XplError } from '../errors.ts';
import { assertI420, planes, type I420Frame, type RgbaImage } from './frame.ts';

export type FitMode = 'cover' | 'contain';

/** An axis-aligned rectangle in luma pixels. */
export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

// RGB → Y'CbCr, BT.601, limited range, scaled by 2^16. Each chroma row sums to zero so that
// greys map to exactly 128.
const YR = 16829, YG = 33039, YB = 6416;
const UR = -9714, UG = -19070, UB = 28784;
const VR = 28784, VG = -24103, VB = -4681;
/** 16 in 16.16 fixed point, plus one half for rounding. */
const Y_OFFSET = (16 << 16) + (1 << 15);
/** The chroma of a 2×2 block is computed from the block's RGB sum (4×), hence the extra 2 bits. */
const C_OFFSET = (128 << 18) + (1 << 17);

// Y'CbCr → RGB, scaled by 2^16.
const K_Y = 76309; // 255/219
const K_RV = 104597;
const K_GU = -25675;
const K_GV = -53279;
const K_BU = 132201;
const HALF = 1 << 15;

function badRequest(message: string): XplError {
  return new XplError('bad_request', message);
}

function assertRgba(img: RgbaImage, what: string): void {
  const { width, height } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw badRequest(`${what}: bad RGBA dimensions ${width}×${height}`);
  }
  if (!(img.data instanceof Uint8Array) || img.data.length < width * height * 4) {
    throw badRequest(`${what}: ${width}×${height} RGBA needs ${width * height * 4} bytes, got ${img.data?.length ?? 0}`);
  }
}

/**
 * RGBA → I420. `dst` must be `src`'s size, or one pixel smaller on an odd axis (the last column
 * or row is dropped, since I420 needs even dimensions). Alpha is ignored. Chroma is the average of
 * each 2×2 block.
 */
export function rgbaToI420(src: RgbaImage, dst: I420Frame): void {
  assertRgba(src, 'rgbaToI420 source');
  assertI420(dst, 'rgbaToI420 destination');
  const w = dst.width, h = dst.height;
  if (w !== (src.width & ~1) || h !== (src.height & ~1)) {
    throw badRequest(`rgbaToI420: destination ${w}×${h} does not fit source ${src.width}×${src.height}`);
  }
  const s = src.data;
  const { y: yp, u: up, v: vp, cw } = planes(dst);
  const sStride = src.width * 4;
  for (let j = 0; j < h; j += 2) {
    let a = j * sStride; // top-left pixel of the 2×2 block
    let yo = j * w;
    let co = (j >> 1) * cw;
    for (let i = 0; i < w; i += 2, a += 8, yo += 2, co++) {
      const b = a + sStride;
      const r0 = s[a], g0 = s[a + 1], b0 = s[a + 2];
      const r1 = s[a + 4], g1 = s[a + 5], b1 = s[a + 6];
      const r2 = s[b], g2 = s[b + 1], b2 = s[b + 2];
      const r3 = s[b + 4], g3 = s[b + 5], b3 = s[b + 6];
      yp[yo] = (YR * r0 + YG * g0 + YB * b0 + Y_OFFSET) >> 16;
      yp[yo + 1] = (YR * r1 + YG * g1 + YB * b1 + Y_OFFSET) >> 16;
      yp[yo + w] = (YR * r2 + YG * g2 + YB * b2 + Y_OFFSET) >> 16;
      yp[yo + w + 1] = (YR * r3 + YG * g3 + YB * b3 + Y_OFFSET) >> 16;
      const sr = r0 + r1 + r2 + r3, sg = g0 + g1 + g2 + g3, sb = b0 + b1 + b2 + b3;
      up[co] = (UR * sr + UG * sg + UB * sb + C_OFFSET) >> 18;
      vp[co] = (VR * sr + VG * sg + VB * sb + C_OFFSET) >> 18;
    }
  }
}

/** I420 → RGBA (alpha 255), same size. Chroma is upsampled by repetition, as libyuv does. */
export function i420ToRgba(src: I420Frame, dst: RgbaImage): void {
  assertI420(src, 'i420ToRgba source');
  assertRgba(dst, 'i420ToRgba destination');
  const w = src.width, h = src.height;
  if (dst.width !== w || dst.height !== h) {
    throw badRequest(`i420ToRgba: destination ${dst.width}×${dst.height} differs from source ${w}×${h}`);
  }
  const { y: yp, u: up, v: vp, cw } = planes(src);
  // A clamped view does the 0..255 saturation in the store, which is cheaper than branching.
  const out = new Uint8ClampedArray(dst.data.buffer, dst.data.byteOffset, w * h * 4);
  for (let j = 0; j < h; j++) {
    let yi = j * w;
    let ci = (j >> 1) * cw;
    let o = yi * 4;
    for (let i = 0; i < w; i += 2, ci++) {
      const d = up[ci] - 128, e = vp[ci] - 128;
      const rv = K_RV * e + HALF;
      const gv = K_GU * d + K_GV * e + HALF;
      const bv = K_BU * d + HALF;
      let c = (yp[yi++] - 16) * K_Y;
      out[o] = (c + rv) >> 16;
      out[o + 1] = (c + gv) >> 16;
      out[o + 2] = (c + bv) >> 16;
      out[o + 3] = 255;
      c = (yp[yi++] - 16) * K_Y;
      out[o + 4] = (c + rv) >> 16;
      out[o + 5] = (c + gv) >> 16;
      out[o + 6] = (c + bv) >> 16;
      out[o + 7] = 255;
      o += 8;
    }
  }
}

/**
 * The window of a `sw`×`sh` source with the aspect of `dw`×`dh` ('cover' crop), even-aligned:
 * centred, or centred as near `focus` (a source point) as the source allows.
 */
export function coverRect(sw: number, sh: number, dw: number, dh: number, focus?: { x: number; y: number }): Rect {
  let width = sw, height = sh;
  if (sw * dh > sh * dw) width = Math.round((sh * dw) / dh);
  else height = Math.round((sw * dh) / dw);
  // Even origin and size keep the crop aligned with the 2×2 chroma blocks.
  width = Math.max(2, width & ~1);
  height = Math.max(2, height & ~1);
  const cx = focus?.x ?? sw / 2;
  const cy = focus?.y ?? sh / 2;
  const x = Math.min(sw - width, Math.max(0, Math.round(cx - width / 2)));
  const y = Math.min(sh - height, Math.max(0, Math.round(cy - height / 2)));
  return { x: x & ~1, y: y & ~1, width, height };
}

/** The centred, aspect-preserving area of a `dw`×`dh` destination that a `sw`×`sh` source fills ('contain'), even-aligned. */
export function containRect(sw: number, sh: number, dw: number, dh: number): Rect {
  let width = dw, height = dh;
  if (sw * dh > sh * dw) height = Math.round((dw * sh) / sw);
  else width = Math.round((dh * sw) / sh);
  width = Math.max(2, width & ~1);
  height = Math.max(2, height & ~1);
  return { x: ((dw - width) >> 2) << 1, y: ((dh - height) >> 2) << 1, width, height };
}

/** Scales all of `src` into all of `dst` (aspect not preserved). */
export function scaleI420(src: I420Frame, dst: I420Frame): void {
  assertI420(src, 'scaleI420 source');
  assertI420(dst, 'scaleI420 destination');
  const full = { x: 0, y: 0, width: src.width, height: src.height };
  scaleRegion(src, full, dst, { x: 0, y: 0, width: dst.width, height: dst.height });
}

/**
 * Fits `src` into `dst`. 'cover' crops `src` to `dst`'s aspect (around its centre, or around
 * `focus`) and fills all of `dst`; 'contain' shows all of `src`, centred, with black bars.
 */
export function cropScaleI420(src: I420Frame, dst: I420Frame, mode: FitMode, focus?: { x: number; y: number }): void {
  assertI420(src, 'cropScaleI420 source');
  assertI420(dst, 'cropScaleI420 destination');
  if (mode === 'cover') {
    scaleRegion(src, coverRect(src.width, src.height, dst.width, dst.height, focus), dst, { x: 0, y: 0, width: dst.width, height: dst.height });
  } else if (mode === 'contain') {
    const p = planes(dst);
    p.y.fill(16);
    p.u.fill(128);
    p.v.fill(128);
    scaleRegion(src, { x: 0, y: 0, width: src.width, height: src.height }, dst, containRect(src.width, src.height, dst.width, dst.height));
  } else {
    throw badRequest(`cropScaleI420: unknown mode ${String(mode)}`);
  }
}

/** Luma PSNR in dB between two frames of the same size (Infinity when identical). */
export function psnrI420(a: I420Frame, b: I420Frame): number {
  assertI420(a, 'psnrI420 a');
  assertI420(b, 'psnrI420 b');
  if (a.width !== b.width || a.height !== b.height) {
    throw badRequest(`psnrI420: sizes differ (${a.width}×${a.height} vs ${b.width}×${b.height})`);
  }
  const n = a.width * a.height;
  const ya = a.data, yb = b.data;
  let sse = 0;
  for (let i = 0; i < n; i++) {
    const d = ya[i] - yb[i];
    sse += d * d;
  }
  return sse === 0 ? Infinity : 10 * Math.log10((255 * 255 * n) / sse);
}

/** Scales luma rectangle `sr` of `src` into luma rectangle `dr` of `dst`; both rects even-aligned. */
function scaleRegion(src: I420Frame, sr: Rect, dst: I420Frame, dr: Rect): void {
  const s = planes(src), d = planes(dst);
  scalePlane(s.y, src.width, sr, d.y, dst.width, dr);
  const half = (r: Rect): Rect => ({ x: r.x >> 1, y: r.y >> 1, width: r.width >> 1, height: r.height >> 1 });
  const sc = half(sr), dc = half(dr);
  scalePlane(s.u, s.cw, sc, d.u, d.cw, dc);
  scalePlane(s.v, s.cw, sc, d.v, d.cw, dc);
}

function scalePlane(src: Uint8Array, sStride: number, sr: Rect, dst: Uint8Array, dStride: number, dr: Rect): void {
  if (sr.width === dr.width && sr.height === dr.height) copyPlane(src, sStride, sr, dst, dStride, dr);
  // Bilinear reads 2 source pixels per axis, so beyond 2× reduction it would skip pixels and alias.
  else if (sr.width > 2 * dr.width || sr.height > 2 * dr.height) areaPlane(src, sStride, sr, dst, dStride, dr);
  else bilinearPlane(src, sStride, sr, dst, dStride, dr);
}

function copyPlane(src: Uint8Array, sStride: number, sr: Rect, dst: Uint8Array, dStride: number, dr: Rect): void {
  for (let j = 0; j < sr.height; j++) {
    const so = (sr.y + j) * sStride + sr.x;
    dst.set(src.subarray(so, so + sr.width), (dr.y + j) * dStride + dr.x);
  }
}

/** Per-destination-column source indices and 8-bit weights for bilinear sampling along one axis. */
interface AxisTable {
  i0: Int32Array;
  i1: Int32Array;
  w1: Int32Array;
}

/** Column tables depend only on the geometry, which is fixed for a session, so they are cached. */
const axisTables = new Map<string, AxisTable>();
const AXIS_CACHE_MAX = 64;

/** Bilinear taps for `dn` samples over source positions [s0, s0 + sn), pixel centres aligned. */
function axisTable(s0: number, sn: number, dn: number): AxisTable {
  const key = `${s0}:${sn}:${dn}`;
  let t = axisTables.get(key);
  if (t) return t;
  t = { i0: new Int32Array(dn), i1: new Int32Array(dn), w1: new Int32Array(dn) };
  const ratio = sn / dn;
  for (let k = 0; k < dn; k++) {
    const p = Math.min(Math.max((k + 0.5) * ratio - 0.5, 0), sn - 1);
    const i = Math.floor(p);
    t.i0[k] = s0 + i;
    t.i1[k] = s0 + Math.min(i + 1, sn - 1);
    t.w1[k] = Math.round((p - i) * 256);
  }
  if (axisTables.size >= AXIS_CACHE_MAX) axisTables.clear();
  axisTables.set(key, t);
  return t;
}

function bilinearPlane(src: Uint8Array, sStride: number, sr: Rect, dst: Uint8Array, dStride: number, dr: Rect): void {
  const xt = axisTable(sr.x, sr.width, dr.width);
  const yt = axisTable(sr.y, sr.height, dr.height);
  const { i0: x0, i1: x1, w1: wx } = xt;
  const dw = dr.width;
  for (let j = 0; j < dr.height; j++) {
    const r0 = yt.i0[j] * sStride, r1 = yt.i1[j] * sStride;
    const wy1 = yt.w1[j], wy0 = 256 - wy1;
    let o = (dr.y + j) * dStride + dr.x;
    for (let k = 0; k < dw; k++) {
      const a = x0[k], b = x1[k], f = wx[k], g = 256 - f;
      const top = src[r0 + a] * g + src[r0 + b] * f;
      const bottom = src[r1 + a] * g + src[r1 + b] * f;
      dst[o++] = (top * wy0 + bottom * wy1 + 32768) >> 16;
    }
  }
}

/** Row accumulator for area averaging, grown on demand and reused. */
let columnSums = new Uint32Array(0);

/** Box filter: each destination pixel is the mean of the source pixels its footprint covers. */
function areaPlane(src: Uint8Array, sStride: number, sr: Rect, dst: Uint8Array, dStride: number, dr: Rect): void {
  const sw = sr.width, sh = sr.height, dw = dr.width, dh = dr.height;
  if (columnSums.length < sw) columnSums = new Uint32Array(sw);
  const acc = columnSums;
  for (let j = 0; j < dh; j++) {
    // Footprint [y0, y1): at least one source row, so an axis that is enlarged repeats rows.
    const y0 = Math.floor((j * sh) / dh);
    const y1 = Math.max(y0 + 1, Math.floor(((j + 1) * sh) / dh));
    acc.fill(0, 0, sw);
    for (let y = y0; y < y1; y++) {
      const so = (sr.y + y) * sStride + sr.x;
      for (let i = 0; i < sw; i++) acc[i] += src[so + i];
    }
    let o = (dr.y + j) * dStride + dr.x;
    for (let k = 0; k < dw; k++) {
      const x0 = Math.floor((k * sw) / dw);
      const x1 = Math.max(x0 + 1, Math.floor(((k + 1) * sw) / dw));
      let sum = 0;
      for (let i = x0; i < x1; i++) sum += acc[i];
      const n = (x1 - x0) * (y1 - y0);
      dst[o++] = ((sum + (n >> 1)) / n) | 0;
    }
  }
}
