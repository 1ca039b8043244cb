// npm test: background — the model's inputs computed and compared, no clock to keep.
// X-Portrait's own inputs, as its inference prepares them: one calibration similarity from the
// first tracked driving frame to the portrait, applied to the whole of every later frame (the
// driver's head translation and roll reach the model's driving crop and patches — per-frame
// re-alignment would cancel them); eye/mouth patches of side S/4 with upstream's centre rounding
// and clipping; the model frame pasted whole (square output) or faded only at inner edges; the
// 16-position window refused beyond; both LCM timestep rules.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfig } from '../../server/config.ts';
import { XplError } from '../../server/errors.ts';
import { allocI420, type I420Frame, type RgbaImage } from '../../server/media/frame.ts';
import { rgbaToI420 } from '../../server/media/convert.ts';
import { loadImage } from '../../eval/make-driving.ts';
import { acquirePack } from '../../server/renderers/xportrait-lcm/pack-cache.ts';
import { applySim, invertSim, warpI420, type Similarity } from '../../server/renderers/xportrait-lcm/align.ts';
import { patchAround } from '../../server/renderers/xportrait-lcm/patches.ts';
import { buildPasteMap, modelSquare } from '../../server/renderers/xportrait-lcm/paste.ts';
import { createXportraitLcmRenderer } from '../../server/renderers/xportrait-lcm/index.ts';
import { DEFAULT_LCM_CONFIG, lcmConfigFromManifest, lcmTimesteps } from '../../server/schedulers/lcm.ts';
import { corruptCopy, pythonSkipReason, runPy, tinyPack } from './helpers.ts';

const skip = pythonSkipReason();
if (skip) console.log(`# skipping the pack-based fidelity tests: ${skip}`);

let dir = '';
let astronaut: RgbaImage;
before(async () => {
  astronaut = await loadImage(join(import.meta.dirname, '..', 'fixtures', 'astronaut.png'));
  if (!skip) dir = await tinyPack();
});

/** A W×H driving frame: the fixture portrait through `sim` (frame pixels → portrait pixels), as I420. */
function frameThrough(src: RgbaImage, sim: Similarity, W = 320, H = 240): I420Frame {
  const rgba: RgbaImage = { width: W, height: H, data: new Uint8Array(W * H * 4) };
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const [u, v] = applySim(sim, x + 0.5, y + 0.5);
      const sx = Math.min(src.width - 1, Math.max(0, Math.round(u - 0.5)));
      const sy = Math.min(src.height - 1, Math.max(0, Math.round(v - 0.5)));
      rgba.data.set(src.data.subarray((sy * src.width + sx) * 4, (sy * src.width + sx) * 4 + 4), (y * W + x) * 4);
    }
  }
  const f = allocI420(W, H);
  rgbaToI420(rgba, f);
  return f;
}

/** Mean abs difference of two S×S RGB crops over their central half (the head; the borders hold frame edges). */
const mad = (a: Uint8Array, b: Uint8Array, S = 64): number => {
  let s = 0;
  let n = 0;
  for (let y = S / 4; y < (3 * S) / 4; y++) {
    for (let x = S / 4; x < (3 * S) / 4; x++) {
      for (let c = 0; c < 3; c++) s += Math.abs(a[3 * (y * S + x) + c] - b[3 * (y * S + x) + c]);
      n += 3;
    }
  }
  return s / n;
};

/** a then b (q = b(a(p))). */
function compose(a: Similarity, b: Similarity): Similarity {
  return { ar: b.ar * a.ar - b.ai * a.ai, ai: b.ai * a.ar + b.ar * a.ai, bx: b.ar * a.bx - b.ai * a.by + b.bx, by: b.ai * a.bx + b.ar * a.by + b.by };
}

