// xportrait-lcm on the WebGPU execution provider, run on SwiftShader (software Vulkan from
// Chromium) so that the device-resident path runs on every machine: the frames must equal the CPU
// pipeline's, the caches and latents must stay on the device (only the frame's pixels, the
// timesteps and the re-noise coefficients cross the bus), and no device tensor may leak.
// SwiftShader has no shader-f16, so these run the fp32 graphs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { LoadedPack } from '../../server/renderers/xportrait-lcm/pack.ts';
import { acquirePack, releasePack } from '../../server/renderers/xportrait-lcm/pack-cache.ts';
import { LcmPipeline, type PushResult } from '../../server/renderers/xportrait-lcm/pipeline.ts';
import { createXportraitLcmRenderer } from '../../server/renderers/xportrait-lcm/index.ts';
import { loadImage } from '../../eval/make-driving.ts';
import { allocI420 } from '../../server/media/frame.ts';
import { cropScaleI420, rgbaToI420 } from '../../server/media/convert.ts';
import { RemoteStream } from '../../server/renderers/xportrait-lcm/stream.ts';
import { localCanvas } from '../../server/renderers/xportrait-lcm/patches.ts';
import { rgbToChw } from '../../server/renderers/xportrait-lcm/pixels.ts';
import { closePackWorkers, connectPack } from '../../server/renderers/xportrait-lcm/pack-host.ts';
import { useSoftwareWebGpu } from '../support/webgpu.ts';
import { maxAbsDiff, pythonSkipReason, randomImage, tinyPack } from './helpers.ts';

const skip = pythonSkipReason() || useSoftwareWebGpu() || false;
if (skip) console.log(`# skipping xportrait-lcm WebGPU tests: ${skip}`);

const IMG = 3 * 64 * 64;
let dir = '';
let cpu: LoadedPack;
let gpu: LoadedPack;
const logs: string[] = [];

before(async () => {
  if (skip) return;
  dir = await tinyPack();
  cpu = await acquirePack(dir, { ep: 'cpu', precision: 'fp32' });
  gpu = await acquirePack(dir, { ep: 'webgpu', precision: 'fp32', log: (m, e) => logs.push(`${m} ${JSON.stringify(e ?? {})}`) });
});

after(async () => {
  if (skip) return;
  await releasePack(cpu);
  await releasePack(gpu);
  await closePackWorkers();
});

const frames = (n: number) => Array.from({ length: n }, (_, f) => ({ d: randomImage(IMG, 7000 + f), l: randomImage(IMG, 7500 + f) }));

async function pipeline(pack: LoadedPack, opts: ConstructorParameters<typeof LcmPipeline>[1]) {
  const p = new LcmPipeline(pack, opts);
  const ref = await p.computeReference(await p.encode(randomImage(IMG, 99)));
  p.useReference(ref);
  return { p, ref };
}

test('the pack loads on webgpu with its outputs kept on the device (no fallback)', { skip }, () => {
  assert.equal(gpu.ep, 'webgpu', `fell back: ${gpu.fallbackReason} ${logs.join('\n')}`);
  assert.equal(gpu.fallbackReason, undefined);
  assert.equal(gpu.deviceResident, true);
  assert.ok(gpu.glue, 'device glue graphs ready (their self-test ran at load)');
  assert.equal(cpu.glue, null);
});

