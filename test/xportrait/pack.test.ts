// npm test: background — torch/onnxruntime parity and an export, no clock to keep.
// Tiny X-Portrait pack: torch <-> onnxruntime parity of every stage, manifest consistency, and
// exactness of the rolling temporal cache (streamed ONNX denoise vs full causal recompute). The
// pack is the one the xportrait-lcm tests share (test/lcm/helpers.ts: exported once per machine,
// with test vectors and a 3-frame warm-up window).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { tinyPack } from '../lcm/helpers.ts';
import { pythonSkipReason, readTensor, maxAbsDiff, maxAbs, toHalf, fromHalf, type TensorFile } from './helpers.ts';

const skip = pythonSkipReason();
if (skip) console.log(`# skipping X-Portrait pack tests: ${skip}`);

const FP32_TOL = 1e-4;   // max abs error, fp32 graphs vs torch fp32
const FP16_REL = 3e-2;   // max abs error relative to the output's max magnitude, fp16 graphs

let dir = '';
let manifest: any;
let index: any;
const tv = () => join(dir, 'testvectors');

before(async () => {
  if (skip) return;
  dir = await tinyPack();
  manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  index = JSON.parse(readFileSync(join(tv(), 'index.json'), 'utf8'));
});

function feed(t: TensorFile, data: Float32Array | BigInt64Array, half: boolean): ort.Tensor {
  if (t.dtype === 'int64') return new ort.Tensor('int64', data as BigInt64Array, t.shape);
  return half ? new ort.Tensor('float16', toHalf(data as Float32Array), t.shape) : new ort.Tensor('float32', data as Float32Array, t.shape);
}
function read(t: ort.Tensor): Float32Array {
  return t.type === 'float16' ? fromHalf(t.data as Uint16Array) : (t.data as Float32Array);
}

const STAGES = ['reference', 'control', 'denoise', 'vae_encode', 'vae_decode', 'taesd_decode'];
/** The warm-up window's denoise: every dim fixed (3 frames of one stream). */
const WINDOW = 'denoise_window';

test('manifest lists every stage with I/O matching the graphs', { skip }, async () => {
  assert.deepEqual(Object.keys(manifest.stages).sort(), [...STAGES, WINDOW].sort());
  assert.equal(manifest.scheduler.type, 'lcm');
  assert.deepEqual(manifest.scheduler.timesteps['4'], [999, 759, 519, 279]);
  assert.equal(manifest.geometry.latent_size, 8);
  assert.equal(manifest.geometry.image_size, 64);
  assert.equal(manifest.temporal_cache.num_modules, 6);
  for (const name of STAGES) {
    const st = manifest.stages[name];
    for (const prec of ['fp32', 'fp16']) {
      const s = await ort.InferenceSession.create(join(dir, st.files[prec]));
      assert.deepEqual(s.inputNames, st.inputs.map((i: any) => i.name), `${name} ${prec} inputs`);
      assert.deepEqual(s.outputNames, st.outputs.map((o: any) => o.name), `${name} ${prec} outputs`);
    }
    for (const io of [...st.inputs, ...st.outputs]) assert.equal(io.shape[0], 'batch', `${name}.${io.name} batch dim`);
  }
  assert.equal(manifest.temporal_cache.window_frames, 3);
  for (const io of [...manifest.stages[WINDOW].inputs, ...manifest.stages[WINDOW].outputs]) {
    assert.equal(io.shape[0], io.name.startsWith('cache') ? 1 : 3, `${WINDOW}.${io.name}: one stream's cache, the window's frames`);
  }
  // packed layouts add up to the packed widths
  const lay = manifest.layouts;
  const width = (l: any[]) => l.reduce((a, e) => a + e.size, 0);
  const den = manifest.stages.denoise.inputs;
  assert.equal(den.find((i: any) => i.name === 'ref_kv').shape[1], width(lay.ref_kv));
  assert.equal(den.find((i: any) => i.name === 'ctrl_res').shape[1], width(lay.ctrl_res));
  assert.equal(den.find((i: any) => i.name === 'cache_in').shape[2], width(lay.cache_frame));
  assert.equal(width(lay.cache_frame), manifest.temporal_cache.frame_payload);
});

