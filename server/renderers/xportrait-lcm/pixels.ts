/**
 * Frames as the engines exchange them (uint8 RGB, row-major HWC, S×S) ↔ the ONNX graphs' CHW
 * floats in [−1, 1]. The torch worker does the same arithmetic on the device (x / 127.5 − 1), so
 * both engines see identical inputs.
 */

export function rgbToChw(rgb: Uint8Array, size: number, out: Float32Array = new Float32Array(3 * size * size)): Float32Array {
  const plane = size * size;
  for (let i = 0; i < plane; i++) {
    out[i] = rgb[3 * i] / 127.5 - 1;
    out[plane + i] = rgb[3 * i + 1] / 127.5 - 1;
    out[2 * plane + i] = rgb[3 * i + 2] / 127.5 - 1;
  }
  return out;
}

export function chwToRgb(chw: Float32Array, size: number, out: Uint8Array = new Uint8Array(3 * size * size)): Uint8Array {
  const plane = size * size;
  const q = (v: number): number => Math.round(Math.min(255, Math.max(0, (v + 1) * 127.5)));
  for (let i = 0; i < plane; i++) {
    out[3 * i] = q(chw[i]);
    out[3 * i + 1] = q(chw[plane + i]);
    out[3 * i + 2] = q(chw[2 * plane + i]);
  }
  return out;
}
