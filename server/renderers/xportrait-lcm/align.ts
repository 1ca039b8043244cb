/**
 * Face-aligned crops for X-Portrait: one similarity transform (rotation, uniform scale,
 * translation) from three landmark anchors — the two eye centres and the mouth centre — to fixed
 * places in a canonical S×S square. The portrait and every driving frame use the same rule, so
 * the model sees both faces at the same place and scale.
 *
 * Also: the local-control canvas (eye and mouth patches of the aligned driving crop pasted at
 * their places on a −1 background), a luma thumbnail for the similarity skip, and the feathered
 * paste of the generated crop back into the full output frame.
 */
import { planes, type I420Frame, type RgbaImage } from '../../media/frame.ts';
import { LEFT_EYE_CORNERS, LEFT_EYE_LOWER, LEFT_EYE_UPPER, OUTER_LIP_LOWER, OUTER_LIP_UPPER, RIGHT_EYE_CORNERS, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER } from '../../face/landmarks.ts';

/** Canonical anchor positions in unit crop coordinates (x right, y down). */
export const CANONICAL_ANCHORS = {
  /** subject's right eye (image left) */
  rightEye: [0.38, 0.44],
  leftEye: [0.62, 0.44],
  mouth: [0.5, 0.7],
} as const;

/** q = A·p + b with A = [[ar, −ai], [ai, ar]] (image pixels → crop pixels). */
export interface Similarity {
  ar: number;
  ai: number;
  bx: number;
  by: number;
}

function meanPoint(lm: ArrayLike<number>, idx: readonly number[]): [number, number] {
  let x = 0;
  let y = 0;
  for (const i of idx) {
    x += lm[3 * i];
    y += lm[3 * i + 1];
  }
  return [x / idx.length, y / idx.length];
}

/** The three anchors (image pixels) from 468 FaceMesh landmarks. */
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

export function alignmentFromLandmarks(lm: ArrayLike<number>, size: number): Similarity {
  const c = CANONICAL_ANCHORS;
  const dst: Array<[number, number]> = [c.rightEye, c.leftEye, c.mouth].map(([u, v]) => [u * size, v * size]);
  return fitSimilarity2(anchorsFromLandmarks(lm), dst);
}

export function applySim(s: Similarity, x: number, y: number): [number, number] {
  return [s.ar * x - s.ai * y + s.bx, s.ai * x + s.ar * y + s.by];
}

