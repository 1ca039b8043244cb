/**
 * The warp rig of one portrait: source planes at the output size, a triangle mesh over the whole
 * frame (468 face landmarks, 2 iris centres, two rings of points around the face so hair, neck and
 * background follow the head smoothly, and fixed points on the frame border), and the mapping from
 * a motion (relative pose, expression deltas, eyelids, gaze) to the mesh's target positions.
 */
import { CANONICAL_FACE } from '../../face/canonical-data.ts';
import {
  INNER_LIP_LOWER,
  INNER_LIP_UPPER,
  LEFT_EYE_CORNERS,
  LEFT_EYE_LOWER,
  LEFT_EYE_UPPER,
  MOUTH_MID,
  NUM_LANDMARKS,
  OUTER_LIP_LOWER,
  OUTER_LIP_UPPER,
  RIGHT_EYE_CORNERS,
  RIGHT_EYE_LOWER,
  RIGHT_EYE_UPPER,
  SILHOUETTE,
} from '../../face/landmarks.ts';
import { matMul, type Mat3 } from '../../face/pose.ts';
import type { FaceState, Point2 } from '../../face/types.ts';
import { constrainEdges, delaunay } from './delaunay.ts';
import { mouthPalette, type MouthPalette } from './mouth.ts';
import { smoothRim, unfoldRings } from './rim.ts';
import type { Plane } from './raster.ts';

export const IRIS_LEFT = NUM_LANDMARKS; // 468: subject's left iris centre
export const IRIS_RIGHT = NUM_LANDMARKS + 1; // 469
export const KIND_BACK = 0;
export const KIND_FACE = 1;
export const KIND_EYE = 2;
export const KIND_MOUTH = 3;

/** A head motion relative to the portrait as it is. */
export interface Motion {
  /** Rotation applied on top of the portrait's head rotation (image axes). */
  rotation: Mat3;
  /** Head translation in canonical units (eye-centre distances), image x/y. */
  tx: number;
  ty: number;
  /** Scale ratio. */
  scale: number;
  /** Canonical-frame landmark offsets added to the portrait's shape (468·3), or null. */
  expression: Float32Array | null;
  /** Eye openness relative to the portrait's own (1 = unchanged, 0 = closed): subject's left, right. */
  eyeLeft: number;
  eyeRight: number;
  /** Iris offset added to the portrait's, in eye widths (x along the eye, y across). */
  gazeX: number;
  gazeY: number;
}

const LOWER_LIP = new Set([...INNER_LIP_LOWER.slice(1, -1), ...OUTER_LIP_LOWER.slice(1, -1)]);
const UPPER_LIP = new Set([...INNER_LIP_UPPER, ...OUTER_LIP_UPPER]);
const MOUTH_Y = (CANONICAL_FACE[3 * MOUTH_MID[0] + 1] + CANONICAL_FACE[3 * MOUTH_MID[1] + 1]) / 2;
/**
 * Per landmark: share of a jaw drop it follows (1: lower lip and below, 0: upper lip and above).
 * Near the mouth a point goes with the lower lip when it lies below the line between the lips (the
 * inner lip points, upper and lower averaged, interpolated at its x), else with the upper one.
 */
const JAW_SHARE: Float32Array = (() => {
  const out = new Float32Array(NUM_LANDMARKS);
  const C = CANONICAL_FACE;
  const line = INNER_LIP_UPPER.map((u, j) => ({ x: (C[3 * u] + C[3 * INNER_LIP_LOWER[j]]) / 2, y: (C[3 * u + 1] + C[3 * INNER_LIP_LOWER[j] + 1]) / 2 })).sort((a, b) => a.x - b.x);
  const lineY = (x: number): number => {
    if (x <= line[0].x) return line[0].y;
    for (let j = 1; j < line.length; j++) {
      if (x <= line[j].x) return line[j - 1].y + ((x - line[j - 1].x) * (line[j].y - line[j - 1].y)) / (line[j].x - line[j - 1].x || 1);
    }
    return line[line.length - 1].y;
  };
  const halfWidth = (line[line.length - 1].x - line[0].x) / 2;
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    const x = C[3 * i];
    const y = C[3 * i + 1];
    const side = Math.max(0, 1 - Math.abs(x) / 1.3);
    let share: number;
    if (LOWER_LIP.has(i)) share = 1;
    else if (UPPER_LIP.has(i)) share = 0;
    else if (Math.abs(x) < halfWidth * 1.15 && Math.abs(y - MOUTH_Y) < 0.3) share = y > lineY(x) ? 1 : 0;
    else share = Math.max(0, Math.min(1, (y - MOUTH_Y) / 0.25));
    out[i] = share * side;
  }
  return out;
})();

