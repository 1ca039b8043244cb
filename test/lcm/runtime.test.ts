// npm test: background — the tiny pack on the CPU, no clock to keep.
// xportrait-lcm runtime on the tiny pack (CPU): manifest ↔ scheduler, rolling cache semantics,
// stream batch equivalence, shared packs, corrupt packs, and the renderer's per-session rules.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, unlinkSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { LcmScheduler } from '../../server/schedulers/lcm.ts';
import { loadPack, disposePack, type LoadedPack } from '../../server/renderers/xportrait-lcm/pack.ts';
import { acquirePack, loadedPacks, releasePack } from '../../server/renderers/xportrait-lcm/pack-cache.ts';
import { readManifest } from '../../server/renderers/xportrait-lcm/pack-manifest.ts';
import { LcmPipeline, type PushResult } from '../../server/renderers/xportrait-lcm/pipeline.ts';
import { createXportraitLcmRenderer } from '../../server/renderers/xportrait-lcm/index.ts';
import { loadImage } from '../../eval/make-driving.ts';
import { allocI420, type I420Frame } from '../../server/media/frame.ts';
import { cropScaleI420, rgbaToI420 } from '../../server/media/convert.ts';
import { XplError } from '../../server/errors.ts';
import { corruptCopy, maxAbsDiff, pythonSkipReason, randomImage, tinyPack } from './helpers.ts';

const skip = pythonSkipReason();
if (skip) console.log(`# skipping xportrait-lcm runtime tests: ${skip}`);

let dir = '';
let manifest: any;
before(async () => {
  if (skip) return;
  const t0 = Date.now();
  dir = await tinyPack();
  console.log(`# tiny pack ready in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${dir}`);
  manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
});

const IMG = 3 * 64 * 64;
const drivingSeq = (n: number, seed = 1) => Array.from({ length: n }, (_, f) => ({ d: randomImage(IMG, seed * 1000 + f + 1), l: randomImage(IMG, seed * 1000 + f + 501) }));

async function stream(pack: LoadedPack, opts: { steps: number; streamBatch?: boolean; noise?: 'fixed' | 'fresh' }, frames: ReturnType<typeof drivingSeq>) {
  const p = new LcmPipeline(pack, opts);
  await p.setReference(await p.encode(randomImage(IMG, 99)));
  const outs: Array<PushResult | null> = [];
  for (const fr of frames) outs.push(await p.push(fr.d, fr.l, { latent: true }));
  return { p, outs };
}

