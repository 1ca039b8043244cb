/** Bowyer–Watson Delaunay triangulation of 2-D points (a few hundred; runs once per portrait). */
export function delaunay(xs: ArrayLike<number>, ys: ArrayLike<number>): Uint16Array {
  const n = xs.length;
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (let i = 0; i < n; i++) {
    minX = Math.min(minX, xs[i]); maxX = Math.max(maxX, xs[i]);
    minY = Math.min(minY, ys[i]); maxY = Math.max(maxY, ys[i]);
  }
  const d = Math.max(maxX - minX, maxY - minY) * 20 + 1;
  const mx = (minX + maxX) / 2;
  const my = (minY + maxY) / 2;
  const px = Float64Array.from({ length: n + 3 }, (_, i) => (i < n ? xs[i] : [mx - d, mx, mx + d][i - n]));
  const py = Float64Array.from({ length: n + 3 }, (_, i) => (i < n ? ys[i] : [my - d, my + d, my - d][i - n]));
  type Tri = { a: number; b: number; c: number; cx: number; cy: number; r2: number };
  const make = (a: number, b: number, c: number): Tri => {
    const ax = px[a], ay = py[a], bx = px[b], by = py[b], cx = px[c], cy = py[c];
    const D = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by));
    const ux = ((ax * ax + ay * ay) * (by - cy) + (bx * bx + by * by) * (cy - ay) + (cx * cx + cy * cy) * (ay - by)) / D;
    const uy = ((ax * ax + ay * ay) * (cx - bx) + (bx * bx + by * by) * (ax - cx) + (cx * cx + cy * cy) * (bx - ax)) / D;
    return { a, b, c, cx: ux, cy: uy, r2: (ax - ux) ** 2 + (ay - uy) ** 2 };
  };
  let tris: Tri[] = [make(n, n + 1, n + 2)];
  for (let i = 0; i < n; i++) {
    const x = px[i], y = py[i];
    const bad: Tri[] = [];
    const keep: Tri[] = [];
    for (const t of tris) ((x - t.cx) ** 2 + (y - t.cy) ** 2 < t.r2 * (1 + 1e-12) ? bad : keep).push(t);
    const edges = new Map<string, [number, number]>();
    for (const t of bad)
      for (const [u, v] of [[t.a, t.b], [t.b, t.c], [t.c, t.a]]) {
        const k = u < v ? `${u},${v}` : `${v},${u}`;
        if (edges.has(k)) edges.delete(k);
        else edges.set(k, [u, v]);
      }
    for (const [u, v] of edges.values()) keep.push(make(u, v, i));
    tris = keep;
  }
  const out: number[] = [];
  for (const t of tris) if (t.a < n && t.b < n && t.c < n) out.push(t.a, t.b, t.c);
  return Uint16Array.from(out);
}

/** True when segments p1p2 and p3p4 cross at a point inside both (not at a shared end). */
function crosses(xs: ArrayLike<number>, ys: ArrayLike<number>, p1: number, p2: number, p3: number, p4: number): boolean {
  if (p1 === p3 || p1 === p4 || p2 === p3 || p2 === p4) return false;
  const o = (a: number, b: number, c: number): number => (xs[b] - xs[a]) * (ys[c] - ys[a]) - (ys[b] - ys[a]) * (xs[c] - xs[a]);
  return o(p1, p2, p3) * o(p1, p2, p4) < 0 && o(p3, p4, p1) * o(p3, p4, p2) < 0;
}

/**
 * Makes each constraint edge (a loop of the eye or mouth opening) an edge of the triangulation by
 * flipping the diagonals that cross it (Sloan's method), so no triangle straddles an opening's rim.
 * Changes `tris` in place; a constraint that cannot be recovered is left as Delaunay made it.
 */
export function constrainEdges(tris: Uint16Array, xs: ArrayLike<number>, ys: ArrayLike<number>, edges: Array<[number, number]>): void {
  const nt = tris.length / 3;
  const hasEdge = (a: number, b: number): boolean => {
    for (let t = 0; t < nt; t++) {
      const p = tris[3 * t], q = tris[3 * t + 1], r = tris[3 * t + 2];
      if ((p === a || q === a || r === a) && (p === b || q === b || r === b)) return true;
    }
    return false;
  };
  for (const [a, b] of edges) {
    for (let guard = 0; guard < 4 * nt && !hasEdge(a, b); guard++) {
      let flipped = false;
      for (let t = 0; t < nt && !flipped; t++) {
        for (let e = 0; e < 3 && !flipped; e++) {
          const c = tris[3 * t + e];
          const d = tris[3 * t + ((e + 1) % 3)];
          if (!crosses(xs, ys, a, b, c, d)) continue;
          const f = tris[3 * t + ((e + 2) % 3)];
          // the other triangle on edge c-d
          for (let u = 0; u < nt && !flipped; u++) {
            if (u === t) continue;
            const v = [tris[3 * u], tris[3 * u + 1], tris[3 * u + 2]];
            if (!v.includes(c) || !v.includes(d)) continue;
            const g = v.find((x) => x !== c && x !== d)!;
            // the quad f-c-g-d must be convex for the flip: f and g on opposite sides of c-d, c and d on opposite sides of f-g
            if (!crosses(xs, ys, f, g, c, d)) continue;
            // keep each triangle's orientation: (f, c, g) and (f, g, d) as the original (f, c, d) winding
            tris.set([c, g, f], 3 * t);
            tris.set([g, d, f], 3 * u);
            flipped = true;
          }
        }
      }
      if (!flipped) break;
    }
  }
}
