/**
 * The driving alignment of X-Portrait, as its inference does it: ONE similarity transform from a
 * calibration frame of the driver to the portrait, applied to every later frame, with the whole
 * frame warped — so the driver's head translation, roll and scale relative to the calibration
 * frame come through to the model (upstream: a transform from the best-matching driving frame's
 * landmark box to the source's, then cv2.warpAffine of every frame; here: the first confident
 * frame after a reset, and a least-squares similarity on the eye and mouth centres).
 *
 * The model frame is the portrait's square (paste.ts): the portrait crop and the driving crop are
 * both S×S images in it, uint8 RGB, row-major HWC — what the engines take.
 */
import { planes, type I420Frame, type RgbaImage } from '../../media/frame.ts';
import { LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS } from '../../face/landmarks.ts';

/** q = A·p + b with A = [[ar, −ai], [ai, ar]] (source pixels → target pixels). */
export interface Similarity {
  ar: number;
  ai: number;
  bx: number;
  by: number;
}

export function meanPoint(lm: ArrayLike<number>, idx: readonly number[]): [number, number] {
  let x = 0;
  let y = 0;
  for (const i of idx) {
    x += lm[3 * i];
    y += lm[3 * i + 1];
  }
  return [x / idx.length, y / idx.length];
}

/** The three anchors (image pixels) from 468 FaceMesh landmarks: eye centres and mouth centre. */
export function anchorsFromLandmarks(lm: ArrayLike<number>): Array<[number, number]> {
  return [meanPoint(lm, RIGHT_EYE_CORNERS), meanPoint(lm, LEFT_EYE_CORNERS), meanPoint(lm, [61, 291, 13, 14])];
}

/** Least-squares similarity mapping points `src` onto `dst` (complex-number form of Umeyama in 2-D). */
export function fitSimilarity2(src: ReadonlyArray<readonly [number, number]>, dst: ReadonlyArray<readonly [number, number]>): Similarity {
  const n = src.length;
  let sx = 0, sy = 0, dx = 0, dy = 0;
  for (let i = 0; i < n; i++) {
    sx += src[i][0]; sy += src[i][1]; dx += dst[i][0]; dy += dst[i][1];
  }
  sx /= n; sy /= n; dx /= n; dy /= n;
  let re = 0, im = 0, nn = 0;
  for (let i = 0; i < n; i++) {
    const px = src[i][0] - sx, py = src[i][1] - sy;
    const qx = dst[i][0] - dx, qy = dst[i][1] - dy;
    // (q)·conj(p)
    re += qx * px + qy * py;
    im += qy * px - qx * py;
    nn += px * px + py * py;
  }
  const ar = nn > 0 ? re / nn : 1;
  const ai = nn > 0 ? im / nn : 0;
  return { ar, ai, bx: dx - (ar * sx - ai * sy), by: dy - (ai * sx + ar * sy) };
}

export function applySim(s: Similarity, x: number, y: number): [number, number] {
  return [s.ar * x - s.ai * y + s.bx, s.ai * x + s.ar * y + s.by];
}

export function invertSim(s: Similarity): Similarity {
  const d = s.ar * s.ar + s.ai * s.ai;
  const ar = s.ar / d, ai = -s.ai / d;
  return { ar, ai, bx: -(ar * s.bx - ai * s.by), by: -(ai * s.bx + ar * s.by) };
}

/** The calibration: the similarity taking the driver's anchors (frame pixels) onto the portrait's (model-frame pixels). */
export function calibrate(driverLandmarks: ArrayLike<number>, portraitAnchors: ReadonlyArray<readonly [number, number]>): Similarity {
  return fitSimilarity2(anchorsFromLandmarks(driverLandmarks), portraitAnchors);
}

const clamp = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);

function bilinear(plane: Uint8Array, stride: number, w: number, h: number, x: number, y: number): number {
  x = clamp(x, 0, w - 1);
  y = clamp(y, 0, h - 1);
  const x0 = Math.floor(x), y0 = Math.floor(y);
  const x1 = Math.min(x0 + 1, w - 1), y1 = Math.min(y0 + 1, h - 1);
  const fx = x - x0, fy = y - y0;
  const a = plane[y0 * stride + x0], b = plane[y0 * stride + x1];
  const c = plane[y1 * stride + x0], d = plane[y1 * stride + x1];
  return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy;
}

