/**
 * xportrait-lcm's torch engine side by side with the onnx engine, in one run, through the same
 * stream interface the renderer uses (uint8 frames + patch boxes in, uint8 frame out): frames/s
 * at each step count with stream batch off and on, several sessions batched into one call, and
 * the bytes per frame — over the worker's socket, and of those the frame pixels.
 *
 *   node --import tsx bench/lcm.ts --engine torch --weights tiny|random|FILE [--device cpu|cuda]
 *       [--pack DIR (the onnx side)] [--steps 1,2,4] [--sessions 1,2,4] [--frames N]
 *       [--threads N] [--python PATH] [--no-write]
 *
 * Writes its tables into docs/BENCHMARKS.md (section `lcm-torch-<device>-<model>`) unless --no-write.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { lcmDefaults, type LcmSettings } from '../server/config.ts';
import type { PatchBox } from '../server/renderers/xportrait-lcm/patches.ts';
import { LocalStream, type LcmStream } from '../server/renderers/xportrait-lcm/stream.ts';
import { closeTorchWorkers, ensureTorchWorker } from '../server/renderers/xportrait-lcm/torch/host.ts';
import { TorchStream } from '../server/renderers/xportrait-lcm/torch/stream.ts';
import { fmt, machine, pct, writeSection } from './report.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    engine: { type: 'string' },
    weights: { type: 'string', default: 'tiny' },
    device: { type: 'string', default: 'cpu' },
    pack: { type: 'string' },
    steps: { type: 'string', default: '1,2,4' },
    sessions: { type: 'string', default: '1,2,4' },
    frames: { type: 'string', default: '40' },
    threads: { type: 'string', default: '1' },
    python: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
  strict: true,
});

const settings: LcmSettings = {
  ...lcmDefaults(),
  engine: 'torch',
  weights: values.weights,
  device: values.device!,
  threads: Number(values.threads),
  batchWait: 20,
  ...(values.python ? { python: values.python } : {}),
};
const frames = Number(values.frames);
const host = await ensureTorchWorker(settings);

let seed = 1;
const rgb = (len: number): Uint8Array => {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    out[i] = seed & 255;
  }
  return out;
};

async function open(engine: 'torch' | 'onnx', steps: number, sb: boolean): Promise<LcmStream> {
  if (engine === 'torch') {
    return TorchStream.open({ socket: host.socket, weights: settings.weights!, attachTimeoutMs: 60_000,
      stream: { steps, stream_batch: sb, seed: 1, noise: 'fixed', cfg: 1, init: 'noise', rule: 'skip-step', decoder: 'taesd', output: 'u8', warmup: 0 } });
  }
  return LocalStream.open({ pack: values.pack!, load: { ep: 'cpu', precision: 'fp32', threads: Number(values.threads) }, pipeline: { steps, streamBatch: sb } });
}

interface Run {
  fps: number;
  ms: number[];
  worker: number;
  up: number;
  down: number;
  other: number;
  rows: number;
  calls: number;
}

/** `n` sessions pushing together, frame after frame; aggregate frames/s and per-frame figures of session 0. */
async function run(engine: 'torch' | 'onnx', steps: number, sb: boolean, n: number): Promise<Run> {
  const streams = await Promise.all(Array.from({ length: n }, () => open(engine, steps, sb)));
  const S = streams[0].info.imageSize;
  const boxes: PatchBox[] = [[S / 8, S / 4, (3 * S) / 8, S / 2], [(5 * S) / 8, S / 4, (7 * S) / 8, S / 2], [(3 * S) / 8, (5 * S) / 8, (5 * S) / 8, (7 * S) / 8]];
  for (const s of streams) await s.useReference(await s.encodeReference(rgb(3 * S * S)));
  const inputs = Array.from({ length: 8 }, () => rgb(3 * S * S));
  const push = (i: number) => engine === 'torch' ? Promise.all(streams.map((s) => s.push(inputs[i % 8], boxes))) : (async () => {
    for (const s of streams) await s.push(inputs[i % 8], boxes); // one thread: the onnx sessions take turns
  })();
  for (let f = 0; f < steps + 2; f++) await push(f);
  const ms: number[] = [];
  let worker = 0, rows = 0, calls = 0;
  const t0 = performance.now();
  for (let f = 0; f < frames; f++) {
    const a = performance.now();
    await push(f);
    ms.push(performance.now() - a);
    worker += streams[0].io.ms.worker ?? 0;
    if (streams[0] instanceof TorchStream) {
      rows += streams[0].lastBatch.rows;
      calls += streams[0].lastBatch.calls;
    }
  }
  const wall = performance.now() - t0;
  const io = streams[0].io;
  const r: Run = { fps: (n * frames * 1000) / wall, ms: ms.sort((x, y) => x - y), worker: worker / frames, up: io.hostInputBytes, down: io.hostOutputBytes,
    other: io.h2dBytes - io.frameH2dBytes, rows: rows / frames, calls: calls / frames };
  for (const s of streams) await s.dispose();
  return r;
}

