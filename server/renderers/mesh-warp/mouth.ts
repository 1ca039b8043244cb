/**
 * The open mouth's interior, drawn procedurally and coloured to the portrait — never from the
 * driver's pixels: upper teeth under the upper lip (individual teeth, shaded towards the corners),
 * lower teeth above the lower lip when the mouth opens wide, a tongue, and a dark throat between,
 * all tinted with the portrait's own lip colour. A portrait whose mouth is already open (its
 * teeth show) keeps its own interior instead: the warp stretches it with the lips.
 */
import { INNER_LIP_LOWER, INNER_LIP_UPPER, MOUTH_CORNERS, MOUTH_MID, OUTER_LIP_LOWER, OUTER_LIP_UPPER } from '../../face/landmarks.ts';
import { shadeTriangle, type Plane } from './raster.ts';

/** Portrait colours the interior is tinted with (I420 values). */
export interface MouthPalette {
  lipY: number;
  lipU: number;
  lipV: number;
  skinY: number;
}

interface Pts {
  x: ArrayLike<number>;
  y: ArrayLike<number>;
}

/** Samples the portrait's lip and skin colours at its landmarks (output pixels). */
export function mouthPalette(lm: Float32Array, Y: Plane, U: Plane, V: Plane): MouthPalette {
  const at = (p: Plane, x: number, y: number): number => {
    const xi = Math.max(0, Math.min(p.width - 1, Math.round(x)));
    const yi = Math.max(0, Math.min(p.height - 1, Math.round(y)));
    return p.data[yi * p.width + xi];
  };
  let ly = 0;
  let lu = 0;
  let lv = 0;
  let n = 0;
  for (const [inner, outer] of [[INNER_LIP_UPPER, OUTER_LIP_UPPER], [INNER_LIP_LOWER, OUTER_LIP_LOWER]] as const) {
    for (let j = 2; j < inner.length - 2; j++) {
      const x = (lm[3 * inner[j]] + lm[3 * outer[j]]) / 2;
      const y = (lm[3 * inner[j] + 1] + lm[3 * outer[j] + 1]) / 2;
      ly += at(Y, x, y);
      lu += at(U, x / 2, y / 2);
      lv += at(V, x / 2, y / 2);
      n++;
    }
  }
  // cheek skin: a little outside the mouth corners
  const sx = (lm[3 * 205] + lm[3 * 425]) / 2;
  const sy = (lm[3 * 205 + 1] + lm[3 * 425 + 1]) / 2;
  return { lipY: ly / n, lipU: lu / n, lipV: lv / n, skinY: (at(Y, lm[3 * 205], lm[3 * 205 + 1]) + at(Y, lm[3 * 425], lm[3 * 425 + 1]) + at(Y, sx, sy)) / 3 };
}