/** Canonical-frame offsets of a jaw drop: the lower lip and the chin drop by 0.34·amount (eye distances), fading to the sides. */
export function jawOpenExpression(amount: number, out: Float32Array = new Float32Array(NUM_LANDMARKS * 3)): Float32Array {
  out.fill(0);
  for (let i = 0; i < NUM_LANDMARKS; i++) out[3 * i + 1] = 0.34 * amount * JAW_SHARE[i];
  return out;
}

export function identityMotion(): Motion {
  return { rotation: new Float64Array([1, 0, 0, 0, 1, 0, 0, 0, 1]), tx: 0, ty: 0, scale: 1, expression: null, eyeLeft: 1, eyeRight: 1, gazeX: 0, gazeY: 0 };
}

export interface Rig {
  width: number;
  height: number;
  y: Plane;
  u: Plane;
  v: Plane;
  face: FaceState;
  /** Vertex count and source positions (output pixels). */
  n: number;
  sx: Float64Array;
  sy: Float64Array;
  tris: Uint16Array;
  kinds: Uint8Array;
  /** Ring vertices: index of the silhouette landmark each follows, and how much (0..1). */
  ringFollow: Int16Array;
  ringWeight: Float32Array;
  firstRing: number;
  firstBorder: number;
  /** The portrait's canonical shape as the warp rotates it: its rim's depth smoothed (see smoothRim). */
  shape: Float32Array;
  /** Landmark − the smoothed shape at rest (output pixels), added back so the rest pose is the portrait exactly. */
  rimOffset: Float64Array;
  /** Face centre (mean of the silhouette), output pixels: the rings' radial directions. */
  centre: Point2;
  /** Portrait iris offsets (eye widths) from the eye centre: left x,y, right x,y. */
  irisOffset: Float64Array;
  /** Portrait mouth opening (inner gap / width). */
  mouthOpen: number;
  /** The portrait's mouth is open enough to show its own interior (teeth): warp it rather than draw one. */
  ownMouth: boolean;
  /** Lip and skin colours for a drawn interior. */
  palette: MouthPalette;
}

/** Inner-lip gap / mouth width above which a portrait's own mouth interior is used. */
const OWN_MOUTH = 0.12;

const RINGS: Array<[number, number]> = [
  [1.3, 0.85],
  [1.75, 0.4],
];
const BORDER_STEPS = 6;
/** Share of an inward silhouette motion the rings follow (outward motion is followed in full). */
const INWARD_FOLLOW = 0.4;

function inPolygon(x: number, y: number, px: number[], py: number[]): boolean {
  let inside = false;
  for (let i = 0, j = px.length - 1; i < px.length; j = i++) {
    if (py[i] > y !== py[j] > y && x < ((px[j] - px[i]) * (y - py[i])) / (py[j] - py[i]) + px[i]) inside = !inside;
  }
  return inside;
}