test('sequential (2 steps): frames, latents and caches equal the cpu pipeline; only the frame crosses the bus; nothing leaks', { skip }, async () => {
  const a = await pipeline(cpu, { steps: 2 });
  const b = await pipeline(gpu, { steps: 2 });
  const input = frames(3);
  const live: number[] = [];
  let prev: Float32Array | null = null;
  for (let f = 0; f < input.length; f++) {
    const last = f === input.length - 1;
    const ra = (await a.p.push(input[f].d, input[f].l, { latent: last })) as PushResult;
    const rb = (await b.p.push(input[f].d, input[f].l, { latent: last })) as PushResult;
    assert.equal(rb.frame, f);
    const err = maxAbsDiff(ra.image, rb.image);
    assert.ok(err < 1e-4, `frame ${f}: image max abs diff ${err}`);
    if (prev) assert.ok(maxAbsDiff(rb.image, prev) > 1e-3, 'and not just any frame');
    if (last) assert.ok(maxAbsDiff(ra.latent!, rb.latent!) < 1e-3, `final latent (values up to ~50): max abs diff ${maxAbsDiff(ra.latent!, rb.latent!)}`);
    prev = rb.image;
    live.push(b.p.ops.live);
    if (f === 0 || last) continue;
    // a steady-state frame: up go the driving crop and patch canvas once (the frame), a timestep
    // per stage run, an `uncond` flag per denoise run and the two re-noise coefficients; down
    // comes the decoded image only
    const io = b.p.io;
    assert.equal(io.frameH2dBytes, 2 * IMG * 4);
    assert.equal(io.h2dBytes - io.frameH2dBytes, 2 * 2 * 8 + 2 * 4 + 2 * 4, 'besides the frame: 4 timesteps + 2 uncond flags + 2 coefficients');
    assert.equal(io.frameD2hBytes, IMG * 4);
    assert.equal(io.d2hBytes, io.frameD2hBytes, 'nothing but the image comes back');
  }
  // GPU arithmetic (WGSL's exp/erf, other summation orders) moves the cached K/V by ~1e-4 of
  // their range; a wrong slot, step or frame moves them by the order of the values themselves
  const cpuCaches = [await a.p.inspectCache(0), await a.p.inspectCache(1)];
  for (let k = 0; k < 2; k++) {
    const ca = cpuCaches[k];
    const cb = await b.p.inspectCache(k);
    assert.deepEqual(Array.from(cb.mask), Array.from(ca.mask), `step ${k} cache mask`);
    const scale = ca.cache.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const err = maxAbsDiff(ca.cache, cb.cache);
    assert.ok(scale > 1 && err < 1e-3 * scale, `step ${k} cache: max abs diff ${err} on values up to ${scale}`);
    const other = maxAbsDiff(cpuCaches[1 - k].cache, cb.cache);
    assert.ok(other > 0.05 * scale, `the bound tells steps apart (other step: ${other})`);
  }
  assert.equal(live[1], live[2], `device tensors per frame do not grow (${live})`);
  a.p.dispose();
  b.p.dispose();
  b.p.releaseReference(b.ref);
  assert.equal(b.p.ops.live, 0, 'every device tensor released');
});

test('stream batch (2 steps): the same frames as the cpu pipeline, caches joined on the device, constant device memory; a failed frame frees its tensors and the stream starts afresh', { skip }, async () => {
  // denoise fails once, when armed, after the batched pipeline has run steadily
  let failNext = false;
  const failing: LoadedPack = {
    ...gpu,
    sessions: {
      ...gpu.sessions,
      denoise: {
        run: (feeds: Record<string, unknown>) => {
          if (failNext) {
            failNext = false;
            return Promise.reject(new Error('device lost (simulated)'));
          }
          return gpu.sessions.denoise!.run(feeds as never);
        },
      } as never,
    },
  };
  const a = await pipeline(cpu, { steps: 2, streamBatch: true });
  const b = await pipeline(failing, { steps: 2, streamBatch: true });
  const afterRef = b.p.ops.live;
  const input = frames(7);
  const live: number[] = [];
  for (let f = 0; f < 4; f++) {
    const ra = await a.p.push(input[f].d, input[f].l);
    const rb = await b.p.push(input[f].d, input[f].l);
    if (f === 0) {
      assert.equal(rb, null, 'filling');
      continue;
    }
    assert.equal(rb!.frame, f - 1);
    const err = maxAbsDiff(ra!.image, rb!.image);
    assert.ok(err < 1e-4, `frame ${f - 1}: image max abs diff ${err}`);
    live.push(b.p.ops.live);
    if (f < 2) continue;
    const io = b.p.io;
    assert.equal(io.runs, 3, 'one batched control + denoise, one decode');
    assert.equal(io.h2dBytes - io.frameH2dBytes, 2 * (2 * 8) + 2 * 4 + 2 * (2 * 4), 'besides the frame: the [2] timesteps twice + [2] uncond flags + [2] coefficients twice');
    assert.equal(io.d2hBytes, io.frameD2hBytes);
  }
  assert.equal(b.p.totals.cacheConcats, 1);
  assert.equal(live[1], live[2], `device tensors per frame do not grow (${live})`);
  a.p.dispose();

  failNext = true;
  await assert.rejects(b.p.push(input[4].d, input[4].l), /device lost/);
  assert.equal(b.p.totals.recoveries, 1);
  assert.equal(b.p.ops.live, afterRef + 3, 'left: the K/V (3) and the fixed noise (2 per step + 1 batch); nothing of the failed frame');
  // the stream restarted: the next frames equal a fresh stream's on the same reference (a CPU
  // one: on SwiftShader a second device stream would double the test's time, and the frames above
  // hold the device to the CPU's within 1e-4)
  const fresh = await pipeline(cpu, { steps: 2, streamBatch: true });
  for (const f of [5, 6]) {
    const r = await b.p.push(input[f].d, input[f].l);
    const w = await fresh.p.push(input[f].d, input[f].l);
    if (f === 5) {
      assert.equal(r, null, 'filling again after the failure');
      continue;
    }
    assert.equal(r!.frame, 0);
    const err = maxAbsDiff(r!.image, w!.image);
    assert.ok(err < 1e-4, `same frame as a fresh stream (max abs diff ${err})`);
  }
  fresh.p.dispose();
  b.p.dispose();
  b.p.releaseReference(b.ref);
  assert.equal(b.p.ops.live, 0, 'every device tensor released');
});

