/**
 * xportrait-lcm inference benchmark: per-stage milliseconds, frames/s, bytes moved host↔device
 * per frame, memory. Runs the renderer's LcmPipeline on random control inputs (timing only; the
 * face tracker, crop and paste are measured by bench:render / bench:loop).
 *
 *   node --import tsx bench/lcm.ts --pack DIR [--ep cpu|cuda|webgpu] [--steps 1|2|4|1,2,4]
 *       [--stream-batch | --stream-batch both] [--frames N] [--precision fp32|fp16]
 *       [--decoder taesd|vae] [--threads N] [--no-write]
 *
 * Writes its table into docs/BENCHMARKS.md (section `lcm-<ep>-<pack model>`) unless --no-write.
 * `--engine torch …`: the torch engine side by side with this one (bench/lcm-torch.ts).
 */
import { parseArgs } from 'node:util';
import { fmt, machine, pct, writeSection } from './report.ts';
import { loadPack, disposePack } from '../server/renderers/xportrait-lcm/pack.ts';
import type { Precision } from '../server/renderers/xportrait-lcm/pack-manifest.ts';
import type { ExecutionProvider } from '../server/renderers/xportrait-lcm/pack-sessions.ts';
import { LcmPipeline, type FrameIo } from '../server/renderers/xportrait-lcm/pipeline.ts';

const argv = process.argv.slice(2);
const engineAt = argv.indexOf('--engine');
if (engineAt >= 0 && argv[engineAt + 1] === 'torch') {
  await import('./lcm-torch.ts');
  process.exit(0);
}
if (engineAt >= 0) argv.splice(engineAt, 2);
// `--stream-batch` alone means on; `--stream-batch both` runs off and on
const sbIdx = argv.indexOf('--stream-batch');
const sbArg = sbIdx < 0 ? 'off' : argv[sbIdx + 1] === 'both' ? 'both' : 'on';
if (sbIdx >= 0) argv.splice(sbIdx, sbArg === 'both' ? 2 : 1);
const { values } = parseArgs({
  args: argv,
  options: {
    pack: { type: 'string' },
    ep: { type: 'string', default: 'cpu' },
    steps: { type: 'string', default: '1,2,4' },
    frames: { type: 'string', default: '60' },
    precision: { type: 'string' },
    decoder: { type: 'string' },
    threads: { type: 'string', default: '1' },
    'no-write': { type: 'boolean', default: false },
  },
  strict: true,
});
if (!values.pack) {
  console.error('usage: bench/lcm.ts --pack DIR [--ep cpu|cuda|webgpu] [--steps 1,2,4] [--stream-batch [both]] [--frames N]');
  process.exit(2);
}
const ep = values.ep as ExecutionProvider;
if (!['cpu', 'cuda', 'webgpu'].includes(ep)) throw new Error(`--ep must be cpu, cuda or webgpu`);
const precision = (values.precision ?? (ep === 'cpu' ? 'fp32' : 'fp16')) as Precision;
const stepList = values.steps!.split(',').map(Number);
const frames = Number(values.frames);
const sbModes = sbArg === 'both' ? [false, true] : [sbArg === 'on'];

const mb = (b: number): string => (b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 1);
const rss0 = process.memoryUsage().rss;
const pack = await loadPack(values.pack, { ep, precision, decoder: values.decoder as 'vae' | 'taesd' | undefined, threads: Number(values.threads), log: (m, e) => console.error(m, e ?? '') });
const rssLoaded = process.memoryUsage().rss;
console.error(`loaded ${pack.dir} on ${pack.ep}${pack.fallbackReason ? ` (asked ${pack.requestedEp}; fell back: ${pack.fallbackReason.split('\n')[0]})` : ''} in ${pack.loadMs.toFixed(0)} ms, warm-up ${pack.warmupMs.toFixed(0)} ms`);

const g = pack.geometry;
function rand(len: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}
const inputs = Array.from({ length: 8 }, (_, i) => ({ d: rand(g.imageLen, 2 * i + 1), l: rand(g.imageLen, 2 * i + 2) }));

interface Row {
  steps: number;
  sb: boolean;
  refMs: number;
  ms: Record<string, number>;
  frameMs: number[];
  fps: number;
  io: FrameIo;
  cacheBytes: number;
  refKvBytes: number;
  rss: number;
  live: number;
}

