/** Renders a rig at target positions into an I420 frame: the piecewise-affine warp plus the mouth interior. */
import { planes, type I420Frame } from '../../media/frame.ts';
import { drawMouth } from './mouth.ts';
import { triangleAffine, warpTriangle, type Plane } from './raster.ts';
import { KIND_BACK, KIND_EYE, KIND_MOUTH, type Rig, type Targets } from './rig.ts';

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
  // the portrait at rest underneath: a pixel no triangle covers (a collapsed eye or mouth
  // triangle) shows the portrait, never the frame's zero bytes (green in YUV)
  oy.set(rig.y.data);
  ou.set(rig.u.data);
  ov.set(rig.v.data);
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
  // a closed-mouth portrait has no interior to stretch: it is drawn instead
  const mouthSynth = !rig.ownMouth;
  let nOrder = 0;
  for (let k = 0; k < nt; k++) {
    const a = tris[3 * k];
    const b = tris[3 * k + 1];
    const c = tris[3 * k + 2];
    // folded (back-facing) triangles are drawn too, far to near like the rest: where nearer ones
    // cover them they vanish, and where nothing does — the far side of a turned head — they fill
    // what would otherwise be a hole with the face's own edge rather than the portrait at rest
    valid[k] = triangleAffine(tx[a], ty[a], tx[b], ty[b], tx[c], ty[c], sx[a], sy[a], sx[b], sy[b], sx[c], sy[c], coef, 6 * k) ? 1 : 0;
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
    warpTriangle(rig.u, U, cc, o, tx[a] / 2, ty[a] / 2, tx[b] / 2, ty[b] / 2, tx[c] / 2, ty[c] / 2, rig.v, V);
    cc[o + 2] = c2;
    cc[o + 5] = f2;
  }
  if (mouthSynth) drawMouth(t, rig.tris, rig.kinds, KIND_MOUTH, rig.palette, Y, U, V);
}