/** Builds the rig from a portrait already fitted to the output size and its face (landmarks in output pixels). */
export function buildRig(width: number, height: number, y: Plane, u: Plane, v: Plane, face: FaceState): Rig {
  const lm = face.landmarks;
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    xs.push(lm[3 * i]);
    ys.push(lm[3 * i + 1]);
  }
  const il = face.irisLeft ?? eyeCentre(lm, LEFT_EYE_CORNERS);
  const ir = face.irisRight ?? eyeCentre(lm, RIGHT_EYE_CORNERS);
  xs.push(il.x, ir.x);
  ys.push(il.y, ir.y);
  // rings around the face, following the silhouette outwards from the face centre
  let fcx = 0;
  let fcy = 0;
  for (const i of SILHOUETTE) {
    fcx += lm[3 * i] / SILHOUETTE.length;
    fcy += lm[3 * i + 1] / SILHOUETTE.length;
  }
  const firstRing = xs.length;
  const follow: number[] = [];
  const weight: number[] = [];
  for (const [k, w] of RINGS) {
    for (let j = 0; j < SILHOUETTE.length; j += k > 1.5 ? 2 : 1) {
      const i = SILHOUETTE[j];
      const x = fcx + (lm[3 * i] - fcx) * k;
      const yv = fcy + (lm[3 * i + 1] - fcy) * k;
      if (x < 2 || yv < 2 || x > width - 2 || yv > height - 2) continue;
      xs.push(x);
      ys.push(yv);
      follow.push(i);
      weight.push(w);
    }
  }
  const firstBorder = xs.length;
  for (let s = 0; s < BORDER_STEPS; s++) {
    const t = s / BORDER_STEPS;
    xs.push(t * width, width, (1 - t) * width, 0);
    ys.push(0, t * height, height, (1 - t) * height);
  }
  const irisOffset = new Float64Array(4);
  const ol = eyeFrameOffset(lm, LEFT_EYE_CORNERS, il);
  const or = eyeFrameOffset(lm, RIGHT_EYE_CORNERS, ir);
  irisOffset.set([ol.x, ol.y, or.x, or.y]);
  const rig: Rig = {
    width, height, y, u, v, face, n: xs.length,
    sx: Float64Array.from(xs), sy: Float64Array.from(ys),
    tris: new Uint16Array(0), kinds: new Uint8Array(0),
    ringFollow: Int16Array.from(follow), ringWeight: Float32Array.from(weight),
    firstRing, firstBorder, shape: smoothRim(face.canonical), rimOffset: new Float64Array(NUM_LANDMARKS * 3), centre: { x: fcx, y: fcy }, irisOffset, mouthOpen: face.mouthOpen,
    ownMouth: face.mouthOpen >= OWN_MOUTH, palette: mouthPalette(lm, y, u, v),
  };
  // what the smoothed shape misses of the landmarks at rest (zero but for the rim)
  const rest = allocTargets(rig);
  computeTargets(rig, identityMotion(), rest);
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    rig.rimOffset[3 * i] = lm[3 * i] - rest.x[i];
    rig.rimOffset[3 * i + 1] = lm[3 * i + 1] - rest.y[i];
  }
  // triangulate on "opened" positions (jaw dropped, eyes wide) so the eye and mouth interiors
  // get triangles of their own, spanning only lid / inner-lip points
  const opened = allocTargets(rig);
  computeTargets(rig, { ...identityMotion(), expression: jawOpenExpression(0.5), eyeLeft: 1.4, eyeRight: 1.4 }, opened);
  const tx = Array.from(opened.x);
  const ty = Array.from(opened.y);
  const tris = delaunay(tx, ty);
  const loops: Array<{ kind: number; loop: number[]; px: number[]; py: number[] }> = [];
  for (const [upper, lower] of [
    [LEFT_EYE_UPPER, LEFT_EYE_LOWER],
    [RIGHT_EYE_UPPER, RIGHT_EYE_LOWER],
  ] as const) {
    const loop = [...upper, ...lower.slice(1, -1).reverse()];
    loops.push({ kind: KIND_EYE, loop, px: loop.map((i) => tx[i]), py: loop.map((i) => ty[i]) });
  }
  // the mouth opening: triangles of inner-lip points inside the (opened) inner lip loop
  const lipLoop = [...INNER_LIP_UPPER, ...INNER_LIP_LOWER.slice(1, -1).reverse()];
  loops.push({ kind: KIND_MOUTH, loop: lipLoop, px: lipLoop.map((i) => tx[i]), py: lipLoop.map((i) => ty[i]) });
  // the rims of the openings are edges of the mesh, so no triangle straddles a lid or a lip
  const rims: Array<[number, number]> = [];
  for (const L of loops) L.loop.forEach((v, j) => rims.push([v, L.loop[(j + 1) % L.loop.length]]));
  constrainEdges(tris, tx, ty, rims);
  const kinds = new Uint8Array(tris.length / 3);
  for (let t = 0; t < kinds.length; t++) {
    const a = tris[3 * t];
    const b = tris[3 * t + 1];
    const c = tris[3 * t + 2];
    kinds[t] = a < firstRing && b < firstRing && c < firstRing ? KIND_FACE : KIND_BACK;
    // inside an opening by its centroid: FaceMesh puts some lip points within a pixel of the rim
    // of a closed mouth, so a triangle inside the opening need not be made of rim points only
    for (const L of loops) {
      if (kinds[t] === KIND_FACE && inPolygon((tx[a] + tx[b] + tx[c]) / 3, (ty[a] + ty[b] + ty[c]) / 3, L.px, L.py)) kinds[t] = L.kind;
    }
  }
  rig.tris = tris;
  rig.kinds = kinds;
  return rig;
}

