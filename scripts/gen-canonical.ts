/**
 * Generates server/face/canonical-data.ts: the canonical (mean, frontal, left/right-symmetric)
 * 468-point face shape used for head-pose fits and for the mesh-warp triangulation.
 *
 * Built from FaceMesh output on the two public-domain fixture portraits: each mesh is aligned to
 * the first (similarity fit), averaged, put into a face frame (x: subject's right→left eye
 * direction, y: forehead→chin, z: away from the camera; origin at the centroid), scaled so the
 * distance between the eye centres is 1, and made mirror-symmetric.
 *
 *   tsx scripts/gen-canonical.ts
 */
import sharp from 'sharp';
import { writeFileSync } from 'node:fs';
import { FaceDetector, roiFromDetection } from '../server/face/detector.ts';
import { FaceMesher } from '../server/face/mesh.ts';
import { fitSimilarity } from '../server/face/pose.ts';
import { LEFT_EYE_LOWER, LEFT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER } from '../server/face/landmarks.ts';

const det = await FaceDetector.create();
const mesher = await FaceMesher.create();
const meshes: Float32Array[] = [];
for (const f of ['astronaut.png', 'grace_hopper.jpg']) {
  const { data, info } = await sharp(new URL(`../test/fixtures/${f}`, import.meta.url).pathname).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const img = { kind: 'rgba' as const, width: info.width, height: info.height, data: new Uint8Array(data) };
  const [d] = await det.detect(img);
  let roi = roiFromDetection(d);
  let m = await mesher.landmarks(img, roi);
  // second pass from the landmarks' own box
  const { roiFromLandmarks } = await import('../server/face/tracker.ts');
  roi = roiFromLandmarks(m.landmarks);
  m = await mesher.landmarks(img, roi);
  meshes.push(Float64Array.from(m.landmarks) as unknown as Float32Array);
}
const N = 468;
const mean = new Float64Array(N * 3);
for (const m of meshes) {
  const s = fitSimilarity(m, meshes[0]);
  for (let i = 0; i < N; i++)
    for (let d = 0; d < 3; d++) {
      const v = s.scale * (s.rotation[d * 3] * m[3 * i] + s.rotation[d * 3 + 1] * m[3 * i + 1] + s.rotation[d * 3 + 2] * m[3 * i + 2]) + s.translation[d];
      mean[3 * i + d] += v / meshes.length;
    }
}
const P = (i: number): number[] => [mean[3 * i], mean[3 * i + 1], mean[3 * i + 2]];
const sub = (a: number[], b: number[]): number[] => a.map((v, k) => v - b[k]);
const dot = (a: number[], b: number[]): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const norm = (a: number[]): number[] => {
  const l = Math.hypot(a[0], a[1], a[2]);
  return a.map((v) => v / l);
};
const cross = (a: number[], b: number[]): number[] => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const pairs = [[33, 263], [133, 362], [61, 291], [234, 454], [93, 323], [132, 361], [58, 288], [172, 397], [136, 365], [150, 379], [149, 378], [176, 400], [148, 377], [70, 300], [105, 334], [107, 336]];
let xa = [0, 0, 0];
for (const [r, l] of pairs) xa = xa.map((v, k) => v + P(l)[k] - P(r)[k]);
xa = norm(xa);
let ya = sub(P(152), P(10));
ya = norm(sub(ya, xa.map((v) => v * dot(ya, xa))));
const za = cross(xa, ya);
const centroid = [0, 0, 0];
for (let i = 0; i < N; i++) for (let d = 0; d < 3; d++) centroid[d] += mean[3 * i + d] / N;
const eyeCentre = (ids: number[]): number[] => {
  const c = [0, 0, 0];
  for (const i of ids) for (let d = 0; d < 3; d++) c[d] += mean[3 * i + d] / ids.length;
  return c;
};
const iod = Math.hypot(...sub(eyeCentre([...LEFT_EYE_UPPER, ...LEFT_EYE_LOWER]), eyeCentre([...RIGHT_EYE_UPPER, ...RIGHT_EYE_LOWER])));
const canon = new Float64Array(N * 3);
for (let i = 0; i < N; i++) {
  const v = sub(P(i), centroid);
  canon[3 * i] = dot(v, xa) / iod;
  canon[3 * i + 1] = dot(v, ya) / iod;
  canon[3 * i + 2] = dot(v, za) / iod;
}
// mirror pairs by nearest neighbour of the reflected shape; symmetrise
const mirror = new Int32Array(N);
for (let i = 0; i < N; i++) {
  let best = -1;
  let bd = Infinity;
  for (let j = 0; j < N; j++) {
    const d = (canon[3 * j] + canon[3 * i]) ** 2 + (canon[3 * j + 1] - canon[3 * i + 1]) ** 2 + (canon[3 * j + 2] - canon[3 * i + 2]) ** 2;
    if (d < bd) {
      bd = d;
      best = j;
    }
  }
  mirror[i] = best;
}
const sym = new Float64Array(N * 3);
for (let i = 0; i < N; i++) {
  const j = mirror[i];
  const consistent = mirror[j] === i;
  if (!consistent) {
    sym.set(canon.subarray(3 * i, 3 * i + 3), 3 * i);
    continue;
  }
  sym[3 * i] = (canon[3 * i] - canon[3 * j]) / 2;
  sym[3 * i + 1] = (canon[3 * i + 1] + canon[3 * j + 1]) / 2;
  sym[3 * i + 2] = (canon[3 * i + 2] + canon[3 * j + 2]) / 2;
  if (j === i) sym[3 * i] = 0;
}
const r4 = (v: number): number => Math.round(v * 1e4) / 1e4;
const body = Array.from(sym, r4).join(',');
const mir = Array.from(mirror).join(',');
writeFileSync(
  new URL('../server/face/canonical-data.ts', import.meta.url).pathname,
  `/**\n * Canonical 468-point face shape (x,y,z interleaved; x: subject's right→left, y: down, z: away from\n * the camera; unit = distance between the eye centres). Generated by scripts/gen-canonical.ts from\n * FaceMesh output on the public-domain fixture portraits — do not edit by hand.\n */\nexport const CANONICAL_FACE = new Float32Array([${body}]);\n\n/** Mirror partner of each landmark (itself on the mid-line). */\nexport const MIRROR = new Int16Array([${mir}]);\n`,
);
console.log(`wrote canonical-data.ts (iod ${iod.toFixed(1)} px in the reference image)`);
