/**
 * Background post-process of the render stage: a soft elliptical head mask, and outside it
 * either a flat colour or a box blur of the frame. Runs on the I420 output, after the renderer.
 *
 * The head ellipse comes from the face in the output picture when the renderer knows where it
 * is (mesh-warp: the warped portrait landmarks), otherwise a centred ellipse.
 */
import { planes, type I420Frame } from '../media/frame.ts';

export type BackgroundMode =
  | { mode: 'keep' }
  | { mode: 'colour'; colour: string }
  | { mode: 'blur'; radius: number };

export interface Ellipse {
  cx: number;
  cy: number;
  rx: number;
  ry: number;
}

/** Parses "#rrggbb" (or "rrggbb") into BT.601 limited-range Y, U, V. */
export function colourToYuv(hex: string): [number, number, number] {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex);
  if (!m) throw new Error(`bad colour ${hex}`);
  const n = parseInt(m[1], 16);
  const r = (n >> 16) & 255;
  const g = (n >> 8) & 255;
  const b = n & 255;
  const y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255;
  const u = 128 + (-37.797 * r - 74.203 * g + 112 * b) / 255;
  const v = 128 + (112 * r - 93.786 * g - 18.214 * b) / 255;
  return [Math.round(y), Math.round(u), Math.round(v)];
}

/** The head ellipse around face landmarks (x,y pairs in output pixels, `count` of them): the face box grown for hair and chin. */
export function headEllipse(xs: ArrayLike<number>, ys: ArrayLike<number>, count: number): Ellipse | null {
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < count; i++) {
    const x = xs[i];
    const y = ys[i];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  if (!(x1 > x0 && y1 > y0)) return null;
  const w = x1 - x0;
  const h = y1 - y0;
  return { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 - 0.12 * h, rx: 0.5 * w * 1.45, ry: 0.5 * h * 1.6 };
}

/** The fallback: a centred ellipse covering the middle of the picture, as a head-and-shoulders framing would. */
export function centredEllipse(width: number, height: number): Ellipse {
  return { cx: width / 2, cy: height * 0.46, rx: width * 0.3, ry: height * 0.4 };
}

/**
 * Mask (0 = background, 255 = keep) at chroma or luma resolution for the ellipse, with a soft
 * edge of `feather` (fraction of the radius). `scale` maps luma coordinates to the plane (0.5 for chroma).
 */
function fillMask(mask: Uint8Array, w: number, h: number, e: Ellipse, scale: number, feather = 0.15): void {
  const cx = e.cx * scale;
  const cy = e.cy * scale;
  const rx = Math.max(1, e.rx * scale);
  const ry = Math.max(1, e.ry * scale);
  const inner = 1 - feather;
  for (let y = 0; y < h; y++) {
    const dy = (y + 0.5 - cy) / ry;
    const dy2 = dy * dy;
    const row = y * w;
    for (let x = 0; x < w; x++) {
      const dx = (x + 0.5 - cx) / rx;
      const d = Math.sqrt(dx * dx + dy2);
      let a: number;
      if (d <= inner) a = 255;
      else if (d >= 1 + feather) a = 0;
      else {
        const t = (d - inner) / (2 * feather);
        a = 255 * (1 - t * t * (3 - 2 * t));
      }
      mask[row + x] = a;
    }
  }
}

/** Separable box blur of one plane, radius r, into `out` (running sums, edge-clamped). */
export function boxBlur(src: Uint8Array, out: Uint8Array, w: number, h: number, r: number, tmp: Uint8Array): void {
  const n = 2 * r + 1;
  for (let y = 0; y < h; y++) {
    const row = y * w;
    let sum = 0;
    for (let k = -r; k <= r; k++) sum += src[row + Math.min(w - 1, Math.max(0, k))];
    for (let x = 0; x < w; x++) {
      tmp[row + x] = (sum / n + 0.5) | 0;
      sum += src[row + Math.min(w - 1, x + r + 1)] - src[row + Math.max(0, x - r)];
    }
  }
  for (let x = 0; x < w; x++) {
    let sum = 0;
    for (let k = -r; k <= r; k++) sum += tmp[Math.min(h - 1, Math.max(0, k)) * w + x];
    for (let y = 0; y < h; y++) {
      out[y * w + x] = (sum / n + 0.5) | 0;
      sum += tmp[Math.min(h - 1, y + r + 1) * w + x] - tmp[Math.max(0, y - r) * w + x];
    }
  }
}

/** Reusable buffers per output size, so the post-process allocates nothing per frame. */
export class BackgroundProcessor {
  private w = 0;
  private h = 0;
  private maskY = new Uint8Array(0);
  private maskC = new Uint8Array(0);
  private blurred = new Uint8Array(0);
  private tmp = new Uint8Array(0);

  private ensure(w: number, h: number): void {
    if (w === this.w && h === this.h) return;
    this.w = w;
    this.h = h;
    this.maskY = new Uint8Array(w * h);
    this.maskC = new Uint8Array((w >> 1) * (h >> 1));
    this.blurred = new Uint8Array(w * h);
    this.tmp = new Uint8Array(w * h);
  }

  apply(frame: I420Frame, bg: BackgroundMode, head: Ellipse): void {
    if (bg.mode === 'keep') return;
    const { width: w, height: h } = frame;
    this.ensure(w, h);
    const { y, u, v, cw, ch } = planes(frame);
    fillMask(this.maskY, w, h, head, 1);
    fillMask(this.maskC, cw, ch, head, 0.5);
    if (bg.mode === 'colour') {
      const [cy, cu, cv] = colourToYuv(bg.colour);
      blendConst(y, this.maskY, cy);
      blendConst(u, this.maskC, cu);
      blendConst(v, this.maskC, cv);
      return;
    }
    const r = Math.max(1, Math.round(bg.radius));
    const rc = Math.max(1, r >> 1);
    for (const [plane, mask, pw, ph, rr] of [
      [y, this.maskY, w, h, r],
      [u, this.maskC, cw, ch, rc],
      [v, this.maskC, cw, ch, rc],
    ] as const) {
      const out = this.blurred.subarray(0, pw * ph);
      boxBlur(plane, out, pw, ph, rr, this.tmp);
      for (let i = 0; i < pw * ph; i++) {
        const a = mask[i];
        if (a === 255) continue;
        plane[i] = (plane[i] * a + out[i] * (255 - a) + 127) / 255;
      }
    }
  }
}

function blendConst(plane: Uint8Array, mask: Uint8Array, c: number): void {
  for (let i = 0; i < plane.length; i++) {
    const a = mask[i];
    if (a === 255) continue;
    plane[i] = (plane[i] * a + c * (255 - a) + 127) / 255;
  }
}
