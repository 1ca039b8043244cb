// npm test: background — two engines' frames compared, no clock to keep.
// The torch engine (worker process, models/xportrait/engine/serve.py) against the onnx engine (the tiny
// pack on onnxruntime-node), CPU, same weights (seed 1), same noise, same inputs: equal frames
// at 1, 2 and 4 steps with stream batch off and on, init from the portrait latent, classifier-free
// guidance, the bidirectional warm-up window, and two sessions batched into one call; the in-place cache equals the ONNX graph's shifted cache slot
// for slot; a portrait change resets a stream; two streams stay independent. The engine's own
// checks (models/xportrait/engine/selftest.py): in-place cache = full causal recompute, CFG's
// unconditional branch = the plain UNet, the SDPA path = the plain path, window guard.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { lcmDefaults, type LcmSettings } from '../../server/config.ts';
import type { LoadedPack } from '../../server/renderers/xportrait-lcm/pack.ts';
import { acquirePack, releasePack } from '../../server/renderers/xportrait-lcm/pack-cache.ts';
import { LcmPipeline } from '../../server/renderers/xportrait-lcm/pipeline.ts';
import { localCanvas, type PatchBox } from '../../server/renderers/xportrait-lcm/patches.ts';
import { rgbToChw } from '../../server/renderers/xportrait-lcm/pixels.ts';
import { closeTorchWorkers, ensureTorchWorker, type TorchWorkerHost } from '../../server/renderers/xportrait-lcm/torch/host.ts';
import { TorchStream, type TorchStreamOptions } from '../../server/renderers/xportrait-lcm/torch/stream.ts';
import { maxAbsDiff, PY, randomImage, runPy, tinyPack, torchSkipReason } from './helpers.ts';

const skip = torchSkipReason();
if (skip) console.log(`# skipping torch engine tests: ${skip}`);

const S = 64;
const IMG = 3 * S * S;
const BOXES: PatchBox[] = [[8, 16, 24, 32], [40, 16, 56, 32], [24, 40, 40, 56]];
const rgb = (seed: number): Uint8Array => Uint8Array.from(randomImage(IMG, seed), (v) => Math.round((v + 1) * 127.5));
const frames = (n: number, seed: number) => Array.from({ length: n }, (_, f) => rgb(seed * 1000 + f + 1));

let pack: LoadedPack;
let host: TorchWorkerHost;
// batchWait: two streams that push together share one call (one stream alone never waits)
const settings: LcmSettings = { ...lcmDefaults(), engine: 'torch', weights: 'tiny', device: 'cpu', python: PY, threads: 1, batchWait: 100 };

before(async () => {
  if (skip) return;
  pack = await acquirePack(await tinyPack());
  host = await ensureTorchWorker(settings);
});

after(async () => {
  if (skip) return;
  await releasePack(pack);
  await closeTorchWorkers();
});

function torchOpts(o: Partial<TorchStreamOptions>): TorchStreamOptions {
  return { steps: 2, stream_batch: false, seed: 1, noise: 'fixed', cfg: 1, init: 'noise', rule: 'skip-step', decoder: 'taesd', output: 'f32', warmup: 0, ...o };
}

async function torchStream(o: Partial<TorchStreamOptions>, portrait: Uint8Array): Promise<TorchStream> {
  const s = await TorchStream.open({ socket: host.socket, weights: 'tiny', attachTimeoutMs: 30_000, stream: torchOpts(o) });
  await s.useReference(await s.encodeReference(portrait));
  return s;
}

async function onnxRun(o: { steps: number; streamBatch?: boolean; init?: 'noise' | 'portrait'; cfg?: number; warmup?: number }, portrait: Uint8Array, input: Uint8Array[]) {
  const p = new LcmPipeline(pack, o);
  await p.setReference(await p.encode(rgbToChw(portrait, S)));
  const out: Array<{ frame: number; image: Float32Array } | null> = [];
  for (const d of input) {
    const c = rgbToChw(d, S);
    out.push(await p.push(c, localCanvas(c, S, BOXES)));
  }
  p.dispose();
  return out;
}

for (const steps of [1, 2, 4]) {
  for (const sb of steps > 1 ? [false, true] : [false]) {
    test(`torch engine = onnx engine, ${steps} step${steps > 1 ? 's' : ''}, stream batch ${sb ? 'on' : 'off'}`, { skip }, async () => {
      const portrait = rgb(99);
      const input = frames(steps + 4, steps);
      const want = await onnxRun({ steps, streamBatch: sb }, portrait, input);
      const s = await torchStream({ steps, stream_batch: sb }, portrait);
      try {
        for (let f = 0; f < input.length; f++) {
          const r = await s.push(input[f], BOXES);
          if (!want[f]) {
            assert.equal(r, null, `push ${f}: filling`);
            continue;
          }
          assert.ok(r, `push ${f}: a frame (the worker was restarted ${host.restarts} times)`);
          assert.equal(r.frame, want[f]!.frame);
          const err = maxAbsDiff(r.raw!, want[f]!.image);
          assert.ok(err <= 1e-4, `frame ${r.frame}: max abs diff ${err}`);
        }
        // stream batch: one call over every step in flight; off: one call per step
        assert.deepEqual(s.lastBatch, { streams: 1, rows: steps, calls: sb ? 1 : steps });
      } finally {
        await s.dispose();
      }
    });
  }
}