for (const name of [...STAGES, WINDOW]) {
  for (const prec of ['fp32', 'fp16'] as const) {
    test(`${name} ${prec}: onnxruntime matches torch`, { skip }, async () => {
      const st = manifest.stages[name];
      const vec = index.stages[name];
      const s = await ort.InferenceSession.create(join(dir, st.files[prec]));
      const feeds: Record<string, ort.Tensor> = {};
      for (const [n, t] of Object.entries<TensorFile>(vec.inputs)) feeds[n] = feed(t, readTensor(tv(), t), prec === 'fp16');
      const res = await s.run(feeds);
      for (const [n, t] of Object.entries<TensorFile>(vec.outputs)) {
        const want = readTensor(tv(), t) as Float32Array;
        const got = read(res[n]);
        assert.deepEqual(res[n].dims.map(Number), t.shape, `${name}.${n} shape`);
        const err = maxAbsDiff(got, want);
        const mag = maxAbs(want);
        console.log(`# ${name}.${n} ${prec}: max abs err ${err.toExponential(2)} (|ref| max ${mag.toFixed(3)})`);
        assert.ok(mag > 1e-3, `${name}.${n}: reference output is degenerate (all ~0)`);
        if (prec === 'fp32') assert.ok(err <= FP32_TOL, `${name}.${n}: max abs err ${err} > ${FP32_TOL}`);
        else assert.ok(err <= FP16_REL * Math.max(1, mag), `${name}.${n}: fp16 max abs err ${err} > ${FP16_REL} x ${mag}`);
      }
    });
  }
}

async function streamEps(cacheMode: 'rolling' | 'reset') {
  const st = index.stream;
  const s = await ort.InferenceSession.create(join(dir, manifest.stages.denoise.files.fp32));
  const lat = readTensor(tv(), st.latent) as Float32Array;
  const ts = readTensor(tv(), st.timestep) as BigInt64Array;
  const ref = readTensor(tv(), st.ref_kv) as Float32Array;
  const ctrl = readTensor(tv(), st.ctrl_res) as Float32Array;
  const W = manifest.temporal_cache.slots;
  const F = manifest.temporal_cache.frame_payload;
  const per = lat.length / st.frames;
  const nc = ctrl.length / st.frames;
  let cache: ort.Tensor = new ort.Tensor('float32', new Float32Array(W * F), [1, W, F]);
  let mask: ort.Tensor = new ort.Tensor('float32', new Float32Array(W), [1, W]);
  const out = new Float32Array(lat.length);
  for (let t = 0; t < st.frames; t++) {
    const r = await s.run({
      latent: new ort.Tensor('float32', lat.slice(t * per, (t + 1) * per), [1, ...st.latent.shape.slice(1)]),
      timestep: new ort.Tensor('int64', ts.slice(t, t + 1), [1]),
      ref_kv: new ort.Tensor('float32', ref, [1, ref.length]),
      ctrl_res: new ort.Tensor('float32', ctrl.slice(t * nc, (t + 1) * nc), [1, nc]),
      cache_in: cache, cache_mask: mask,
      uncond: new ort.Tensor('float32', new Float32Array(1), [1]),
    });
    out.set(r.eps.data as Float32Array, t * per);
    if (cacheMode === 'rolling') { cache = r.cache_out; mask = r.cache_mask_out; }
  }
  return out;
}

