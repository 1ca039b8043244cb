/**
 * A plain reference implementation of the 'cover' crop-and-scale the server applies to driving
 * frames (centred square crop, then bilinear scale). Written independently of server/media so
 * tests can check the server against it; slow and simple on purpose.
 */
import { allocI420, planes, type I420Frame } from '../../server/media/frame.ts';

/** Centre-crops `src` to the aspect of `dw`×`dh` and scales it there (bilinear, per plane). */
export function coverScale(src: I420Frame, dw: number, dh: number): I420Frame {
  const dst = allocI420(dw, dh, src.timestamp);
  const scale = Math.max(dw / src.width, dh / src.height);
  const cropW = dw / scale;
  const cropH = dh / scale;
  const cx0 = (src.width - cropW) / 2;
  const cy0 = (src.height - cropH) / 2;
  const s = planes(src);
  const d = planes(dst);
  scalePlane(s.y, src.width, src.height, d.y, dw, dh, cx0, cy0, cropW, cropH);
  scalePlane(s.u, s.cw, s.ch, d.u, d.cw, d.ch, cx0 / 2, cy0 / 2, cropW / 2, cropH / 2);
  scalePlane(s.v, s.cw, s.ch, d.v, d.cw, d.ch, cx0 / 2, cy0 / 2, cropW / 2, cropH / 2);
  return dst;
}

function scalePlane(
  src: Uint8Array, sw: number, sh: number,
  dst: Uint8Array, dw: number, dh: number,
  rx: number, ry: number, rw: number, rh: number,
): void {
  for (let y = 0; y < dh; y++) {
    const fy = Math.min(Math.max(ry + ((y + 0.5) * rh) / dh - 0.5, 0), sh - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, sh - 1);
    const wy = fy - y0;
    for (let x = 0; x < dw; x++) {
      const fx = Math.min(Math.max(rx + ((x + 0.5) * rw) / dw - 0.5, 0), sw - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, sw - 1);
      const wx = fx - x0;
      const top = src[y0 * sw + x0] * (1 - wx) + src[y0 * sw + x1] * wx;
      const bot = src[y1 * sw + x0] * (1 - wx) + src[y1 * sw + x1] * wx;
      dst[y * dw + x] = Math.round(top * (1 - wy) + bot * wy);
    }
  }
}

/** Mean absolute difference of the luma planes of two frames of the same size. */
export function lumaMad(a: I420Frame, b: I420Frame): number {
  if (a.width !== b.width || a.height !== b.height) throw new Error(`size mismatch ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  const n = a.width * a.height;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.abs(a.data[i] - b.data[i]);
  return sum / n;
}