test('torch engine = onnx engine with the initial latent from the portrait (upstream x_T)', { skip }, async () => {
  const portrait = rgb(98);
  const input = frames(4, 7);
  const want = await onnxRun({ steps: 2, init: 'portrait' }, portrait, input);
  const plain = await onnxRun({ steps: 2 }, portrait, input);
  const s = await torchStream({ steps: 2, init: 'portrait' }, portrait);
  try {
    for (let f = 0; f < input.length; f++) {
      const r = await s.push(input[f], BOXES);
      assert.ok(maxAbsDiff(r!.raw!, want[f]!.image) <= 1e-4, `frame ${f}: ${maxAbsDiff(r!.raw!, want[f]!.image)}`);
    }
    assert.ok(maxAbsDiff(want[0]!.image, plain[0]!.image) > 1e-4, 'the portrait latent changes the result');
  } finally {
    await s.dispose();
  }
});

test('classifier-free guidance (g = 2.5, unconditional twin batched with the conditional row): torch engine = onnx engine', { skip }, async () => {
  const portrait = rgb(90);
  const input = frames(4, 8);
  const want = await onnxRun({ steps: 2, cfg: 2.5 }, portrait, input);
  const plain = await onnxRun({ steps: 2 }, portrait, input);
  const s = await torchStream({ steps: 2, cfg: 2.5 }, portrait);
  try {
    for (let f = 0; f < input.length; f++) {
      const r = await s.push(input[f], BOXES);
      assert.ok(maxAbsDiff(r!.raw!, want[f]!.image) <= 1e-4, `frame ${f}: ${maxAbsDiff(r!.raw!, want[f]!.image)}`);
    }
    assert.deepEqual(s.lastBatch, { streams: 1, rows: 4, calls: 2 }, 'each step: the conditional row and its twin in one call');
    assert.ok(maxAbsDiff(want[3]!.image, plain[3]!.image) > 1e-4, 'guidance changes the result');
  } finally {
    await s.dispose();
  }
});