/**
 * The whole I420 frame warped into the S×S model frame (`inv` maps model pixels to frame pixels),
 * uint8 RGB HWC, BT.601 limited range like server/media/convert.ts. Outside the frame: black, as
 * upstream's cv2.warpAffine leaves it.
 */
export function warpI420(src: I420Frame, inv: Similarity, size: number, out = new Uint8Array(3 * size * size)): Uint8Array {
  const { y: yp, u: up, v: vp, cw, ch } = planes(src);
  const W = src.width, H = src.height;
  for (let j = 0; j < size; j++) {
    for (let i = 0; i < size; i++) {
      const qx = i + 0.5, qy = j + 0.5;
      const x = inv.ar * qx - inv.ai * qy + inv.bx - 0.5;
      const y = inv.ai * qx + inv.ar * qy + inv.by - 0.5;
      const o = 3 * (j * size + i);
      if (x < -0.5 || y < -0.5 || x > W - 0.5 || y > H - 0.5) {
        out[o] = out[o + 1] = out[o + 2] = 0;
        continue;
      }
      const Y = bilinear(yp, W, W, H, x, y);
      const U = bilinear(up, cw, cw, ch, (x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5) - 128;
      const V = bilinear(vp, cw, cw, ch, (x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5) - 128;
      const c = (Y - 16) * 1.164383;
      out[o] = Math.round(clamp(c + 1.596027 * V, 0, 255));
      out[o + 1] = Math.round(clamp(c - 0.391762 * U - 0.812968 * V, 0, 255));
      out[o + 2] = Math.round(clamp(c + 2.017232 * U, 0, 255));
    }
  }
  return out;
}

/** Same for an RGBA image (the portrait; edge pixels outside it). */
export function warpRgba(src: RgbaImage, inv: Similarity, size: number, out = new Uint8Array(3 * size * size)): Uint8Array {
  const W = src.width, H = src.height, d = src.data;
  for (let j = 0; j < size; j++) {
    for (let i = 0; i < size; i++) {
      const qx = i + 0.5, qy = j + 0.5;
      const x = clamp(inv.ar * qx - inv.ai * qy + inv.bx - 0.5, 0, W - 1);
      const y = clamp(inv.ai * qx + inv.ar * qy + inv.by - 0.5, 0, H - 1);
      const x0 = Math.floor(x), y0 = Math.floor(y);
      const x1 = Math.min(x0 + 1, W - 1), y1 = Math.min(y0 + 1, H - 1);
      const fx = x - x0, fy = y - y0;
      const o = 3 * (j * size + i);
      for (let c = 0; c < 3; c++) {
        const a = d[(y0 * W + x0) * 4 + c], b = d[(y0 * W + x1) * 4 + c];
        const e = d[(y1 * W + x0) * 4 + c], f = d[(y1 * W + x1) * 4 + c];
        out[o + c] = Math.round((a + (b - a) * fx) * (1 - fy) + (e + (f - e) * fx) * fy);
      }
    }
  }
  return out;
}

export const THUMB = 16;

/** A THUMB×THUMB luma thumbnail (0..255) of an S×S RGB crop, area-averaged (the similarity skip). */
export function thumbnail(crop: Uint8Array, size: number, out = new Float32Array(THUMB * THUMB)): Float32Array {
  out.fill(0);
  const cell = size / THUMB;
  const cnt = new Float32Array(THUMB * THUMB);
  for (let y = 0; y < size; y++) {
    const ty = Math.min(THUMB - 1, Math.floor(y / cell));
    for (let x = 0; x < size; x++) {
      const tx = Math.min(THUMB - 1, Math.floor(x / cell));
      const o = 3 * (y * size + x);
      out[ty * THUMB + tx] += 0.299 * crop[o] + 0.587 * crop[o + 1] + 0.114 * crop[o + 2];
      cnt[ty * THUMB + tx]++;
    }
  }
  for (let i = 0; i < out.length; i++) out[i] /= cnt[i] || 1;
  return out;
}

export function meanAbsDiff(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}