test('the driver’s head translation and roll reach the driving crop and the patches (one calibration for every frame)', { skip }, async () => {
  const r = await createXportraitLcmRenderer({ outputWidth: 256, outputHeight: 256, pack: dir, lcm: { steps: 1, skip: 0 } });
  try {
    const p = await r.prepare(astronaut);
    const scale = astronaut.width / 320; // the fixture fills the 320-wide frame
    const base: Similarity = { ar: scale, ai: 0, bx: 0, by: (astronaut.height - 240 * scale) / 2 };
    const out = allocI420(256, 256);
    let i = 0;
    const send = async (f: I420Frame) => {
      f.timestamp = 33 * i;
      await r.render(p, { frame: f, index: i++ }, out);
      return { driving: r.lastInput.driving.slice(), boxes: r.lastInput.boxes.map((b) => [...b]), cal: r.lastInput.calibration! };
    };
    const frameA = frameThrough(astronaut, base);
    const a = await send(frameA);
    assert.equal(r.stats.calibrations, 1);
    // moved: 24 px right, 12 px down, rolled 12° about the frame centre
    const th = (12 * Math.PI) / 180;
    const c = [160, 120];
    const move: Similarity = { ar: Math.cos(th), ai: Math.sin(th), bx: 0, by: 0 };
    move.bx = c[0] + 24 - (move.ar * c[0] - move.ai * c[1]);
    move.by = c[1] + 12 - (move.ai * c[0] + move.ar * c[1]);
    const frameB = frameThrough(astronaut, compose(invertSim(move), base));
    let b = await send(frameB);
    // the tracker smooths landmarks over time (One Euro): let it settle on the moved head
    for (let k = 0; k < 6; k++) b = await send(frameB);
    assert.equal(r.stats.calibrations, 1, 'no re-calibration: the same similarity for every frame');
    assert.deepEqual(b.cal, a.cal);
    // what the model must see: the moved frame through the calibration = frame A through (move⁻¹ ∘ cal⁻¹)
    const S = 64;
    const want = warpI420(frameA, compose(invertSim(a.cal), invertSim(move)), S);
    const err = mad(b.driving, want);
    const still = mad(b.driving, a.driving);
    assert.ok(err < 6, `the crop shows the moved head (mean abs diff ${err.toFixed(2)} to the expected crop)`);
    assert.ok(still > 3 * err, `… and differs from the calibration crop a per-frame re-alignment would give (${still.toFixed(2)})`);
    // the patches followed the eyes and mouth: each centre moved by the head motion mapped into the crop
    const moved = compose(compose(invertSim(a.cal), move), a.cal);
    for (let k = 0; k < 3; k++) {
      const ca = [(a.boxes[k][0] + a.boxes[k][2]) / 2, (a.boxes[k][1] + a.boxes[k][3]) / 2];
      const cb = [(b.boxes[k][0] + b.boxes[k][2]) / 2, (b.boxes[k][1] + b.boxes[k][3]) / 2];
      const [ex, ey] = applySim(moved, ca[0], ca[1]);
      assert.ok(Math.hypot(cb[0] - ex, cb[1] - ey) < 2.5, `patch ${k}: centre ${cb} vs expected ${[ex, ey].map((v) => v.toFixed(1))}`);
      assert.equal(b.boxes[k][2] - b.boxes[k][0], S / 4);
    }
    // re-calibration (reset) takes the current pose as the new reference
    r.reset!(p);
    const c2 = await send(frameB);
    assert.equal(r.stats.calibrations, 2);
    assert.ok(mad(c2.driving, a.driving) < still, 'after a reset the moved head is re-centred');
  } finally {
    await r.dispose();
  }
});

test('patches: squares of S/4 centred on the landmarks, centres on the 256² grid, kept S/8 from the border', () => {
  for (const S of [64, 512]) {
    const [x0, y0, x1, y1] = patchAround(S / 2 + 0.3, S / 3, S);
    assert.equal(x1 - x0, S / 4);
    assert.equal(y1 - y0, S / 4);
    assert.ok(Math.abs((x0 + x1) / 2 - S / 2) <= S / 256 + 0.5);
    const edge = patchAround(1, S - 1, S);
    assert.deepEqual(edge.slice(0, 2), [0, Math.floor((223 * S) / 256) - S / 8], 'centres clipped to 32..223 of 256');
    assert.ok(edge[3] <= S);
  }
  assert.deepEqual(patchAround(100.4, 200.6, 512), [36, 136, 164, 264]);
});

