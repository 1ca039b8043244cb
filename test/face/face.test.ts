/** Face detection, tracking and geometry on the fixture portraits. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectFace, FaceTracker, analyzeLandmarks } from '../../server/face/tracker.ts';
import { CANONICAL_FACE } from '../../server/face/canonical-data.ts';
import { eulerToMat, fitSimilarity, matToEuler, rotationDistanceDeg } from '../../server/face/pose.ts';
import { allocI420 } from '../../server/media/frame.ts';
import { rgbaToI420 } from '../../server/media/convert.ts';
import { fixture, loadRgba, shifted } from './support.ts';

test('detectFace: no face in coffee.png', async () => {
  assert.equal(await detectFace(await loadRgba(fixture('coffee.png'))), null);
});

test('detectFace: a face in astronaut.png and grace_hopper.jpg, where it is', async () => {
  // approximate face boxes read off the images (x0, y0, x1, y1)
  const expect: Record<string, [number, number, number, number]> = {
    'astronaut.png': [170, 60, 290, 200],
    'grace_hopper.jpg': [170, 130, 370, 360],
  };
  for (const [name, [x0, y0, x1, y1]] of Object.entries(expect)) {
    const f = await detectFace(await loadRgba(fixture(name)));
    assert.ok(f, `${name}: face found`);
    const cx = f.box.x + f.box.width / 2;
    const cy = f.box.y + f.box.height / 2;
    assert.ok(cx > x0 && cx < x1 && cy > y0 && cy < y1, `${name}: box centre (${cx.toFixed(0)}, ${cy.toFixed(0)}) inside the face`);
    assert.ok(f.box.width > (x1 - x0) * 0.6 && f.box.width < (x1 - x0) * 1.4, `${name}: box width ${f.box.width.toFixed(0)}`);
    assert.ok(f.confidence > 0.9, `${name}: mesh confidence ${f.confidence}`);
    // a frontal portrait: small angles, eyes open, irises inside the eyes
    assert.ok(Math.abs(f.pose.yaw) < 20 && Math.abs(f.pose.roll) < 15, `${name}: pose ${JSON.stringify([f.pose.yaw, f.pose.pitch, f.pose.roll])}`);
    assert.ok(f.eyeOpenLeft > 0.12 && f.eyeOpenRight > 0.12, `${name}: eyes open ${f.eyeOpenLeft} ${f.eyeOpenRight}`);
    assert.ok(Math.abs(f.gaze.x) < 0.2 && Math.abs(f.gaze.y) < 0.2, `${name}: gaze ${JSON.stringify(f.gaze)}`);
  }
});

test('pose: Euler round trip and similarity fit recover a known transform', () => {
  for (const [y, p, r] of [[0, 0, 0], [25, -10, 5], [-30, 15, -12], [10, 20, 30]]) {
    const e = matToEuler(eulerToMat(y, p, r));
    assert.ok(Math.abs(e.yaw - y) < 1e-6 && Math.abs(e.pitch - p) < 1e-6 && Math.abs(e.roll - r) < 1e-6, `euler ${[y, p, r]} → ${JSON.stringify(e)}`);
  }
  const R = eulerToMat(20, -12, 8);
  const dst = new Float32Array(CANONICAL_FACE.length);
  for (let i = 0; i < 468; i++)
    for (let d = 0; d < 3; d++)
      dst[3 * i + d] = 55 * (R[3 * d] * CANONICAL_FACE[3 * i] + R[3 * d + 1] * CANONICAL_FACE[3 * i + 1] + R[3 * d + 2] * CANONICAL_FACE[3 * i + 2]) + [200, 150, 10][d];
  const s = fitSimilarity(CANONICAL_FACE, dst);
  assert.ok(Math.abs(s.scale - 55) < 1e-3, `scale ${s.scale}`);
  assert.ok(rotationDistanceDeg(s.rotation, R) < 1e-3, 'rotation');
  assert.ok(Math.abs(s.translation[0] - 200) < 1e-2 && Math.abs(s.translation[1] - 150) < 1e-2, 'translation');
  const a = analyzeLandmarks(dst, null, null);
  assert.ok(Math.abs(a.pose.yaw - 20) < 0.01 && Math.abs(a.pose.pitch + 12) < 0.01 && Math.abs(a.pose.roll - 8) < 0.01, JSON.stringify(a.pose));
  let maxExpr = 0;
  for (const v of a.expression) maxExpr = Math.max(maxExpr, Math.abs(v));
  assert.ok(maxExpr < 1e-3, `a rigidly moved canonical face has no expression (${maxExpr})`);
});

test('FaceTracker: follows a moving face, detects once, reads I420 like RGBA', async () => {
  const base = await loadRgba(fixture('astronaut.png'));
  const tracker = await FaceTracker.create();
  let prevCx = -1;
  for (let k = 0; k < 8; k++) {
    const s = await tracker.track(shifted(base, 4 * k, 2 * k), k * 33.3);
    assert.ok(s, `frame ${k}: tracked`);
    assert.equal(s.redetected, k === 0, `frame ${k}: detector only on the first frame`);
    const cx = s.rawLandmarks[3 * 1];
    if (k > 0) assert.ok(Math.abs(cx - prevCx - 4) < 1.5, `frame ${k}: nose moved ${cx - prevCx} px (expected 4)`);
    prevCx = cx;
  }
  assert.equal(tracker.detections, 1);
  // lost: a frame with no face → null, then the face again → re-detected
  assert.equal(await tracker.track(await loadRgba(fixture('coffee.png')), 400), null);
  const again = await tracker.track(base, 433);
  assert.ok(again && again.redetected);

  // I420 input gives the same landmarks as RGBA (within colour-conversion noise)
  const t2 = await FaceTracker.create({ iris: false });
  const yuv = allocI420(base.width, base.height);
  rgbaToI420(base, yuv);
  const a = await (await FaceTracker.create({ iris: false })).track(base, 0);
  const b = await t2.trackImage({ kind: 'i420', width: yuv.width, height: yuv.height, data: yuv.data }, 0);
  assert.ok(a && b);
  let err = 0;
  for (let i = 0; i < 468 * 3; i += 3) err += Math.hypot(a.landmarks[i] - b.landmarks[i], a.landmarks[i + 1] - b.landmarks[i + 1]);
  assert.ok(err / 468 < 1.5, `mean landmark difference I420 vs RGBA ${(err / 468).toFixed(2)} px`);
});

test('FaceTracker: smoothing removes jitter on a still face', async () => {
  const base = await loadRgba(fixture('grace_hopper.jpg'));
  const tracker = await FaceTracker.create({ iris: false });
  const noseX: number[] = [];
  const rawX: number[] = [];
  for (let k = 0; k < 10; k++) {
    // ±1 px alternating shake of the input: the smoothed nose should move much less than the raw one
    const s = await tracker.track(shifted(base, k % 2, 0), k * 33.3);
    assert.ok(s);
    noseX.push(s.landmarks[3]);
    rawX.push(s.rawLandmarks[3]);
  }
  const amp = (a: number[]): number => a.slice(4).reduce((m, v, i, arr) => (i ? Math.max(m, Math.abs(v - arr[i - 1])) : m), 0);
  assert.ok(amp(rawX) > 0.5, `raw landmarks follow the shake (${amp(rawX)})`);
  assert.ok(amp(noseX) < amp(rawX) * 0.6, `smoothed ${amp(noseX).toFixed(2)} < 0.6 × raw ${amp(rawX).toFixed(2)}`);
});