test('in the server’s topology — a stream in the shared pack worker thread — webgpu gives the cpu pipeline’s frames', { skip }, async () => {
  const opts = { pack: dir, raw: true, load: { ep: 'webgpu' as const, precision: 'fp32' as const }, pipeline: { steps: 2 } };
  const remote = await RemoteStream.open(await connectPack(dir), opts, (err) => assert.fail(`pack worker lost: ${err.message}`));
  try {
    assert.equal(remote.info.ep, 'webgpu', `fell back: ${remote.info.fallbackReason}`);
    assert.equal(remote.info.shared, true);
    // the same frames as uint8 crops + patch boxes (what the renderer sends) and as the CPU pipeline's floats
    const rgb = (seed: number) => Uint8Array.from(randomImage(IMG, seed), (v) => Math.round((v + 1) * 127.5));
    const boxes: Array<[number, number, number, number]> = [[8, 16, 24, 32], [40, 16, 56, 32], [24, 40, 40, 56]];
    const crop = rgb(99);
    const a = new LcmPipeline(cpu, { steps: 2 });
    await a.setReference(await a.encode(rgbToChw(crop, 64)));
    await remote.useReference(await remote.encodeReference(crop));
    for (let f = 0; f < 2; f++) {
      const d = rgb(f + 1);
      const dc = rgbToChw(d, 64);
      const ra = await a.push(dc, localCanvas(dc, 64, boxes));
      const rb = await remote.push(d, boxes);
      assert.ok(maxAbsDiff(ra!.image, rb!.raw!) < 1e-4, `frame ${f}: image max abs diff ${maxAbsDiff(ra!.image, rb!.raw!)}`);
    }
    assert.equal(remote.io.d2hBytes, remote.io.frameD2hBytes, 'only the image came down');
    assert.ok(remote.live > 0, 'the stream holds device tensors in the pack worker');
    a.dispose();
  } finally {
    await remote.dispose();
  }
});

test('renderer on webgpu: renders, a replaced portrait frees its K/V, dispose frees the rest', { skip }, async () => {
  const astronaut = await loadImage(join(import.meta.dirname, '..', 'fixtures', 'astronaut.png'));
  const hopper = await loadImage(join(import.meta.dirname, '..', 'fixtures', 'grace_hopper.jpg'));
  const r = await createXportraitLcmRenderer({ outputWidth: 192, outputHeight: 160, pack: dir, lcm: { steps: 2, skip: 0, ep: 'webgpu', precision: 'fp32' } });
  let disposed = false;
  try {
    assert.equal(r.stats.pack.ep, 'webgpu');
    const pa = await r.prepare(astronaut);
    const drv = allocI420(320, 240);
    const full = allocI420(hopper.width & ~1, hopper.height & ~1);
    rgbaToI420(hopper, full);
    cropScaleI420(full, drv, 'cover');
    const out = allocI420(192, 160);
    await r.render(pa, { frame: drv, index: 0 }, out);
    assert.equal(r.stats.rendered, 1);
    assert.notDeepEqual(out.data, pa.baseI420.data, 'the face region was generated');
    const withA = r.stream.live;
    const ph = await r.prepare(hopper);
    assert.equal(r.stream.live, withA + 2, 'the new portrait: one K/V tensor per step');
    r.release!(pa);
    assert.equal(r.stream.live, withA, 'the old portrait’s K/V freed');
    drv.timestamp = 33;
    await r.render(ph, { frame: drv, index: 1 }, out);
    assert.equal(r.stats.rendered, 2);
    await r.dispose();
    disposed = true;
    assert.equal(r.stream.live, 0, 'dispose frees every device tensor');
  } finally {
    if (!disposed) await r.dispose();
  }
});