const rows: Row[] = [];
let peakRss = rssLoaded;
for (const steps of stepList) {
  for (const sb of sbModes) {
    const p = new LcmPipeline(pack, { steps, streamBatch: sb });
    const lat = await p.encode(rand(g.imageLen, 99));
    const r0 = performance.now();
    const ref = await p.computeReference(lat);
    const refMs = performance.now() - r0;
    p.useReference(ref);
    const warm = steps + 2; // fill the pipeline and caches before timing
    for (let f = 0; f < warm; f++) await p.push(inputs[f % 8].d, inputs[f % 8].l);
    const sums: Record<string, number> = {};
    const frameMs: number[] = [];
    const t0 = performance.now();
    for (let f = 0; f < frames; f++) {
      const a = performance.now();
      await p.push(inputs[f % 8].d, inputs[f % 8].l);
      frameMs.push(performance.now() - a);
      for (const [k, v] of Object.entries(p.io.ms)) sums[k] = (sums[k] ?? 0) + (v ?? 0);
    }
    const wall = performance.now() - t0;
    const ms = Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / frames]));
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    rows.push({ steps, sb, refMs, ms, frameMs: frameMs.sort((x, y) => x - y), fps: (frames * 1000) / wall, io: p.io, cacheBytes: p.cacheBytes, refKvBytes: p.refKvBytes, rss: process.memoryUsage().rss, live: p.ops.live });
    p.dispose();
    p.releaseReference(ref);
    console.error(`steps ${steps}${sb ? ' stream-batch' : ''}: ${fmt((frames * 1000) / wall)} fps, ${JSON.stringify(ms)}`);
  }
}
await disposePack(pack);

const stageCols = ['control', 'denoise', pack.decoder, pack.deviceResident ? 'glue' : 'host'];
const other = (r: Row): string => `${r.io.h2dBytes - r.io.frameH2dBytes} / ${r.io.d2hBytes - r.io.frameD2hBytes}`;
const frameBytes = (r: Row): string => `${r.io.frameH2dBytes} / ${r.io.frameD2hBytes}`;
const icd = process.env.VK_ICD_FILENAMES ?? process.env.VK_DRIVER_FILES;
const software = pack.ep === 'webgpu' && !!icd && /swiftshader|lvp/i.test(icd);
const lines = [
  `Machine: ${machine()}. Date: ${new Date().toISOString().slice(0, 10)}.`,
  `Pack: ${pack.manifest.model}${(pack.manifest.provenance as { random_weights?: boolean } | undefined)?.random_weights ? ' with random weights (exporter --random)' : ''} (${g.imageSize}² image, ${g.latentSize}² latent, cache ${g.sink}+${g.ring} slots), ${precision}, EP **${pack.ep}**${pack.fallbackReason ? ` (asked ${pack.requestedEp}: unavailable, fell back)` : ''}${software ? ` on **${icd} (software Vulkan on the CPU: its times say nothing about a GPU; the byte columns are the point)**` : ''}, ORT intra-op threads ${values.threads}, ${frames} timed frames after steps+2 warm-up frames, random control inputs (no face tracking, crop or paste).`,
  `Load ${fmt(pack.loadMs, 0)} ms (sessions + validation), warm-up ${fmt(pack.warmupMs, 0)} ms; pack files ${mb(pack.fileBytes)} MiB; RSS ${mb(rss0)} → ${mb(rssLoaded)} MiB after load, peak ${mb(peakRss)} MiB.`,
  '',
  `| steps | stream batch | reference (per portrait) ms | ${stageCols.map((s) => `${s} ms`).join(' | ')} | frame ms p50 / p90 | fps | frame pixels up / down B | other bytes up / down B | host tensors in / out B | caches (all steps) | ref K/V | device tensors held |`,
  `| ---: | :---: | ---: | ${stageCols.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
  ...rows.map((r) =>
    `| ${r.steps} | ${r.sb ? 'on' : 'off'} | ${fmt(r.refMs, 2)} | ${stageCols.map((s) => fmt(r.ms[s] ?? 0, 2)).join(' | ')} | ${fmt(pct(r.frameMs, 50), 2)} / ${fmt(pct(r.frameMs, 90), 2)} | ${fmt(r.fps)} | ${frameBytes(r)} | ${other(r)} | ${r.io.hostInputBytes} / ${r.io.hostOutputBytes} | ${mb(r.cacheBytes)} MiB | ${mb(r.refKvBytes)} MiB | ${r.live} |`),
  '',
  'Per frame, last timed frame. Stage columns: all steps (with stream batch one batched call each); `glue` = the device glue graphs (upload, concat, split, re-noise), `host` = typed-array work. On a device EP the stage times are mostly submission: the GPU work is waited for where the decoded image is read, so it lands in the decoder column; the frame column is the real cost. Bytes crossing host↔device: "frame pixels" = the driving crop and patch canvas up and the decoded image down (0 on the CPU EP, where host memory is the device\'s); "other" = everything else (timesteps, re-noise coefficients; on cuda every tensor of every run). "host tensors" = what this code creates and reads on any EP. "device tensors held" = GPU buffers the stream owns (constant from frame to frame = nothing leaks). With stream batch on, a frame\'s output appears steps−1 frames later.',
];
const body = lines.join('\n');
console.log(body);
const where = software ? `${pack.ep}-swiftshader` : pack.ep;
if (!values['no-write']) await writeSection(`lcm-${where}-${pack.manifest.model}`, `xportrait-lcm inference (${software ? 'webgpu on SwiftShader' : pack.ep}, ${pack.manifest.model} pack)`, body);