const stepList = values.steps!.split(',').map(Number);
const lines: string[] = [];
const info = (await open('torch', 1, false)) as TorchStream;
const S = info.info.imageSize;
await info.dispose();
lines.push(
  `Machine: ${machine()}; load average ${loadavg()[0].toFixed(1)} when the run started (the machine is shared: compare within this table). Date: ${new Date().toISOString().slice(0, 10)}.`,
  `torch engine: --weights ${settings.weights} (${S}² image), device ${info.info.ep}, ${info.info.precision}, ${settings.threads} torch thread(s), worker process over a Unix socket; onnx engine: ${values.pack ? `pack ${values.pack}, cpu EP, fp32, ${values.threads} ORT thread(s), in this thread` : '(no --pack: not run)'}. ${frames} timed frames after steps+2 warm-up frames, random frames (no face tracking, crop or paste).`,
  '',
  '| steps | stream batch | torch fps | torch frame ms p50 / p90 | worker ms per frame | onnx fps | torch / onnx | socket bytes up / down per frame | of which the frame (3·S²) | host↔device bytes besides the frame |',
  '| ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
);
for (const steps of stepList) {
  for (const sb of steps > 1 ? [false, true] : [false]) {
    const t = await run('torch', steps, sb, 1);
    const o = values.pack ? await run('onnx', steps, sb, 1) : null;
    lines.push(`| ${steps} | ${sb ? 'on' : 'off'} | ${fmt(t.fps)} | ${fmt(pct(t.ms, 50), 2)} / ${fmt(pct(t.ms, 90), 2)} | ${fmt(t.worker, 2)} | ${o ? fmt(o.fps) : '–'} | ${o ? fmt(t.fps / o.fps, 2) : '–'} | ${t.up} / ${t.down} | ${3 * S * S} | ${t.other} |`);
    console.error(lines.at(-1));
  }
}
const sessSteps = Math.min(2, Math.max(...stepList));
lines.push(
  '',
  `Sessions batched (${sessSteps} steps, stream batch on): every session pushes a frame, the worker runs the ready ones in one call (torch); the onnx sessions share one loaded pack in one thread and take turns.`,
  '',
  '| sessions | torch fps (all sessions) | torch rows per call | torch calls per frame | onnx fps (all sessions) | torch / onnx |',
  '| ---: | ---: | ---: | ---: | ---: | ---: |',
);
for (const n of values.sessions!.split(',').map(Number)) {
  const t = await run('torch', sessSteps, true, n);
  const o = values.pack ? await run('onnx', sessSteps, true, n) : null;
  lines.push(`| ${n} | ${fmt(t.fps)} | ${fmt(t.rows / Math.max(t.calls, 1), 1)} | ${fmt(t.calls, 1)} | ${o ? fmt(o.fps) : '–'} | ${o ? fmt(t.fps / o.fps, 2) : '–'} |`);
  console.error(lines.at(-1));
}
lines.push(
  '',
  'torch fps = pushes answered per second through the socket (one session: frames/s; several: all sessions together). "worker ms" = the worker\'s own time for the frame (all its steps and the decode, batched with the other sessions\' frames). Socket bytes include the 8-byte prefix and the msgpack headers. On a CPU the host is the device: nothing crosses a bus (0); on CUDA the frame goes up and down once and, besides it, only the per-call indices (timesteps, slots, positions, masks: this session\'s share).',
);
await closeTorchWorkers();
const body = lines.join('\n');
console.log(body);
if (!values['no-write']) await writeSection(`lcm-torch-${info.info.ep}-${settings.weights === 'tiny' ? 'tiny' : 'sd15'}`, `xportrait-lcm torch engine vs onnx engine (${info.info.ep}, ${settings.weights} weights)`, body);