export function invertSim(s: Similarity): Similarity {
  const d = s.ar * s.ar + s.ai * s.ai;
  const ar = s.ar / d, ai = -s.ai / d;
  return { ar, ai, bx: -(ar * s.bx - ai * s.by), by: -(ai * s.bx + ar * s.by) };
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
 * The aligned crop of an I420 frame as CHW RGB floats in [−1, 1] (BT.601 limited range, like
 * server/media/convert.ts). `inv` maps crop pixels to image pixels. Outside the frame: edge pixels.
 */
export function cropI420(src: I420Frame, inv: Similarity, size: number, out = new Float32Array(3 * size * size)): Float32Array {
  const { y: yp, u: up, v: vp, cw, ch } = planes(src);
  const W = src.width, H = src.height;
  const plane = size * size;
  for (let j = 0; j < size; j++) {
    for (let i = 0; i < size; i++) {
      const qx = i + 0.5, qy = j + 0.5;
      const x = inv.ar * qx - inv.ai * qy + inv.bx - 0.5;
      const y = inv.ai * qx + inv.ar * qy + inv.by - 0.5;
      const Y = bilinear(yp, W, W, H, x, y);
      const U = bilinear(up, cw, cw, ch, (x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5) - 128;
      const V = bilinear(vp, cw, cw, ch, (x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5) - 128;
      const c = (Y - 16) * 1.164383;
      const o = j * size + i;
      out[o] = clamp(c + 1.596027 * V, 0, 255) / 127.5 - 1;
      out[plane + o] = clamp(c - 0.391762 * U - 0.812968 * V, 0, 255) / 127.5 - 1;
      out[2 * plane + o] = clamp(c + 2.017232 * U, 0, 255) / 127.5 - 1;
    }
  }
  return out;
}

/** Same for an RGBA image (the portrait). */
export function cropRgba(src: RgbaImage, inv: Similarity, size: number, out = new Float32Array(3 * size * size)): Float32Array {
  const W = src.width, H = src.height, d = src.data;
  const plane = size * size;
  for (let j = 0; j < size; j++) {
    for (let i = 0; i < size; i++) {
      const qx = i + 0.5, qy = j + 0.5;
      const x = clamp(inv.ar * qx - inv.ai * qy + inv.bx - 0.5, 0, W - 1);
      const y = clamp(inv.ai * qx + inv.ar * qy + inv.by - 0.5, 0, H - 1);
      const x0 = Math.floor(x), y0 = Math.floor(y);
      const x1 = Math.min(x0 + 1, W - 1), y1 = Math.min(y0 + 1, H - 1);
      const fx = x - x0, fy = y - y0;
      const o = j * size + i;
      for (let c = 0; c < 3; c++) {
        const a = d[(y0 * W + x0) * 4 + c], b = d[(y0 * W + x1) * 4 + c];
        const e = d[(y1 * W + x0) * 4 + c], f = d[(y1 * W + x1) * 4 + c];
        const v = (a + (b - a) * fx) * (1 - fy) + (e + (f - e) * fx) * fy;
        out[c * plane + o] = v / 127.5 - 1;
      }
    }
  }
  return out;
}

export interface PatchBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** Square patches (crop pixels) around both eyes and the mouth, centred on the driving landmarks. */
export function patchBoxes(lm: ArrayLike<number>, sim: Similarity, size: number): PatchBox[] {
  const box = (idx: readonly number[], side: number): PatchBox => {
    const [cx, cy] = meanPoint(lm, idx);
    const [u, v] = applySim(sim, cx, cy);
    const h = (side * size) / 2;
    return { x0: clamp(Math.round(u - h), 0, size), y0: clamp(Math.round(v - h), 0, size), x1: clamp(Math.round(u + h), 0, size), y1: clamp(Math.round(v + h), 0, size) };
  };
  return [box([...RIGHT_EYE_UPPER, ...RIGHT_EYE_LOWER], 0.22), box([...LEFT_EYE_UPPER, ...LEFT_EYE_LOWER], 0.22), box([...OUTER_LIP_UPPER, ...OUTER_LIP_LOWER], 0.32)];
}

/** X-Portrait's local control input: −1 everywhere, the aligned crop's pixels inside the patches. */
export function localCanvas(crop: Float32Array, size: number, boxes: PatchBox[], out = new Float32Array(crop.length)): Float32Array {
  out.fill(-1);
  const plane = size * size;
  for (const b of boxes) {
    for (let c = 0; c < 3; c++) {
      for (let y = b.y0; y < b.y1; y++) {
        const o = c * plane + y * size;
        out.set(crop.subarray(o + b.x0, o + b.x1), o + b.x0);
      }
    }
  }
  return out;
}

export const THUMB = 16;

/** A THUMB×THUMB luma thumbnail (0..255) of a CHW [−1,1] crop, area-averaged. */
export function thumbnail(crop: Float32Array, size: number, out = new Float32Array(THUMB * THUMB)): Float32Array {
  out.fill(0);
  const plane = size * size;
  const cell = size / THUMB;
  const cnt = new Float32Array(THUMB * THUMB);
  for (let y = 0; y < size; y++) {
    const ty = Math.min(THUMB - 1, Math.floor(y / cell));
    for (let x = 0; x < size; x++) {
      const tx = Math.min(THUMB - 1, Math.floor(x / cell));
      const o = y * size + x;
      const luma = 0.299 * crop[o] + 0.587 * crop[plane + o] + 0.114 * crop[2 * plane + o];
      out[ty * THUMB + tx] += (luma + 1) * 127.5;
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

/**
 * Where the generated crop lands in the output frame: for every output pixel the crop covers,
 * its crop coordinates and a feathered weight (1 inside an ellipse around the face, easing to 0
 * before the crop's border), so hair and background outside stay the portrait's own pixels.
 */
export interface PasteMap {
  index: Uint32Array;
  qx: Float32Array;
  qy: Float32Array;
  weight: Float32Array;
}

export function buildPasteMap(width: number, height: number, toCrop: Similarity, size: number, inner = 0.7): PasteMap {
  const idx: number[] = [];
  const qxs: number[] = [];
  const qys: number[] = [];
  const ws: number[] = [];
  const rx = 0.44, ry = 0.48, cx = 0.5, cy = 0.5;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [qx, qy] = applySim(toCrop, x + 0.5, y + 0.5);
      const u = qx / size, v = qy / size;
      if (u <= 0 || u >= 1 || v <= 0 || v >= 1) continue;
      const r = Math.hypot((u - cx) / rx, (v - cy) / ry);
      if (r >= 1) continue;
      const t = clamp((1 - r) / (1 - inner), 0, 1);
      const w = t * t * (3 - 2 * t);
      idx.push(y * width + x);
      qxs.push(qx - 0.5);
      qys.push(qy - 0.5);
      ws.push(w);
    }
  }
  return { index: Uint32Array.from(idx), qx: Float32Array.from(qxs), qy: Float32Array.from(qys), weight: Float32Array.from(ws) };
}

/** base (RGBA) ← blend(base, generated crop (CHW [−1,1]), weight), written into `out` (RGBA). */
export function pasteCrop(base: RgbaImage, crop: Float32Array, size: number, map: PasteMap, out: RgbaImage): void {
  out.data.set(base.data);
  const plane = size * size;
  const d = out.data;
  for (let n = 0; n < map.index.length; n++) {
    const x = clamp(map.qx[n], 0, size - 1), y = clamp(map.qy[n], 0, size - 1);
    const x0 = Math.floor(x), y0 = Math.floor(y);
    const x1 = Math.min(x0 + 1, size - 1), y1 = Math.min(y0 + 1, size - 1);
    const fx = x - x0, fy = y - y0;
    const w = map.weight[n];
    const p = map.index[n] * 4;
    for (let c = 0; c < 3; c++) {
      const o = c * plane;
      const a = crop[o + y0 * size + x0], b = crop[o + y0 * size + x1];
      const e = crop[o + y1 * size + x0], f = crop[o + y1 * size + x1];
      const g = clamp(((a + (b - a) * fx) * (1 - fy) + (e + (f - e) * fx) * fy + 1) * 127.5, 0, 255);
      d[p + c] = Math.round(d[p + c] + (g - d[p + c]) * w);
    }
  }
}
