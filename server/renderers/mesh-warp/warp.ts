/** Renders a rig at target positions into an I420 frame: the piecewise-affine warp plus the mouth interior. */
import { planes, type I420Frame } from '../../media/frame.ts';
import { MOUTH_CORNERS, MOUTH_MID } from '../../face/landmarks.ts';
import { shadeTriangle, triangleAffine, warpTriangle, type Plane } from './raster.ts';
import { KIND_BACK, KIND_EYE, KIND_MOUTH, targetMouthOpen, type Rig, type Targets } from './rig.ts';

export interface WarpScratch {
  coef: Float64Array;
  valid: Uint8Array;
  order: Uint16Array;
  depth: Float64Array;
}

export function allocScratch(rig: Rig): WarpScratch {
  const nt = rig.tris.length / 3;
  return { coef: new Float64Array(nt * 6), valid: new Uint8Array(nt), order: new Uint16Array(nt), depth: new Float64Array(nt) };
}

export function warpFrame(rig: Rig, t: Targets, out: I420Frame, sc: WarpScratch): void {
  if (out.width !== rig.width || out.height !== rig.height) throw new Error(`output ${out.width}×${out.height} differs from the rig's ${rig.width}×${rig.height}`);
  const { y: oy, u: ou, v: ov, cw, ch } = planes(out);
  const Y: Plane = { data: oy, width: out.width, height: out.height };
  const U: Plane = { data: ou, width: cw, height: ch };
  const V: Plane = { data: ov, width: cw, height: ch };
  const tris = rig.tris;
  const nt = tris.length / 3;
  const { coef, valid, order, depth } = sc;
  const sx = rig.sx;
  const sy = rig.sy;
  const tx = t.x;
  const ty = t.y;
  const mouthSynth = targetMouthOpen(t) > rig.mouthOpen + 0.03;
  let nOrder = 0;
  for (let k = 0; k < nt; k++) {
    const a = tris[3 * k];
    const b = tris[3 * k + 1];
    const c = tris[3 * k + 2];
    // back-facing (folded) triangles are hidden by their neighbours
    const sArea = (sx[b] - sx[a]) * (sy[c] - sy[a]) - (sx[c] - sx[a]) * (sy[b] - sy[a]);
    const tArea = (tx[b] - tx[a]) * (ty[c] - ty[a]) - (tx[c] - tx[a]) * (ty[b] - ty[a]);
    valid[k] = sArea * tArea > 0 && triangleAffine(tx[a], ty[a], tx[b], ty[b], tx[c], ty[c], sx[a], sy[a], sx[b], sy[b], sx[c], sy[c], coef, 6 * k) ? 1 : 0;
    if (!valid[k]) continue;
    order[nOrder++] = k;
    const kind = rig.kinds[k];
    // painter's order: background, then eye/mouth interiors, then face triangles far → near
    depth[k] = kind === KIND_BACK ? 3e9 : kind === KIND_EYE || kind === KIND_MOUTH ? 2e9 : (t.z[a] + t.z[b] + t.z[c]) / 3;
  }
  const ord = order.subarray(0, nOrder);
  ord.sort((p, q) => depth[q] - depth[p]);
  for (let j = 0; j < nOrder; j++) {
    const k = ord[j];
    const a = tris[3 * k];
    const b = tris[3 * k + 1];
    const c = tris[3 * k + 2];
    if (mouthSynth && rig.kinds[k] === KIND_MOUTH) continue;
    const o = 6 * k;
    warpTriangle(rig.y, Y, coef, o, tx[a], ty[a], tx[b], ty[b], tx[c], ty[c]);
    // chroma: same map at half scale (a, b, d, e unchanged; offsets halved)
    const cc = coef;
    const c2 = cc[o + 2];
    const f2 = cc[o + 5];
    cc[o + 2] = c2 / 2;
    cc[o + 5] = f2 / 2;
    warpTriangle(rig.u, U, cc, o, tx[a] / 2, ty[a] / 2, tx[b] / 2, ty[b] / 2, tx[c] / 2, ty[c] / 2);
    warpTriangle(rig.v, V, cc, o, tx[a] / 2, ty[a] / 2, tx[b] / 2, ty[b] / 2, tx[c] / 2, ty[c] / 2);
    cc[o + 2] = c2;
    cc[o + 5] = f2;
  }
  if (mouthSynth) drawMouth(rig, t, Y, U, V);
}

/**
 * Synthesised mouth interior: dark, warm throat shading, darker towards the centre of the
 * opening, an upper-teeth band under the upper lip and a hint of lower teeth — no driver pixels.
 */
function drawMouth(rig: Rig, t: Targets, Y: Plane, U: Plane, V: Plane): void {
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
  const gap = Math.hypot(lx - ux, ly - uy) || 1;
  const nx = (lx - ux) / gap;
  const ny = (ly - uy) / gap;
  const width = Math.sqrt(w2);
  // teeth height ~ 9% of the mouth width, but never more than 40% of the opening
  const teeth = Math.min(0.06 * width, 0.35 * gap);
  const lowTeeth = Math.min(0.05 * width, 0.2 * gap);
  // per pixel: s = across (0 at upper lip, gap at lower lip), h = along (−1..1)
  const shadeY = (x: number, y: number): number => {
    const s = (x - ux) * nx + (y - uy) * ny;
    const h = ((x - mx) * wx + (y - my) * wy) / (w2 / 2);
    const edge = Math.min(1, Math.abs(h));
    const rel = s / gap;
    if (s < teeth * (1 - 0.6 * edge * edge) && Math.abs(h) < 0.7) return 185 - 70 * edge * edge - 30 * (s / teeth);
    if (s > gap - lowTeeth && Math.abs(h) < 0.5) return 120 - 50 * edge;
    return 28 + 22 * Math.abs(rel - 0.5) + 20 * edge;
  };
  const shadeU = (x: number, y: number): number => {
    const s = (2 * x - ux) * nx + (2 * y - uy) * ny;
    return s < teeth ? 126 : 118;
  };
  const shadeV = (x: number, y: number): number => {
    const s = (2 * x - ux) * nx + (2 * y - uy) * ny;
    return s < teeth ? 130 : 150;
  };
  const tris = rig.tris;
  for (let k = 0; k < rig.kinds.length; k++) {
    if (rig.kinds[k] !== KIND_MOUTH) continue;
    const a = tris[3 * k];
    const b = tris[3 * k + 1];
    const c = tris[3 * k + 2];
    shadeTriangle(Y, t.x[a], t.y[a], t.x[b], t.y[b], t.x[c], t.y[c], shadeY);
    shadeTriangle(U, t.x[a] / 2, t.y[a] / 2, t.x[b] / 2, t.y[b] / 2, t.x[c] / 2, t.y[c] / 2, shadeU);
    shadeTriangle(V, t.x[a] / 2, t.y[a] / 2, t.x[b] / 2, t.y[b] / 2, t.x[c] / 2, t.y[c] / 2, shadeV);
  }
}
