/**
 * X-Portrait's local control input: the eye and mouth patches of the aligned driving frame on a
 * −1 canvas. As upstream: squares of side S/4 centred on each eye's and the mouth's landmark
 * centre in the aligned frame, the centres rounded on a 256² grid and kept ≥ S/8 from the border
 * (upstream clips them to 32..223 of 256, so a patch never leaves the frame).
 */
import { INNER_LIP_LOWER, INNER_LIP_UPPER, LEFT_EYE_LOWER, LEFT_EYE_UPPER, OUTER_LIP_LOWER, OUTER_LIP_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER } from '../../face/landmarks.ts';
import { applySim, meanPoint, type Similarity } from './align.ts';

/** [x0, y0, x1, y1) in model-frame pixels. */
export type PatchBox = [number, number, number, number];

const GRID = 256;
const EYE_R = [...RIGHT_EYE_UPPER, ...RIGHT_EYE_LOWER];
const EYE_L = [...LEFT_EYE_UPPER, ...LEFT_EYE_LOWER];
const MOUTH = [...OUTER_LIP_UPPER, ...OUTER_LIP_LOWER, ...INNER_LIP_UPPER, ...INNER_LIP_LOWER];

/** One S/4 square around a point of the model frame (upstream's centre rounding and clipping). */
export function patchAround(u: number, v: number, size: number): PatchBox {
  const half = size / 8;
  const snap = (c: number): number => {
    const g = Math.min(GRID - 1 - GRID / 8, Math.max(GRID / 8, Math.round((c * GRID) / size)));
    return Math.floor((g * size) / GRID);
  };
  const cx = snap(u), cy = snap(v);
  return [Math.round(cx - half), Math.round(cy - half), Math.round(cx + half), Math.round(cy + half)];
}

/** The patches of both eyes and the mouth: the driver's landmarks (frame pixels) through the calibration `cal`. */
export function patchBoxes(lm: ArrayLike<number>, cal: Similarity, size: number): PatchBox[] {
  return [EYE_R, EYE_L, MOUTH].map((idx) => {
    const [x, y] = meanPoint(lm, idx);
    const [u, v] = applySim(cal, x, y);
    return patchAround(u, v, size);
  });
}

/** The local canvas (CHW floats): −1 everywhere, the aligned crop's values inside the patches. */
export function localCanvas(crop: Float32Array, size: number, boxes: readonly PatchBox[], out: Float32Array = new Float32Array(crop.length)): Float32Array {
  out.fill(-1);
  const plane = size * size;
  for (const [x0, y0, x1, y1] of boxes) {
    for (let c = 0; c < 3; c++) {
      for (let y = y0; y < y1; y++) {
        const o = c * plane + y * size;
        out.set(crop.subarray(o + x0, o + x1), o + x0);
      }
    }
  }
  return out;
}