test('model frame: a square output is generated whole; a wide one fades only at the square’s inner edges', () => {
  const sq = modelSquare(256, 256, 128, 100, 64);
  const whole = buildPasteMap(256, 256, sq, 64);
  assert.equal(whole.index.length, 256 * 256);
  assert.equal(Math.min(...whole.weight), 1);
  const wide = modelSquare(320, 240, 300, 120, 64);
  assert.deepEqual([wide.x0, wide.y0, wide.side], [80, 0, 240], 'centred on the face as far as the frame allows');
  const m = buildPasteMap(320, 240, wide, 64);
  const w = (x: number, y: number) => m.weight[m.index.indexOf(y * 320 + x)];
  assert.equal(w(319, 0), 1, 'the right edge is the frame border: no fade');
  assert.ok(w(80, 120) < 0.05, 'the left edge is inside the frame: faded');
  assert.equal(w(200, 0), 1);
});

test('temporal window: more than 16 positions refused by the config, the exporter, the pack loader', { skip }, async () => {
  assert.throws(() => loadConfig(['--lcm-sink', '2', '--lcm-ring', '14'], {}), (e: unknown) => e instanceof XplError && /= 17: the temporal window may hold at most 16 positions/.test(e.message));
  assert.equal(loadConfig(['--lcm-sink', '1', '--lcm-ring', '14'], {}).help, false);
  const r = runPy(['-m', 'models.xportrait.export', '--tiny', '--sink', '1', '--ring', '15', '--out', '/tmp/xpl-never']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /sink \+ ring \+ 1 must be <= 16/);
  const bad = corruptCopy(dir, (_d, m) => {
    m.temporal_cache.sink_frames = 2;
    m.temporal_cache.ring_frames = 14;
    m.temporal_cache.slots = 16;
    return m;
  });
  await assert.rejects(acquirePack(bad), /temporal window of 17 positions .* exceeds the 16/);
});

test('LCM timesteps: skip-step and diffusers’ linspace rule, named in the manifest and checked', { skip }, () => {
  assert.deepEqual(lcmTimesteps(DEFAULT_LCM_CONFIG, 4, 'linspace'), [999, 759, 499, 259]);
  assert.deepEqual(lcmTimesteps(DEFAULT_LCM_CONFIG, 8, 'linspace'), [999, 879, 759, 639, 499, 379, 259, 139]);
  assert.deepEqual(lcmTimesteps(DEFAULT_LCM_CONFIG, 4, 'skip-step'), [999, 759, 519, 279]);
  assert.deepEqual(lcmTimesteps(DEFAULT_LCM_CONFIG, 2, 'linspace'), lcmTimesteps(DEFAULT_LCM_CONFIG, 2, 'skip-step'));
  const r = runPy(['-c', 'import json; from models.xportrait.stages import lcm_schedule; print(json.dumps(lcm_schedule(rule="linspace")[0]))']);
  assert.equal(r.status, 0, r.stderr);
  const sched = JSON.parse(r.stdout);
  assert.equal(sched.timestep_rule, 'linspace');
  const cfg = lcmConfigFromManifest(sched);
  assert.equal(cfg.timestepRule, 'linspace');
  for (const n of [1, 2, 4, 8]) assert.deepEqual(lcmTimesteps(cfg, n), sched.timesteps[String(n)], `${n} steps: exporter = runtime`);
  assert.throws(() => lcmConfigFromManifest({ ...sched, timestep_rule: 'skip-step' }), /timesteps\["4"\] = \[999,759,499,259\] differs from the LCM formula \[999,759,519,279\] \(rule skip-step\)/);
  assert.throws(() => lcmConfigFromManifest({ ...sched, timestep_rule: 'cosine' }), /timestep_rule "cosine" is not one of skip-step, linspace/);
});