test('two sessions batched into one call give each its own onnx frames', { skip }, async () => {
  const pa = rgb(97), pb = rgb(96);
  const ia = frames(5, 11), ib = frames(5, 12);
  const wa = await onnxRun({ steps: 2, streamBatch: true }, pa, ia);
  const wb = await onnxRun({ steps: 2, streamBatch: true }, pb, ib);
  const a = await torchStream({ steps: 2, stream_batch: true }, pa);
  const b = await torchStream({ steps: 2, stream_batch: true }, pb);
  try {
    let shared = 0;
    for (let f = 0; f < ia.length; f++) {
      const [ra, rb] = await Promise.all([a.push(ia[f], BOXES), b.push(ib[f], BOXES)]);
      if (a.lastBatch.streams === 2 && b.lastBatch.streams === 2) shared++;
      for (const [r, w] of [[ra, wa[f]], [rb, wb[f]]] as const) {
        if (!w) {
          assert.equal(r, null);
          continue;
        }
        assert.ok(maxAbsDiff(r!.raw!, w.image) <= 1e-4, `frame ${w.frame}: ${maxAbsDiff(r!.raw!, w.image)}`);
      }
    }
    assert.equal(shared, ia.length, 'every frame of both sessions ran in one batched call');
    assert.deepEqual(a.lastBatch, { streams: 2, rows: 4, calls: 1 }, '2 sessions × 2 steps in one call');
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

test('in-place cache = the onnx graph’s shifted cache, slot for slot; a new portrait resets the stream', { skip }, async () => {
  const portrait = rgb(95);
  const input = frames(7, 13);
  const p = new LcmPipeline(pack, { steps: 2 });
  await p.setReference(await p.encode(rgbToChw(portrait, S)));
  const s = await torchStream({ steps: 2 }, portrait);
  try {
    for (let f = 0; f < input.length; f++) {
      const c = rgbToChw(input[f], S);
      await p.push(c, localCanvas(c, S, BOXES));
      await s.push(input[f], BOXES);
      for (const k of [0, 1]) {
        const want = await p.inspectCache(k);
        const got = await s.inspectCache(k);
        assert.deepEqual(Array.from(got.mask), Array.from(want.mask), `frame ${f} step ${k} mask`);
        const err = maxAbsDiff(got.cache, want.cache);
        assert.ok(err <= 1e-4, `frame ${f} step ${k}: cache max abs diff ${err}`);
      }
    }
    await s.useReference(await s.encodeReference(rgb(94)));
    assert.deepEqual(Array.from((await s.inspectCache(0)).mask), [0, 0, 0, 0], 'new portrait: empty caches');
  } finally {
    p.dispose();
    await s.dispose();
  }
});

test('two torch streams interleaved are independent (each equals its solo run)', { skip }, async () => {
  const pa = rgb(93), pb = rgb(92);
  const ia = frames(4, 21), ib = frames(4, 22);
  const solo = await torchStream({ steps: 2 }, pa);
  const alone: Float32Array[] = [];
  for (const d of ia) alone.push((await solo.push(d, BOXES))!.raw!);
  await solo.dispose();
  const a = await torchStream({ steps: 2 }, pa);
  const b = await torchStream({ steps: 2, noise: 'fresh', seed: 5 }, pb);
  try {
    for (let f = 0; f < ia.length; f++) {
      const ra = await a.push(ia[f], BOXES);
      const rb = await b.push(ib[f], BOXES);
      assert.equal(maxAbsDiff(ra!.raw!, alone[f]), 0, `frame ${f}: session A unaffected by B`);
      assert.ok(maxAbsDiff(ra!.raw!, rb!.raw!) > 1e-3);
    }
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

test('engine internals: in-place cache = full causal recompute (sink/ring 1+3, 2+2, 0+4, 1+14), CFG unconditional row = plain UNet, SDPA path = plain path, window over 16 refused', { skip }, () => {
  const r = runPy(['-m', 'models.xportrait.engine.selftest'], 300_000);
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
  for (const [split, c] of Object.entries(res.cache) as Array<[string, { max_abs_err: number; max_abs_eps: number; frames: number }]>) {
    assert.ok(c.max_abs_err <= 1e-5, `${split}: in-place vs full recompute ${c.max_abs_err}`);
    assert.ok(c.max_abs_eps > 0.1, `${split}: a real signal`);
  }
  assert.equal(res.cache.s1r14.frames, 18, 'the 16-position window ran past its warm-up');
  assert.ok(res.cfg.max_abs_err_uncond_vs_plain <= 1e-5, `uncond row vs plain UNet: ${res.cfg.max_abs_err_uncond_vs_plain}`);
  assert.ok(res.cfg.min_cond_uncond_gap > 1e-2, 'the conditional row differs (reference + control)');
  assert.equal(res.sdpa.fused_on, true);
  assert.ok(res.sdpa.emulated_calls > 0 || res.sdpa.native_sdpa, 'the SDPA path ran');
  assert.ok(res.sdpa.max_abs_err <= 1e-5, `SDPA vs plain: ${res.sdpa.max_abs_err}`);
  assert.equal(res.window.refused, true);
  assert.match(res.window.message, /17 exceeds the 16 positions/);
  assert.ok(res.warmup.max_abs_err <= 1e-5, `warm-up window vs full clip attention: ${res.warmup.max_abs_err}`);
  assert.deepEqual(res.warmup.qpos, [2, 3, 4], 'the window’s frames at the positions just before and at the current one');
  assert.equal(res.warmup.next_visible, 4, 'the next frame sees the 3 warm-up frames and itself');
  assert.equal(res.warmup.refused_too_long, true);
});

for (const sb of [false, true]) {
  test(`bidirectional warm-up window (3 frames, stream batch ${sb ? 'on' : 'off'}): torch engine = onnx engine (denoise_window); held frames, then streaming`, { skip }, async () => {
    const portrait = rgb(91);
    const input = frames(6, 31);
    const want = await onnxRun({ steps: 2, warmup: 3, streamBatch: sb }, portrait, input);
    const plain = await onnxRun({ steps: 2, streamBatch: sb }, portrait, input);
    const warm = await torchStream({ steps: 2, warmup: 3, stream_batch: sb }, portrait);
    try {
      for (let f = 0; f < input.length; f++) {
        const w = await warm.push(input[f], BOXES);
        if (!want[f]) {
          assert.equal(w, null, `push ${f}: held for the window (or the stream batch filling)`);
          continue;
        }
        assert.equal(w!.frame, want[f]!.frame);
        assert.ok(maxAbsDiff(w!.raw!, want[f]!.image) <= 1e-4, `frame ${w!.frame}: ${maxAbsDiff(w!.raw!, want[f]!.image)}`);
        if (f === 2) assert.deepEqual(warm.lastBatch, { streams: 1, rows: 6, calls: 2 }, 'the 3 frames at each of the 2 steps in one call');
      }
      assert.deepEqual(want.map((r) => r?.frame ?? null), sb ? [null, null, 2, null, 3, 4] : [null, null, 2, 3, 4, 5]);
      assert.ok(maxAbsDiff(want[2]!.image, plain[2]!.image) > 1e-4, 'the window changes the result');
    } finally {
      await warm.dispose();
    }
  });
}