test('manifest scheduler equals the runtime scheduler; denoise graph output equals scheduler.step()', { skip }, async () => {
  const { scheduler } = readManifest(dir);
  const s = new LcmScheduler(scheduler);
  for (const n of ['1', '2', '4', '8']) {
    assert.deepEqual(s.setTimesteps(Number(n)), manifest.scheduler.timesteps[n], `${n} steps`);
    manifest.scheduler.steps[n].forEach((row: any, k: number) => {
      const c = s.coefficients[k];
      assert.equal(c.t, row.t);
      for (const [a, b] of [[c.alphaCumprod, row.alpha_cumprod], [c.sqrtAlphaCumprod, row.sqrt_alpha_cumprod], [c.sqrtOneMinusAlphaCumprod, row.sqrt_one_minus_alpha_cumprod], [c.cSkip, row.c_skip], [c.cOut, row.c_out]]) {
        assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${n} steps, step ${k}: ${a} vs ${b}`);
      }
    });
  }
  // the graph's `denoised` is c_skip·x + c_out·x̂0 of its own eps (the pack contract)
  const pack = await loadPack(dir, { warmup: false });
  try {
    s.setTimesteps(2);
    const g = pack.geometry;
    const x = randomImage(g.latentLen, 5);
    for (const k of [0, 1]) {
      const t = s.timesteps[k];
      const ts = new ort.Tensor('int64', BigInt64Array.from([BigInt(t)]), [1]);
      const lat = new ort.Tensor('float32', x, [1, 4, 8, 8]);
      const ref = await pack.sessions.reference!.run({ ref_latent: lat, timestep: ts });
      const ctrl = await pack.sessions.control!.run({ latent: lat, timestep: ts, driving: new ort.Tensor('float32', randomImage(IMG, 6), [1, 3, 64, 64]), local: new ort.Tensor('float32', randomImage(IMG, 7), [1, 3, 64, 64]) });
      const out = await pack.sessions.denoise!.run({ latent: lat, timestep: ts, ref_kv: ref.ref_kv, ctrl_res: ctrl.ctrl_res, cache_in: new ort.Tensor('float32', new Float32Array(g.slots * g.framePayload), [1, g.slots, g.framePayload]), cache_mask: new ort.Tensor('float32', new Float32Array(g.slots), [1, g.slots]), uncond: new ort.Tensor('float32', new Float32Array(1), [1]) });
      const mine = s.step(out.eps.data as Float32Array, k, x, new Float32Array(x.length)).denoised;
      const err = maxAbsDiff(mine, out.denoised.data as Float32Array);
      assert.ok(err < 2e-3 * Math.max(1, ...Array.from(mine, Math.abs)), `step ${k} (t=${t}): max abs diff ${err}`);
    }
  } finally {
    await disposePack(pack);
  }
});

test('rolling cache: warm-up fills from the right, then the sink freezes and the ring rotates (per step)', { skip }, async () => {
  const pack = await acquirePack(dir);
  try {
    const g = pack.geometry;
    const W = g.slots, S = g.sink, F = g.framePayload;
    assert.equal(S, 1);
    assert.equal(W, 4);
    const p = new LcmPipeline(pack, { steps: 2 });
    await p.setReference(await p.encode(randomImage(IMG, 99)));
    const frames = drivingSeq(8);
    const payload: Float32Array[][] = [[], []]; // per step: the payload each frame wrote
    const slot = (c: Float32Array, s: number): Float32Array => c.subarray(s * F, (s + 1) * F);
    for (let f = 0; f < frames.length; f++) {
      await p.push(frames[f].d, frames[f].l);
      for (const k of [0, 1]) {
        const { cache, mask } = await p.inspectCache(k);
        const filled = Math.min(f + 1, W);
        assert.deepEqual(Array.from(mask), Array.from({ length: W }, (_, s): number => (s >= W - filled ? 1 : 0)), `frame ${f} step ${k} mask`);
        payload[k].push(Float32Array.from(slot(cache, W - 1)));
        if (f > 0) assert.ok(maxAbsDiff(payload[k][f], payload[k][f - 1]) > 1e-4, 'each frame writes its own payload');
        for (let s = 0; s < W; s++) {
          const want: Float32Array =
            f < W
              ? s >= W - filled ? payload[k][f - (W - 1 - s)] : new Float32Array(F) // warm-up: rightmost slots, zeros elsewhere
              : s < S ? payload[k][s] // sink: the stream's first frames, frozen
              : payload[k][f - (W - 1 - s)]; // ring: the most recent frames, oldest first
          assert.equal(maxAbsDiff(slot(cache, s), want), 0, `frame ${f} step ${k} slot ${s}`);
        }
      }
      if (f >= W) assert.ok(maxAbsDiff(slot((await p.inspectCache(0)).cache, 0), payload[0][W]) > 1e-4, 'frame W is not in the sink');
    }
    // the two steps' caches are distinct
    assert.ok(maxAbsDiff(payload[0][3], payload[1][3]) > 1e-4);
    // reset: empty caches; the next frame is exactly a fresh stream's first frame
    p.reset();
    for (const k of [0, 1]) {
      const { cache, mask } = await p.inspectCache(k);
      assert.equal(Math.max(...mask), 0);
      assert.equal(maxAbsDiff(cache, new Float32Array(cache.length)), 0);
    }
    const after = await p.push(frames[5].d, frames[5].l);
    const fresh = new LcmPipeline(pack, { steps: 2 });
    await fresh.setReference(await fresh.encode(randomImage(IMG, 99)));
    const first = await fresh.push(frames[5].d, frames[5].l);
    assert.equal(maxAbsDiff(after!.image, first!.image), 0, 'after reset = fresh stream');
    // … and differs from what the warm stream would have produced
    const warm = await stream(pack, { steps: 2 }, [...frames.slice(0, 5), frames[5]]);
    assert.ok(maxAbsDiff(warm.outs[5]!.image, first!.image) > 1e-5, 'the cache influences the output');
  } finally {
    await releasePack(pack);
  }
});

test('two sessions on one shared pack keep independent caches', { skip }, async () => {
  const a = await acquirePack(dir);
  const b = await acquirePack(dir);
  try {
    assert.equal(a, b, 'same loaded pack object');
    assert.equal(loadedPacks().find((e) => e.key.startsWith(a.dir))?.refs, 2);
    const fa = drivingSeq(6, 1), fb = drivingSeq(6, 2);
    const solo = await stream(a, { steps: 2 }, fa);
    const pa = new LcmPipeline(a, { steps: 2 });
    const pb = new LcmPipeline(b, { steps: 2 });
    await pa.setReference(await pa.encode(randomImage(IMG, 99)));
    await pb.setReference(await pb.encode(randomImage(IMG, 98)));
    for (let f = 0; f < 6; f++) {
      const ra = await pa.push(fa[f].d, fa[f].l);
      const rb = await pb.push(fb[f].d, fb[f].l);
      assert.equal(maxAbsDiff(ra!.image, solo.outs[f]!.image), 0, `frame ${f}: session A unaffected by B`);
      assert.ok(maxAbsDiff(ra!.image, rb!.image) > 1e-4);
    }
  } finally {
    await releasePack(a);
    assert.equal(loadedPacks().find((e) => e.key.startsWith(a.dir))?.refs, 1);
    await releasePack(b);
    assert.equal(loadedPacks().find((e) => e.key.startsWith(a.dir)), undefined, 'last release unloads');
  }
});

for (const steps of [2, 4]) {
  for (const noise of ['fixed', 'fresh'] as const) {
    test(`stream batch on/off give the same frames (${steps} steps, ${noise} noise)`, { skip }, async () => {
      const pack = await acquirePack(dir);
      try {
        const frames = drivingSeq(steps + 5, 3);
        const off = await stream(pack, { steps, noise }, frames);
        const on = await stream(pack, { steps, noise, streamBatch: true }, frames);
        for (let f = 0; f < frames.length; f++) {
          assert.equal(off.outs[f]!.frame, f);
          if (f < steps - 1) {
            assert.equal(on.outs[f], null, `call ${f}: pipeline filling`);
            continue;
          }
          const r = on.outs[f]!;
          assert.equal(r.frame, f - (steps - 1), `call ${f} finishes frame ${f - (steps - 1)}`);
          const err = maxAbsDiff(r.image, off.outs[r.frame]!.image);
          assert.ok(err < 1e-4, `frame ${r.frame}: max abs diff ${err}`);
          const lerr = maxAbsDiff(r.latent!, off.outs[r.frame]!.latent!);
          assert.ok(lerr < 1e-3, `frame ${r.frame}: latent max abs diff ${lerr} (values up to ~50)`);
          // and it is not just any frame
          if (r.frame > 0) assert.ok(maxAbsDiff(r.image, off.outs[r.frame - 1]!.image) > 1e-3);
        }
        assert.equal(on.p.totals.cacheConcats, 1, 'per-step caches joined once, when the pipeline filled');
        // The tiny pack's random ControlNets barely move the output (≈1e-6 of the image), so the
        // routing of control inputs is checked directly: a spy on `control` records, per batch
        // item, which frame's driving/local canvas and which timestep went in.
        const calls: Array<Array<{ drv: number; loc: number; t: number }>> = [];
        const ident = (data: Float32Array, off: number, pool: Float32Array[]): number => pool.findIndex((x) => x[0] === data[off] && x[1] === data[off + 1] && x[777] === data[off + 777]);
        const spy: LoadedPack = {
          ...pack,
          sessions: {
            ...pack.sessions,
            control: {
              run: (feeds: Record<string, ort.Tensor>) => {
                const n = Number(feeds.driving.dims[0]);
                const items = [];
                for (let k = 0; k < n; k++) {
                  items.push({
                    drv: ident(feeds.driving.data as Float32Array, k * IMG, frames.map((f) => f.d)),
                    loc: ident(feeds.local.data as Float32Array, k * IMG, frames.map((f) => f.l)),
                    t: Number((feeds.timestep.data as BigInt64Array)[k]),
                  });
                }
                calls.push(items);
                return pack.sessions.control!.run(feeds);
              },
            } as unknown as ort.InferenceSession,
          },
        };
        await stream(spy, { steps, noise, streamBatch: true }, frames);
        const ts = new LcmScheduler(pack.scheduler).setTimesteps(steps);
        const want: typeof calls = [];
        for (let f = 0; f < frames.length; f++) {
          const items = Array.from({ length: Math.min(f + 1, steps) }, (_, k) => ({ drv: f - k, loc: f - k, t: ts[k] }));
          if (f < steps - 1) for (const it of items) want.push([it]); // filling: one call per item
          else want.push(items); // full: one batched call, item k = frame f−k at step k
        }
        assert.deepEqual(calls, want);
        // batched: one control + one denoise (+ decode) per call once full
        assert.equal(on.p.io.runs, 3);
        assert.equal(off.p.io.runs, 2 * steps + 1);
      } finally {
        await releasePack(pack);
      }
    });
  }
}

test('stream batch: a caller that refills one buffer every frame (as the renderer does) gets the same frames', { skip }, async () => {
  const pack = await acquirePack(dir);
  try {
    const frames = drivingSeq(5, 4);
    const distinct = await stream(pack, { steps: 2, streamBatch: true }, frames);
    const p = new LcmPipeline(pack, { steps: 2, streamBatch: true });
    await p.setReference(await p.encode(randomImage(IMG, 99)));
    const d = new Float32Array(IMG);
    const l = new Float32Array(IMG);
    for (let f = 0; f < frames.length; f++) {
      d.set(frames[f].d);
      l.set(frames[f].l);
      const r = await p.push(d, l);
      if (f === 0) continue;
      const err = maxAbsDiff(r!.image, distinct.outs[f]!.image);
      assert.equal(err, 0, `frame ${r!.frame}: the waiting item kept its own driving crop (diff ${err})`);
    }
  } finally {
    await releasePack(pack);
  }
});

test('cpu: no host↔device bytes; host tensor bytes per frame as computed', { skip }, async () => {
  const pack = await acquirePack(dir);
  try {
    const { p } = await stream(pack, { steps: 2 }, drivingSeq(2));
    assert.equal(p.io.h2dBytes, 0);
    assert.equal(p.io.d2hBytes, 0);
    assert.equal(p.io.frameH2dBytes, 0);
    // per frame: driving + local once (both steps use them); a timestep and an `uncond` flag per
    // step; the re-noised latent between the steps (the fixed noise was made on the stream's first frame)
    const lat = 4 * 64 * 4;
    assert.equal(p.io.hostInputBytes, 2 * IMG * 4 + 2 * (8 + 4) + lat);
    // the decoded image, and the final latent the test asked for
    assert.equal(p.io.hostOutputBytes, IMG * 4 + lat);
  } finally {
    await releasePack(pack);
  }
});

test('unavailable execution provider falls back to cpu with the reason logged', { skip }, async () => {
  const logs: string[] = [];
  const pack = await loadPack(dir, { ep: 'webgpu', warmup: false, log: (m, e) => logs.push(`${m} ${JSON.stringify(e)}`) });
  try {
    if (pack.ep === 'webgpu') return; // a machine with a usable GPU
    assert.equal(pack.ep, 'cpu');
    assert.equal(pack.requestedEp, 'webgpu');
    assert.match(pack.fallbackReason ?? '', /webgpu/);
    assert.equal(logs.length, 1);
    assert.match(logs[0], /webgpu execution provider unavailable, falling back to cpu/);
    assert.equal(pack.deviceResident, false);
  } finally {
    await disposePack(pack);
  }
});

// ------------------------------------------------------------------------------ corrupt packs

const CORRUPT: Array<[string, (d: string, m: any) => any, RegExp]> = [
  ['bad manifest JSON', () => '{"format": "xportrait-pack", ', /manifest\.json is not valid JSON/],
  ['missing manifest', (d) => { unlinkSync(join(d, 'manifest.json')); }, /manifest\.json missing/],
  ['missing graph file', (d) => { unlinkSync(join(d, 'control.onnx')); }, /stage "control": file control\.onnx missing/],
  ['unknown stage', (_d, m) => { m.stages.upscale = m.stages.vae_decode; return m; }, /unknown stage "upscale"/],
  ['missing required stage', (_d, m) => { delete m.stages.denoise; return m; }, /required stage "denoise" missing/],
  ['dtype mismatch vs graph', (_d, m) => { m.stages.vae_decode.files.fp32 = 'vae_decode.fp16.onnx'; m.stages.taesd_decode.files.fp32 = 'taesd_decode.fp16.onnx'; return m; }, /stage "taesd_decode" input "latent": manifest dtype float32 ≠ graph float16/],
  ['input name mismatch vs graph', (_d, m) => { m.stages.control.files.fp32 = 'vae_encode.onnx'; return m; }, /stage "control" \(vae_encode\.onnx\): graph has no input "latent"/],
  ['manifest shape vs geometry', (_d, m) => { m.stages.denoise.inputs[4].shape = ['batch', 4, 1000]; return m; }, /stage "denoise" input "cache_in" has shape \[batch,4,1000\], the geometry implies \[batch,4,49152\]/],
  ['wrong timesteps', (_d, m) => { m.scheduler.timesteps['4'] = [999, 750, 500, 250]; return m; }, /timesteps\["4"\] = \[999,750,500,250\] differs from the LCM formula/],
  ['unreadable graph', (d) => { copyFileSync(join(d, 'manifest.json'), join(d, 'denoise.onnx')); }, /stage "denoise": onnxruntime could not load denoise\.onnx on cpu/],
];

for (const [name, mutate, msg] of CORRUPT) {
  test(`corrupt pack fails at load: ${name}`, { skip }, async () => {
    const bad = corruptCopy(dir, mutate);
    try {
      await assert.rejects(acquirePack(bad), (err: unknown) => {
        assert.ok(err instanceof XplError, `XplError, got ${String(err)}`);
        assert.equal(err.code, 'bad_pack');
        assert.match(err.message, msg);
        assert.ok(err.message.startsWith(bad), 'message names the pack');
        return true;
      });
      assert.equal(loadedPacks().some((e) => e.key.startsWith(bad)), false, 'failed load is not cached');
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });
}

test('corrupt pack fails at load: graph shape ≠ manifest (a manifest written for another cache geometry)', { skip }, async () => {
  // The manifest of a sink-2 pack (5 cache slots) beside this pack's sink-1 graphs (4 slots): the
  // loader compares every declared graph shape with the manifest's.
  const bad = corruptCopy(dir, (_d, m) => {
    const tc = m.temporal_cache;
    tc.sink_frames = 2;
    tc.slots = 5;
    tc.bytes_per_step_fp32 = 5 * tc.frame_payload * 4;
    for (const st of Object.values<any>(m.stages)) for (const io of [...st.inputs, ...st.outputs]) if (io.name.startsWith('cache')) io.shape[1] = 5;
    return m;
  });
  try {
    await assert.rejects(acquirePack(bad), /stage "denoise" input "cache_in": manifest shape \[batch,5,49152\] ≠ graph \[batch,4,49152\] \(denoise\.onnx\)/);
  } finally {
    rmSync(bad, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------ renderer rules

function still(rgba: { width: number; height: number; data: Uint8Array }, w = 320, h = 240): I420Frame {
  const full = allocI420(rgba.width & ~1, rgba.height & ~1);
  rgbaToI420(rgba, full);
  const f = allocI420(w, h);
  cropScaleI420(full, f, 'cover');
  return f;
}

test('renderer: output size, similarity skip, no face → hold, portrait change and re-calibration reset the caches', { skip }, async () => {
  const astronaut = await loadImage(join(import.meta.dirname, '..', 'fixtures', 'astronaut.png'));
  const hopper = await loadImage(join(import.meta.dirname, '..', 'fixtures', 'grace_hopper.jpg'));
  const coffee = await loadImage(join(import.meta.dirname, '..', 'fixtures', 'coffee.png'));
  const r = await createXportraitLcmRenderer({ outputWidth: 192, outputHeight: 160, pack: dir, lcm: { steps: 2, skip: 1 } });
  try {
    const pa = await r.prepare(astronaut);
    const ph = await r.prepare(hopper);
    assert.ok(pa.paste.index.length > 0, 'the face crop lands in the frame');
    const drvA = still(astronaut), drvH = still(hopper), none = still(coffee);
    const out = allocI420(192, 160);
    let i = 0;
    const render = async (p: typeof pa, f: I420Frame) => {
      f.timestamp = i * 33;
      await r.render(p, { frame: f, index: i++ }, out);
      return out.data.slice();
    };
    const first = await render(pa, drvA);
    assert.equal(r.stats.rendered, 1);
    assert.notDeepEqual(first, pa.baseI420.data, 'the face region was generated');
    const maskA = async () => Array.from((await r.stream.inspectCache(0)).mask);
    assert.deepEqual(await maskA(), [0, 0, 0, 1]);
    // same driving picture again → skipped, output held
    const again = await render(pa, drvA);
    assert.equal(r.stats.skipped, 1);
    assert.deepEqual(again, first);
    assert.deepEqual(await maskA(), [0, 0, 0, 1], 'a skipped frame does not enter the cache');
    // a different face → rendered, cache grows
    await render(pa, drvH);
    assert.equal(r.stats.rendered, 2);
    assert.deepEqual(await maskA(), [0, 0, 1, 1]);
    // no face → hold last output
    const held = out.data.slice();
    const noFace = await render(pa, none);
    assert.equal(r.stats.noFace, 1);
    assert.deepEqual(noFace, held);
    // portrait change → fresh stream
    const resets = r.stats.resets;
    await render(ph, drvA);
    assert.equal(r.stats.resets, resets + 1);
    assert.deepEqual(await maskA(), [0, 0, 0, 1], 'new portrait: caches emptied');
    await render(ph, drvH);
    assert.deepEqual(await maskA(), [0, 0, 1, 1]);
    // re-calibration → fresh stream
    r.reset!(ph);
    assert.deepEqual(await maskA(), [0, 0, 0, 0]);
    await render(ph, drvA);
    assert.deepEqual(await maskA(), [0, 0, 0, 1]);
    assert.equal(r.stats.pack.ep, 'cpu');
  } finally {
    await r.dispose();
  }
});
