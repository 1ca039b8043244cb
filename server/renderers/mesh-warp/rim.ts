/**
 * The head's outline: the depth of the face's rim smoothed (so a turned head's outline does not
 * zigzag) and the fold repair of the background triangles around it (so hair and neck never turn
 * inside out at a large turn).
 */
import { NUM_LANDMARKS, SILHOUETTE } from '../../face/landmarks.ts';
import { KIND_BACK, type Rig, type Targets } from './rig.ts';

/**
 * The canonical shape with the depth of its outer band (beyond 85 % of the way to the silhouette)
 * smoothed: FaceMesh's contour points alternate in depth from one to the next, so a turned head's
 * outline would zigzag; each rim point takes the mean depth of its nearest neighbours instead (the
 * band keeps its overall depth, so a turn still reads as a turn).
 */
export function smoothRim(c: Float32Array): Float32Array {
  const out = Float32Array.from(c);
  let cx = 0;
  let cy = 0;
  for (const i of SILHOUETTE) {
    cx += c[3 * i] / SILHOUETTE.length;
    cy += c[3 * i + 1] / SILHOUETTE.length;
  }
  const sil = SILHOUETTE.map((i) => ({ a: Math.atan2(c[3 * i + 1] - cy, c[3 * i] - cx), r: Math.hypot(c[3 * i] - cx, c[3 * i + 1] - cy) }));
  // the silhouette's radius in the direction of a point (its nearest silhouette point by angle)
  const rim = (x: number, y: number): number => {
    const a = Math.atan2(y - cy, x - cx);
    let best = Infinity;
    let r = 1;
    for (const q of sil) {
      const d = Math.abs(Math.atan2(Math.sin(q.a - a), Math.cos(q.a - a)));
      if (d < best) {
        best = d;
        r = q.r;
      }
    }
    return r;
  };
  const band: number[] = [];
  for (let i = 0; i < NUM_LANDMARKS; i++) if (Math.hypot(c[3 * i] - cx, c[3 * i + 1] - cy) / rim(c[3 * i], c[3 * i + 1]) > 0.85) band.push(i);
  const K = 5;
  const near = band.map((i) =>
    band
      .map((j) => ({ j, d: Math.hypot(c[3 * i] - c[3 * j], c[3 * i + 1] - c[3 * j + 1]) }))
      .sort((p, q) => p.d - q.d)
      .slice(0, K)
      .map((e) => e.j),
  );
  const z = band.map((_, k) => near[k].reduce((sum, j) => sum + c[3 * j + 2], 0) / near[k].length);
  band.forEach((i, k) => (out[3 * i + 2] = z[k]));
  return out;
}

/** Relaxation passes of the fold repair. */
const UNFOLD_PASSES = 12;

/**
 * Fold repair: a background triangle that turned over (hair or neck folding over itself at a large
 * turn) gets its ring vertices pulled towards where the triangle's other two vertices say they
 * belong (the similarity that moves those two, applied to the ring vertex) — or, next to another
 * ring vertex and in the later passes, back towards rest — until no background triangle is folded. Face
 * landmarks and the border never move here. Returns the background triangles still folded.
 */
export function unfoldRings(rig: Rig, t: Targets): number {
  const { tris, kinds, sx, sy } = rig;
  let folded = 0;
  for (let pass = 0; pass < UNFOLD_PASSES; pass++) {
    folded = 0;
    for (let k = 0; k < kinds.length; k++) {
      if (kinds[k] !== KIND_BACK) continue;
      const v = [tris[3 * k], tris[3 * k + 1], tris[3 * k + 2]];
      const [a, b, c] = v;
      const sA = (sx[b] - sx[a]) * (sy[c] - sy[a]) - (sx[c] - sx[a]) * (sy[b] - sy[a]);
      const tA = (t.x[b] - t.x[a]) * (t.y[c] - t.y[a]) - (t.x[c] - t.x[a]) * (t.y[b] - t.y[a]);
      if (sA * tA > 0.05 * sA * sA) continue;
      folded++;
      for (let j = 0; j < 3; j++) {
        const r = v[j];
        if (r < rig.firstRing || r >= rig.firstBorder) continue;
        const p = v[(j + 1) % 3];
        const q = v[(j + 2) % 3];
        if (pass >= UNFOLD_PASSES / 2 || (p >= rig.firstRing && p < rig.firstBorder) || (q >= rig.firstRing && q < rig.firstBorder)) {
          // two ring vertices (neither is a reference for the other), or the similarity passes did
          // not settle it: ease this one back towards rest, where nothing is folded
          t.x[r] += (sx[r] - t.x[r]) * 0.3;
          t.y[r] += (sy[r] - t.y[r]) * 0.3;
          continue;
        }
        // similarity p,q (source) → p,q (target) as complex numbers: z' = tp + m·(z − sp)
        const ux = sx[q] - sx[p];
        const uy = sy[q] - sy[p];
        const vx = t.x[q] - t.x[p];
        const vy = t.y[q] - t.y[p];
        const d = ux * ux + uy * uy || 1;
        let mr = (vx * ux + vy * uy) / d;
        let mi = (vy * ux - vx * uy) / d;
        // two close or squashed reference points would extrapolate wildly: keep the scale sane
        const ms = Math.hypot(mr, mi);
        const clampS = Math.max(0.6, Math.min(1.5, ms));
        if (ms > 0) {
          mr *= clampS / ms;
          mi *= clampS / ms;
        }
        const wx = sx[r] - sx[p];
        const wy = sy[r] - sy[p];
        const ex = t.x[p] + mr * wx - mi * wy;
        const ey = t.y[p] + mi * wx + mr * wy;
        t.x[r] += (ex - t.x[r]) * 0.5;
        t.y[r] += (ey - t.y[r]) * 0.5;
      }
    }
    if (!folded) break;
  }
  return folded;
}