function eyeCentre(lm: ArrayLike<number>, c: readonly [number, number]): Point2 {
  return { x: (lm[3 * c[0]] + lm[3 * c[1]]) / 2, y: (lm[3 * c[0] + 1] + lm[3 * c[1] + 1]) / 2 };
}

/** Offset of p from the eye centre in eye widths along (x: towards image right) and across the eye line. */
function eyeFrameOffset(lm: ArrayLike<number>, c: readonly [number, number], p: Point2): Point2 {
  let [a, b] = c;
  if (lm[3 * a] > lm[3 * b]) [a, b] = [b, a];
  const ex = lm[3 * b] - lm[3 * a];
  const ey = lm[3 * b + 1] - lm[3 * a + 1];
  const l2 = ex * ex + ey * ey || 1;
  const m = eyeCentre(lm, c);
  const dx = p.x - m.x;
  const dy = p.y - m.y;
  return { x: (dx * ex + dy * ey) / l2, y: (-dx * ey + dy * ex) / l2 };
}

export interface Targets {
  x: Float64Array;
  y: Float64Array;
  z: Float64Array;
}

export function allocTargets(rig: Rig): Targets {
  return { x: new Float64Array(rig.n), y: new Float64Array(rig.n), z: new Float64Array(rig.n) };
}

/** Target vertex positions (output pixels) for a motion. */
export function computeTargets(rig: Rig, m: Motion, out: Targets): void {
  const f = rig.face;
  const Rf = matMul(m.rotation, f.pose.rotation);
  const s = f.pose.scale * m.scale;
  const [t0, t1, t2] = f.pose.translation;
  const px = t0 + m.tx * f.pose.scale;
  const py = t1 + m.ty * f.pose.scale;
  const C = rig.shape;
  const E = m.expression;
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    let cx = C[3 * i];
    let cy = C[3 * i + 1];
    let cz = C[3 * i + 2];
    if (E) {
      cx += E[3 * i];
      cy += E[3 * i + 1];
      cz += E[3 * i + 2];
    }
    out.x[i] = s * (Rf[0] * cx + Rf[1] * cy + Rf[2] * cz) + px + rig.rimOffset[3 * i];
    out.y[i] = s * (Rf[3] * cx + Rf[4] * cy + Rf[5] * cz) + py + rig.rimOffset[3 * i + 1];
    out.z[i] = s * (Rf[6] * cx + Rf[7] * cy + Rf[8] * cz) + t2;
  }
  // eyelids: scale the lid gap about the lower lid
  lids(out, LEFT_EYE_UPPER, LEFT_EYE_LOWER, m.eyeLeft);
  lids(out, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, m.eyeRight);
  // irises: portrait offset + gaze, in the target eye frame; kept inside the eye
  iris(out, LEFT_EYE_CORNERS, LEFT_EYE_UPPER, LEFT_EYE_LOWER, IRIS_LEFT, rig.irisOffset[0] + m.gazeX, rig.irisOffset[1] + m.gazeY * m.eyeLeft);
  iris(out, RIGHT_EYE_CORNERS, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, IRIS_RIGHT, rig.irisOffset[2] + m.gazeX, rig.irisOffset[3] + m.gazeY * m.eyeRight);
  // rings follow the silhouette partially; the border stays. Towards the face centre a ring follows
  // less: on the far side of a turned head the silhouette swings inwards further than the face points
  // just inside it, and a ring that followed in full would overtake them and fold the hair over the face
  for (let k = rig.firstRing; k < rig.firstBorder; k++) {
    const i = rig.ringFollow[k - rig.firstRing];
    const w = rig.ringWeight[k - rig.firstRing];
    let dx = w * (out.x[i] - rig.sx[i]);
    let dy = w * (out.y[i] - rig.sy[i]);
    let nx = rig.sx[k] - rig.centre.x;
    let ny = rig.sy[k] - rig.centre.y;
    const nl = Math.hypot(nx, ny) || 1;
    nx /= nl;
    ny /= nl;
    const radial = dx * nx + dy * ny;
    if (radial < 0) {
      dx -= (1 - INWARD_FOLLOW) * radial * nx;
      dy -= (1 - INWARD_FOLLOW) * radial * ny;
    }
    out.x[k] = rig.sx[k] + dx;
    out.y[k] = rig.sy[k] + dy;
    out.z[k] = 1e9;
  }
  for (let k = rig.firstBorder; k < rig.n; k++) {
    out.x[k] = rig.sx[k];
    out.y[k] = rig.sy[k];
    out.z[k] = 1e9;
  }
  unfoldRings(rig, out);
}


