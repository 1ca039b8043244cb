/**
 * Crops a rotated square region of an RGBA or I420 image into a model input tensor (NHWC float32),
 * bilinear, with no whole-frame conversion. Pixels outside the image read as black.
 */
import type { FaceImage, FaceRoi } from './types.ts';

export type InputRange = '01' | '11';

/**
 * Fills `out` (size·size·3) with the crop. Crop pixel (u, v) maps to
 * roi.centre + R(angle)·(((u + 0.5)/size − 0.5)·roi.size, ((v + 0.5)/size − 0.5)·roi.size).
 * flipX mirrors the crop horizontally (for the iris model's other eye).
 */
export function cropToTensor(img: FaceImage, roi: FaceRoi, size: number, out: Float32Array, range: InputRange, flipX = false): void {
  const c = Math.cos(roi.angle);
  const s = Math.sin(roi.angle);
  const k = roi.size / size;
  const mul = range === '01' ? 1 / 255 : 2 / 255;
  const add = range === '01' ? 0 : -1;
  const { width: W, height: H, data } = img;
  const isRgba = img.kind === 'rgba';
  const cw = W >> 1;
  const ch = H >> 1;
  const uOff = W * H;
  const vOff = uOff + cw * ch;
  let o = 0;
  for (let v = 0; v < size; v++) {
    const dy = (v + 0.5 - size / 2) * k;
    for (let u0 = 0; u0 < size; u0++) {
      const u = flipX ? size - 1 - u0 : u0;
      const dx = (u + 0.5 - size / 2) * k;
      // continuous source coordinate, pixel centres at integer + 0.5
      const sx = roi.cx + c * dx - s * dy - 0.5;
      const sy = roi.cy + s * dx + c * dy - 0.5;
      let r = 0;
      let g = 0;
      let b = 0;
      if (sx > -1 && sy > -1 && sx < W && sy < H) {
        const x0 = Math.floor(sx);
        const y0 = Math.floor(sy);
        const fx = sx - x0;
        const fy = sy - y0;
        const xa = x0 < 0 ? 0 : x0;
        const ya = y0 < 0 ? 0 : y0;
        const xb = x0 + 1 >= W ? W - 1 : x0 + 1;
        const yb = y0 + 1 >= H ? H - 1 : y0 + 1;
        const w00 = (1 - fx) * (1 - fy);
        const w10 = fx * (1 - fy);
        const w01 = (1 - fx) * fy;
        const w11 = fx * fy;
        if (isRgba) {
          const p00 = (ya * W + xa) * 4;
          const p10 = (ya * W + xb) * 4;
          const p01 = (yb * W + xa) * 4;
          const p11 = (yb * W + xb) * 4;
          r = data[p00] * w00 + data[p10] * w10 + data[p01] * w01 + data[p11] * w11;
          g = data[p00 + 1] * w00 + data[p10 + 1] * w10 + data[p01 + 1] * w01 + data[p11 + 1] * w11;
          b = data[p00 + 2] * w00 + data[p10 + 2] * w10 + data[p01 + 2] * w01 + data[p11 + 2] * w11;
        } else {
          const yv = data[ya * W + xa] * w00 + data[ya * W + xb] * w10 + data[yb * W + xa] * w01 + data[yb * W + xb] * w11;
          const ci = (Math.min(ch - 1, (sy + 0.5) >> 1) * cw + Math.min(cw - 1, (sx + 0.5) >> 1)) | 0;
          const cu = data[uOff + ci] - 128;
          const cv = data[vOff + ci] - 128;
          // BT.601 limited range
          const yy = 1.164 * (yv - 16);
          r = yy + 1.596 * cv;
          g = yy - 0.392 * cu - 0.813 * cv;
          b = yy + 2.017 * cu;
          r = r < 0 ? 0 : r > 255 ? 255 : r;
          g = g < 0 ? 0 : g > 255 ? 255 : g;
          b = b < 0 ? 0 : b > 255 ? 255 : b;
        }
      }
      out[o++] = r * mul + add;
      out[o++] = g * mul + add;
      out[o++] = b * mul + add;
    }
  }
}

/** Maps a point in crop pixels back to image pixels. */
export function cropToImage(roi: FaceRoi, size: number, u: number, v: number): [number, number] {
  const k = roi.size / size;
  const dx = (u - size / 2) * k;
  const dy = (v - size / 2) * k;
  const c = Math.cos(roi.angle);
  const s = Math.sin(roi.angle);
  return [roi.cx + c * dx - s * dy, roi.cy + s * dx + c * dy];
}