test('rolling cache: streamed ONNX denoise equals the full causal recompute', { skip }, async () => {
  const want = readTensor(tv(), index.stream.eps_full_recompute) as Float32Array;
  assert.ok(index.stream.frames > manifest.temporal_cache.slots + 1, 'sequence must wrap the ring');
  const got = await streamEps('rolling');
  const err = maxAbsDiff(got, want);
  console.log(`# cache exactness over ${index.stream.frames} frames (sink ${index.stream.sink}, ring ${index.stream.ring}): max abs err ${err.toExponential(2)}`);
  assert.ok(err <= 1e-4, `streamed vs full recompute: ${err}`);
  // the check has teeth: dropping the cache changes the result
  const noCache = await streamEps('reset');
  const d = maxAbsDiff(noCache, want);
  console.log(`# without the cache the error would be ${d.toExponential(2)}`);
  assert.ok(d > 1e-2, `temporal attention seems inactive (${d})`);
});

test('cache_mask_out marks slots as filled right to left, then stays full', { skip }, async () => {
  const s = await ort.InferenceSession.create(join(dir, manifest.stages.denoise.files.fp32));
  const W = manifest.temporal_cache.slots;
  const F = manifest.temporal_cache.frame_payload;
  const vec = index.stages.denoise.inputs;
  const feeds: Record<string, ort.Tensor> = {};
  for (const [n, t] of Object.entries<TensorFile>(vec)) feeds[n] = feed(t, readTensor(tv(), t), false);
  const B = vec.latent.shape[0];
  const r = await s.run(feeds);
  const m = r.cache_mask_out.data as Float32Array;
  const mi = feeds.cache_mask.data as Float32Array;
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < W - 1; j++) assert.equal(m[b * W + j], mi[b * W + j + 1]);
    assert.equal(m[b * W + W - 1], 1);
  }
  // the newest slot of cache_out is this frame; for a full item the sink slots are unchanged
  const ci = feeds.cache_in.data as Float32Array;
  const co = r.cache_out.data as Float32Array;
  const sink = manifest.temporal_cache.sink_frames;
  const full = 1; // item 1 of the test vector is full
  for (let j = 0; j < sink; j++) assert.equal(maxAbsDiff(co.subarray((full * W + j) * F, (full * W + j + 1) * F), ci.subarray((full * W + j) * F, (full * W + j + 1) * F)), 0);
  assert.equal(maxAbsDiff(co.subarray((full * W + sink) * F, (full * W + sink + 1) * F), ci.subarray((full * W + sink + 1) * F, (full * W + sink + 2) * F)), 0);
});

test('external-data graphs (the path real >2 GB packs take) load and match torch', { skip }, async () => {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { runPy } = await import('./helpers.ts');
  const out = mkdtempSync(join(tmpdir(), 'xpl-ext-'));
  try {
    const r = runPy(['-m', 'models.xportrait.export', '--tiny', '--seed', '1', '--out', out, '--stages', 'vae_decode', '--test-vectors'],
      180_000, { XPL_EXTERNAL_DATA_THRESHOLD: '1000' });
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    const idx = JSON.parse(readFileSync(join(out, 'testvectors', 'index.json'), 'utf8'));
    // The threshold is a size, not a stage: the smallest graph with weights (the VAE decoder,
    // 0.7 MB in one file) takes the path quickest.
    for (const prec of ['fp32', 'fp16'] as const) {
      const file = m.stages.vae_decode.files[prec];
      const graph = readFileSync(join(out, file)).length;
      const data = readFileSync(join(out, file + '.data')).length;
      assert.ok(data > 300_000, `${file}.data holds the weights (${data} bytes)`);
      assert.ok(graph < data / 2, `${file} holds no weights (${graph} bytes beside ${data})`);
      const s = await ort.InferenceSession.create(join(out, file));
      const feeds: Record<string, ort.Tensor> = {};
      for (const [n, t] of Object.entries<TensorFile>(idx.stages.vae_decode.inputs)) feeds[n] = feed(t, readTensor(join(out, 'testvectors'), t), prec === 'fp16');
      const res = await s.run(feeds);
      const want = readTensor(join(out, 'testvectors'), idx.stages.vae_decode.outputs.image) as Float32Array;
      const err = maxAbsDiff(read(res.image), want);
      assert.ok(err <= (prec === 'fp32' ? FP32_TOL : FP16_REL * Math.max(1, maxAbs(want))), `${prec} external-data image err ${err}`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