function lids(t: Targets, upper: number[], lower: number[], k: number): void {
  if (k === 1) return;
  const f = Math.max(0, Math.min(1.4, k));
  const c = 1 - f; // closing amount (negative: opening wider)
  for (let j = 1; j < upper.length - 1; j++) {
    const u = upper[j];
    const l = lower[j];
    const gx = t.x[u] - t.x[l];
    const gy = t.y[u] - t.y[l];
    // the upper lid does most of the travel, the lower lid rises a little; new gap = f · gap
    const lo = c > 0 ? 0.2 : 0;
    t.x[l] += gx * c * lo;
    t.y[l] += gy * c * lo;
    t.x[u] -= gx * c * (1 - lo);
    t.y[u] -= gy * c * (1 - lo);
  }
}

/**
 * Places an iris vertex at (ox, oy) eye widths from the eye centre — kept inside the lids' current
 * opening (with a margin of a quarter of the gap each side), so no eye triangle folds over when
 * the lids close or the gaze goes far: a folded triangle would leave a hole in the eye.
 */
function iris(t: Targets, c: readonly [number, number], upper: number[], lower: number[], v: number, ox: number, oy: number): void {
  let [a, b] = c;
  if (t.x[a] > t.x[b]) [a, b] = [b, a];
  const ex = t.x[b] - t.x[a];
  const ey = t.y[b] - t.y[a];
  const l2 = ex * ex + ey * ey || 1;
  const mx = (t.x[a] + t.x[b]) / 2;
  const my = (t.y[a] + t.y[b]) / 2;
  const x = Math.max(-0.25, Math.min(0.25, ox));
  // the lids' across-eye coordinate at x (eye widths, + = image down)
  const across = (lid: number[]): number => {
    let best = 0;
    let bestD = Infinity;
    for (let j = 0; j + 1 < lid.length; j++) {
      const p = lid[j];
      const q = lid[j + 1];
      const pu = ((t.x[p] - mx) * ex + (t.y[p] - my) * ey) / l2;
      const qu = ((t.x[q] - mx) * ex + (t.y[q] - my) * ey) / l2;
      const pv = (-(t.x[p] - mx) * ey + (t.y[p] - my) * ex) / l2;
      const qv = (-(t.x[q] - mx) * ey + (t.y[q] - my) * ex) / l2;
      const lo = Math.min(pu, qu);
      const hi = Math.max(pu, qu);
      const d = x < lo ? lo - x : x > hi ? x - hi : 0;
      if (d < bestD) {
        bestD = d;
        best = hi - lo < 1e-9 ? (pv + qv) / 2 : pv + ((Math.max(lo, Math.min(hi, x)) - pu) * (qv - pv)) / (qu - pu);
      }
    }
    return best;
  };
  const top = across(upper);
  const bottom = across(lower);
  const gap = bottom - top;
  const y = gap <= 0 ? (top + bottom) / 2 : Math.max(top + 0.25 * gap, Math.min(bottom - 0.25 * gap, oy));
  t.x[v] = mx + x * ex - y * ey;
  t.y[v] = my + x * ey + y * ex;
  t.z[v] = (t.z[a] + t.z[b]) / 2;
}