/** Boundaries between teeth along the mouth (−1…1 corner to corner): incisors, laterals, canines. */
const TOOTH_EDGES = [0, 0.2, 0.38, 0.55];
const smooth = (e0: number, e1: number, x: number): number => {
  const t = Math.max(0, Math.min(1, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
};

/**
 * Shades the interior triangles `tris` (vertex indices into `t`) of the open mouth. The gap and the
 * tooth sizes are measured on the target mesh, so the teeth keep their size as the jaw drops.
 */
export function drawMouth(t: Pts, tris: Uint16Array, kinds: Uint8Array, kind: number, pal: MouthPalette, Y: Plane, U: Plane, V: Plane): void {
  const ux = t.x[MOUTH_MID[0]];
  const uy = t.y[MOUTH_MID[0]];
  const lx = t.x[MOUTH_MID[1]];
  const ly = t.y[MOUTH_MID[1]];
  const ax = t.x[MOUTH_CORNERS[0]];
  const ay = t.y[MOUTH_CORNERS[0]];
  const bx = t.x[MOUTH_CORNERS[1]];
  const by = t.y[MOUTH_CORNERS[1]];
  const mx = (ax + bx) / 2;
  const my = (ay + by) / 2;
  const wx = bx - ax;
  const wy = by - ay;
  const w2 = wx * wx + wy * wy || 1;
  const width = Math.sqrt(w2);
  const gap = Math.max(1, Math.hypot(lx - ux, ly - uy));
  const nx = (lx - ux) / gap;
  const ny = (ly - uy) / gap;
  // sizes in pixels, from the mouth's width: teeth are ~11 % of it tall, never more than the gap allows
  const upper = Math.min(0.11 * width, 0.55 * gap);
  const lower = Math.max(0, Math.min(0.07 * width, 0.45 * gap - 0.04 * width));
  const teethY = Math.max(135, Math.min(200, pal.skinY + 20));
  const throatY = Math.max(18, Math.min(48, pal.lipY * 0.28));
  const tongueY = Math.max(40, Math.min(95, pal.lipY * 0.55));
  // per pixel: s = depth below the upper lip (px), h = position along the mouth (−1…1)
  const coords = (x: number, y: number): [number, number] => [(x - ux) * nx + (y - uy) * ny, ((x - mx) * wx + (y - my) * wy) / (w2 / 2)];
  /** 0…1: how much of a tooth (vs the gap between two teeth) is at h. */
  const toothBody = (h: number): number => {
    const a = Math.abs(h);
    let d = 1;
    for (const e of TOOTH_EDGES) d = Math.min(d, Math.abs(a - e));
    return smooth(0.004, 0.03, d);
  };
  const shade = (x: number, y: number): number => {
    const [s, h] = coords(x, y);
    const side = Math.min(1, Math.abs(h));
    const dim = 1 - 0.55 * side * side; // the corners are in shadow
    // throat: darkest in the middle of the opening
    const depth = Math.max(0, Math.min(1, s / gap));
    let v = throatY * (0.8 + 0.4 * Math.abs(depth - 0.5)) * (1 + 0.3 * side);
    // tongue: a low mound in the lower half
    const tu = (depth - 0.95) / 0.45;
    const tongue = 1 - smooth(0.7, 1, Math.hypot(h / 0.6, tu));
    v += (tongueY * dim - v) * tongue * smooth(0.15, 0.6, gap / width);
    // teeth
    if (s < upper && side < 0.8) {
      const k = (1 - smooth(upper * 0.8, upper, s)) * (1 - smooth(0.65, 0.8, side));
      const lipShadow = 0.7 + 0.3 * smooth(0, 0.35 * upper, s);
      const tooth = teethY * dim * lipShadow * (0.88 + 0.12 * toothBody(h)) * (1 - 0.12 * (s / upper));
      v += (tooth - v) * k;
    }
    if (lower > 0 && s > gap - lower && side < 0.6) {
      const k = smooth(gap - lower, gap - lower * 0.7, s) * (1 - smooth(0.45, 0.6, side));
      v += (teethY * 0.8 * dim * (0.9 + 0.1 * toothBody(h)) - v) * k;
    }
    return v;
  };
  // chroma: teeth nearly neutral, throat and tongue in the lip's hue (deeper)
  const chroma = (x2: number, y2: number, c: number, neutral: number): number => {
    const [s, h] = coords(2 * x2, 2 * y2);
    const teeth = s < upper && Math.abs(h) < 0.75 ? 1 - smooth(upper * 0.8, upper, s) : 0;
    const tint = 128 + (c - 128) * 0.9;
    return tint + (neutral - tint) * teeth;
  };
  const shadeU = (x: number, y: number): number => chroma(x, y, pal.lipU, 124);
  const shadeV = (x: number, y: number): number => chroma(x, y, pal.lipV, 133);
  for (let k = 0; k < kinds.length; k++) {
    if (kinds[k] !== kind) continue;
    const a = tris[3 * k];
    const b = tris[3 * k + 1];
    const c = tris[3 * k + 2];
    shadeTriangle(Y, t.x[a], t.y[a], t.x[b], t.y[b], t.x[c], t.y[c], shade);
    shadeTriangle(U, t.x[a] / 2, t.y[a] / 2, t.x[b] / 2, t.y[b] / 2, t.x[c] / 2, t.y[c] / 2, shadeU);
    shadeTriangle(V, t.x[a] / 2, t.y[a] / 2, t.x[b] / 2, t.y[b] / 2, t.x[c] / 2, t.y[c] / 2, shadeV);
  }
}
