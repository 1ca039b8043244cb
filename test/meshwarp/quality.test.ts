/**
 * mesh-warp quality gates on real footage (talk-a: a man talking to his webcam, test/fixtures/clips)
 * and on a short scripted driving sequence (grace_hopper.jpg animated by
 * eval/make-driving's machinery, at 320×240 @ 15 fps) driving astronaut.png at 384². The bounds
 * sit ~1.5–2× above the values measured when they were set (see each message), so a real
 * regression fails while run-to-run noise does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { synthesiseDriving } from '../../eval/make-driving.ts';
import { evaluate, type EvalResult } from '../../eval/metrics.ts';
import type { ScriptFrame } from '../../eval/script.ts';
import { createMeshWarpRenderer } from '../../server/renderers/mesh-warp/index.ts';
import { allocI420, planes } from '../../server/media/frame.ts';
import { XplError } from '../../server/errors.ts';
import { fixture, loadRgba } from '../face/support.ts';
import { loadClip } from '../../eval/clip.ts';

test('quality on a real clip: pose, mouth, eyes, framing, identity and jitter within the goals', async () => {
  const clip = await loadClip(fixture('clips/talk-a.jpg').pathname);
  const { aggregate: a } = await evaluate({ portrait: await loadRgba(fixture('astronaut.png')), frames: clip.frames.slice(0, 120), size: 256, still: clip.still, identityStride: 10, keepOutputs: false });
  console.log(JSON.stringify(a));
  assert.equal(a.outputTracked, a.frames, 'output face tracked in every frame');
  assert.ok(a.poseError < 3, `pose error ${a.poseError.toFixed(2)}° < 3°`);
  assert.ok(a.mouthCorrelation > 0.8, `mouth openness correlation ${a.mouthCorrelation.toFixed(3)} > 0.8`);
  assert.ok(a.eyeError < 0.03, `eye openness error ${a.eyeError.toFixed(4)} < 0.03`);
  assert.ok(a.outputFaceFraction >= 0.3, `default framing: face ${a.outputFaceFraction.toFixed(2)} of the width`);
  assert.ok(a.identityCentred > 0.6, `identity (centred cosine) ${a.identityCentred.toFixed(3)} > 0.6`);
  assert.ok(a.jitterLandmarks <= a.driverJitterLandmarks * 1.5, `still driver: output landmark motion ${a.jitterLandmarks.toFixed(4)} ≤ 1.5 × the driver's own ${a.driverJitterLandmarks.toFixed(4)}`);
  // the goal, read through one fixed crop per side (eval/jitter.ts; measured 0.44 at 256²), and the
  // warp's own vertices, no tracker (measured 0.35 of the driver's raw noise)
  assert.ok(a.jitterFixedCrop <= a.driverJitterFixedCrop, `still driver, fixed crop: output ${a.jitterFixedCrop.toFixed(4)} ≤ the driver's ${a.driverJitterFixedCrop.toFixed(4)}`);
  assert.ok(a.jitterMesh <= a.driverJitterLandmarks * 0.7, `still driver: the warp's face vertices move ${a.jitterMesh.toFixed(4)} ≤ 0.7 × the driver's noise ${a.driverJitterLandmarks.toFixed(4)}`);
});

function shortScript(): ScriptFrame[] {
  const s: ScriptFrame[] = [];
  const z = { yaw: 0, pitch: 0, roll: 0, blink: 0, smile: 0, mouth: 0 };
  for (let k = 0; k < 10; k++) s.push({ ...z }); // still: calibration + jitter
  for (let k = 0; k < 10; k++) s.push({ ...z, yaw: 15 * Math.sin((Math.PI * 2 * k) / 10) });
  for (let k = 0; k < 6; k++) s.push({ ...z, pitch: 10 * Math.sin((Math.PI * 2 * k) / 6), roll: 8 * Math.sin((Math.PI * 2 * k) / 6) });
  for (let k = 0; k < 6; k++) s.push({ ...z, blink: Math.sin((Math.PI * k) / 5) });
  for (let k = 0; k < 14; k++) s.push({ ...z, mouth: Math.max(0, Math.sin((Math.PI * 2 * k) / 14)), smile: k > 7 ? 0.6 : 0 });
  return s;
}

let cached: Promise<EvalResult> | null = null;
function run(): Promise<EvalResult> {
  cached ??= (async () => {
    const script = shortScript();
    const frames = await synthesiseDriving(await loadRgba(fixture('grace_hopper.jpg')), script, 320, 240, 15);
    return evaluate({ portrait: await loadRgba(fixture('astronaut.png')), frames, script, size: 384, identityStride: 6, still: [0, 10] });
  })();
  return cached;
}

test('quality: tracking, identity, expression, pose, openness and jitter stay within bounds', async () => {
  const { aggregate: a } = await run();
  console.log(JSON.stringify(a));
  assert.equal(a.driverTracked, a.frames, 'driver face tracked in every frame');
  assert.equal(a.outputTracked, a.frames, 'output face tracked in every frame');
  assert.ok(a.identityCentred > 0.6, `identity stays the portrait's: centred cosine ${a.identityCentred.toFixed(3)} > 0.6`);
  assert.ok(a.identityPortrait > a.identityDriver, 'output closer to the portrait than to the driver');
  assert.ok(a.expressionError < 0.03, `expression error ${a.expressionError.toFixed(4)} < 0.03 IOD`);
  assert.ok(a.eyeError < 0.06, `eye openness error ${a.eyeError.toFixed(4)} < 0.06`);
  assert.ok(a.mouthError < 0.06, `mouth openness error ${a.mouthError.toFixed(4)} < 0.06`);
  assert.ok(a.poseError < 6, `pose error ${a.poseError.toFixed(2)}° < 6°`);
  assert.ok(a.trackerPoseError !== null && a.trackerPoseError < 6, `driver tracker vs script ${a.trackerPoseError}° < 6°`);
  assert.ok(a.jitterY < 0.5, `jitter on a still driver ${a.jitterY.toFixed(3)} < 0.5 grey levels`);
});

test('quality: output mouth openness follows the driver over the scripted sequence', async () => {
  const r = await run();
  // measured 0.58 when set (FaceMesh on the output under-reads the synthesised interior; see report)
  assert.ok(r.aggregate.mouthCorrelation > 0.45, `correlation ${r.aggregate.mouthCorrelation.toFixed(3)} > 0.45`);
  // and the mouth really opens: the widest output opening is well above neutral
  const maxOut = Math.max(...r.frames.map((f) => f.outputMouth ?? 0));
  assert.ok(maxOut > 0.035, `max output mouth opening change ${maxOut.toFixed(3)} > 0.035 (measured 0.052)`);
});

test('renderer: no face in the portrait → no_face; params validated; lost driver eases to neutral', async () => {
  const r = await createMeshWarpRenderer({ outputWidth: 256, outputHeight: 256 });
  await assert.rejects(r.prepare(await loadRgba(fixture('coffee.png'))), (e: unknown) => e instanceof XplError && e.code === 'no_face');
  assert.throws(() => r.setParams!({ poseGain: -1 }), XplError);
  assert.throws(() => r.setParams!({ bogus: 1 } as never), XplError);
  r.setParams!({ expressionGain: 1.2, smoothing: 0.3, gaze: false });

  const portrait = await loadRgba(fixture('astronaut.png'));
  const p = await r.prepare(portrait);
  // the portrait's own rest image: a render with the identity motion ≈ the framed portrait
  const ref = allocI420(256, 256);
  planes(ref).y.set(p.rig.y.data);
  const script = shortScript();
  const drv = await synthesiseDriving(await loadRgba(fixture('grace_hopper.jpg')), script, 320, 240, 15);
  const out = allocI420(256, 256);
  const diff = (): number => {
    const a = planes(out).y;
    const b = planes(ref).y;
    let s = 0;
    for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
    return s / a.length;
  };
  for (let k = 0; k < 10; k++) await r.render(p, { frame: drv[k], index: k }, out);
  const still = diff();
  assert.ok(still < 2, `neutral driver → portrait unchanged (mean |ΔY| ${still.toFixed(2)})`);
  // mouth wide open (frame 35 of the script) → output differs
  await r.render(p, { frame: drv[35], index: 35 }, out);
  const open = diff();
  assert.ok(open > still + 0.3, `mouth open changes the output (${open.toFixed(2)} vs ${still.toFixed(2)})`);
  // then no face: held for 500 ms, then eased back to neutral
  const blank = allocI420(320, 240);
  planes(blank).y.fill(100);
  planes(blank).u.fill(128);
  planes(blank).v.fill(128);
  const t0 = drv[35].timestamp;
  await r.render(p, { frame: { ...blank, timestamp: t0 + 200 }, index: 41 }, out);
  const held = diff();
  assert.ok(Math.abs(held - open) < 0.3, `held last good state (${held.toFixed(2)} vs ${open.toFixed(2)})`);
  await r.render(p, { frame: { ...blank, timestamp: t0 + 3000 }, index: 42 }, out);
  const eased = diff();
  assert.ok(eased < still + 0.3, `eased back to neutral (${eased.toFixed(2)})`);
  await r.dispose();
});
