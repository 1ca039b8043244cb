/**
 * Warp artefacts: no background triangle folds over at ±30° yaw (hair and neck never turn inside
 * out), the eyes never show a colour the portrait's eyes do not have (the "green dot": a pixel no
 * triangle covered kept the frame's zero bytes, green in YUV) through blinks and gaze extremes, and
 * the drawn mouth interior stays in the portrait's own hues.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LEFT_EYE_LOWER, LEFT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER } from '../../server/face/landmarks.ts';
import { eulerToMat } from '../../server/face/pose.ts';
import { allocI420, planes } from '../../server/media/frame.ts';
import { preparePortrait } from '../../server/renderers/mesh-warp/portrait.ts';
import { computeTargets, identityMotion, jawOpenExpression, KIND_BACK, type Motion, type Rig, type Targets } from '../../server/renderers/mesh-warp/rig.ts';
import { warpFrame } from '../../server/renderers/mesh-warp/warp.ts';
import { fixture, loadRgba } from '../face/support.ts';

const SIZE = 256;

/** Area (px²) of the background triangles whose orientation flipped between the portrait and the target. */
function foldedBackground(rig: Rig, t: Targets): number {
  let n = 0;
  for (let k = 0; k < rig.kinds.length; k++) {
    if (rig.kinds[k] !== KIND_BACK) continue;
    const a = rig.tris[3 * k];
    const b = rig.tris[3 * k + 1];
    const c = rig.tris[3 * k + 2];
    const s = (rig.sx[b] - rig.sx[a]) * (rig.sy[c] - rig.sy[a]) - (rig.sx[c] - rig.sx[a]) * (rig.sy[b] - rig.sy[a]);
    const d = (t.x[b] - t.x[a]) * (t.y[c] - t.y[a]) - (t.x[c] - t.x[a]) * (t.y[b] - t.y[a]);
    if (s * d < 0) n += Math.abs(d) / 2;
  }
  return n;
}

const motion = (yaw: number, pitch: number, extra: Partial<Motion> = {}): Motion => ({ ...identityMotion(), rotation: eulerToMat(yaw, pitch, 0), ...extra });

// a sliver where two face-edge points cross may remain (measured ≤ 3 px² at 256²); a fold of hair or
// neck is tens to hundreds of px² (the renderer before issue 13: up to 13 folded triangles at 30°)
const MAX_FOLDED = 8;

test('fold check: no background triangle folds over at ±30° yaw, ±15° pitch, with the mouth open', async () => {
  for (const file of ['astronaut.png', 'closeup.jpg', 'grace_hopper.jpg', 'mona_lisa.jpg']) {
    const p = await preparePortrait(await loadRgba(fixture(file)), SIZE, SIZE, { framing: 'head', zoom: 1 });
    for (const [yaw, pitch] of [[30, 0], [-30, 0], [0, 15], [0, -15], [25, 10], [-25, -10]]) {
      computeTargets(p.rig, motion(yaw, pitch, { expression: jawOpenExpression(0.8) }), p.targets);
      const folded = foldedBackground(p.rig, p.targets);
      assert.ok(folded <= MAX_FOLDED, `${file} at yaw ${yaw}°, pitch ${pitch}°: ${folded.toFixed(1)} px² of background folded`);
    }
  }
});

test('green-dot case: through blinks and gaze extremes no eye pixel leaves the portrait eyes\' colour range', async () => {
  const p = await preparePortrait(await loadRgba(fixture('astronaut.png')), SIZE, SIZE, { framing: 'head', zoom: 1 });
  const { rig } = p;
  // the eye regions: boxes around the lids (output pixels), a little wider than the lids travel
  const box = (x: ArrayLike<number>, y: ArrayLike<number>, pts: number[]): [number, number, number, number] => {
    const xs = pts.map((i) => x[i]);
    const ys = pts.map((i) => y[i]);
    return [Math.floor(Math.min(...xs)) - 2, Math.floor(Math.min(...ys)) - 3, Math.ceil(Math.max(...xs)) + 2, Math.ceil(Math.max(...ys)) + 3];
  };
  const eyes = [[...LEFT_EYE_UPPER, ...LEFT_EYE_LOWER], [...RIGHT_EYE_UPPER, ...RIGHT_EYE_LOWER]];
  // the portrait's own chroma range over its eye regions (with a margin for interpolation)
  let uLo = 255, uHi = 0, vLo = 255, vHi = 0;
  for (const pts of eyes) {
    const [x0, y0, x1, y1] = box(rig.sx, rig.sy, pts);
    for (let y = y0 >> 1; y <= y1 >> 1; y++)
      for (let x = x0 >> 1; x <= x1 >> 1; x++) {
        const u = rig.u.data[y * rig.u.width + x];
        const v = rig.v.data[y * rig.v.width + x];
        uLo = Math.min(uLo, u); uHi = Math.max(uHi, u); vLo = Math.min(vLo, v); vHi = Math.max(vHi, v);
      }
  }
  const M = 6;
  const cases: Array<[string, Motion]> = [];
  for (const eye of [1.4, 1, 0.5, 0.15, 0]) for (const [gx, gy] of [[0, 0], [0.6, 0], [-0.6, 0], [0, 0.5], [0, -0.5], [0.5, 0.4]]) cases.push([`eyes ${eye}, gaze ${gx},${gy}`, motion(0, 0, { eyeLeft: eye, eyeRight: eye, gazeX: gx, gazeY: gy })]);
  cases.push(['turned, half closed, looking aside', motion(25, -8, { eyeLeft: 0.4, eyeRight: 0.6, gazeX: -0.6, gazeY: 0.3 })]);
  for (const [what, m] of cases) {
    computeTargets(rig, m, p.targets);
    const out = allocI420(SIZE, SIZE); // zero bytes: green, where nothing is written
    warpFrame(rig, p.targets, out, p.scratch);
    const { u, v, cw } = planes(out);
    for (const pts of eyes) {
      const [x0, y0, x1, y1] = box(p.targets.x, p.targets.y, pts);
      for (let y = y0 >> 1; y <= y1 >> 1; y++)
        for (let x = x0 >> 1; x <= x1 >> 1; x++) {
          const U = u[y * cw + x];
          const V = v[y * cw + x];
          assert.ok(U >= uLo - M && U <= uHi + M && V >= vLo - M && V <= vHi + M, `${what}: eye pixel (${2 * x}, ${2 * y}) U ${U} V ${V} outside the portrait's eye range U ${uLo}..${uHi} V ${vLo}..${vHi}`);
        }
    }
  }
});

test('drawn mouth: a closed-mouth portrait opens into its own lip hue with teeth, no driver pixels involved', async () => {
  const p = await preparePortrait(await loadRgba(fixture('grace_hopper.jpg')), SIZE, SIZE, { framing: 'head', zoom: 1 });
  assert.equal(p.rig.ownMouth, false, 'grace_hopper has her mouth closed: the interior is drawn');
  computeTargets(p.rig, motion(0, 0, { expression: jawOpenExpression(1) }), p.targets);
  const out = allocI420(SIZE, SIZE);
  warpFrame(p.rig, p.targets, out, p.scratch);
  const { y, v, cw } = planes(out);
  // sample the opening down its middle, from the upper to the lower inner lip
  const [ux, uy, lx, ly] = [p.targets.x[13], p.targets.y[13], p.targets.x[14], p.targets.y[14]];
  const lum: number[] = [];
  for (let k = 1; k < 10; k++) {
    const x = Math.round(ux + ((lx - ux) * k) / 10);
    const yy = Math.round(uy + ((ly - uy) * k) / 10);
    lum.push(y[yy * SIZE + x]);
    const V = v[(yy >> 1) * cw + (x >> 1)];
    assert.ok(V >= 128 && V <= Math.max(p.rig.palette.lipV, 128) + 20, `interior hue V ${V} near the lips' ${p.rig.palette.lipV.toFixed(0)}`);
  }
  assert.ok(lum[0] > 110, `teeth under the upper lip (Y ${lum[0]})`);
  assert.ok(Math.min(...lum) < 60, `a dark throat (min Y ${Math.min(...lum)})`);
  // the astronaut smiles with her teeth showing: her own interior is kept
  const a = await preparePortrait(await loadRgba(fixture('astronaut.png')), SIZE, SIZE, { framing: 'head', zoom: 1 });
  assert.equal(a.rig.ownMouth, true);
});
