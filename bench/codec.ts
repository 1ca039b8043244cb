/**
 * `npm run bench:codec`: the VP8 codec backends side by side — native (ffmpeg processes) and
 * wasm (libvpx in a worker thread) — encoding and decoding the same moving picture at 512² and
 * 1280×720, one encoder and one decoder at a time, frame after frame. Per backend: each call as
 * the frame loop waits for it (thread hop or pipe included), the CPU of the whole process tree
 * (this process, its threads and the codec child processes) per frame, bitrate and PSNR.
 *
 *   npm run bench:codec -- [--frames=150] [--fps=30] [--cpu-used=N,N,…] [--no-write]
 *
 * --cpu-used adds native rows at those libvpx speeds (the default rows use each backend's default).
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { DEFAULT_CPU_USED, type CodecBackend, type VideoCodec } from '../server/media/codec.ts';
import { bundledFfmpeg, probeFfmpeg } from '../server/media/ffmpeg.ts';
import { openDecoder, openEncoder } from '../server/media/open-codec.ts';
import { sampleTree } from '../test/support/proc.ts';
import { cropScaleI420, psnrI420, rgbaToI420 } from '../server/media/convert.ts';
import { allocI420, planes, type I420Frame } from '../server/media/frame.ts';
import { machine, percentile, printer, writeSection } from './report.ts';

/** Everything printed also goes into this benchmark's section of docs/BENCHMARKS.md. */
const { print, lines } = printer();

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '150' },
    'cpu-used': { type: 'string' },
    fps: { type: 'string', default: '30' },
    'no-write': { type: 'boolean', default: false },
  },
});
const FRAMES = Number(values.frames);
const EXTRA_SPEEDS = values['cpu-used'] ? values['cpu-used'].split(',').map(Number) : [];
const FPS = Number(values.fps);
const SIZES: [number, number][] = [
  [512, 512],
  [1280, 720],
];

async function loadPortrait(): Promise<I420Frame> {
  const { data, info } = await sharp(fileURLToPath(new URL('../test/fixtures/astronaut.png', import.meta.url)))
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const f = allocI420(info.width & ~1, info.height & ~1);
  rgbaToI420({ width: info.width, height: info.height, data }, f);
  return f;
}

/** `src` translated by (dx, dy) luma pixels with wrap-around: steady motion for the encoder. */
function translate(src: I420Frame, dx: number, dy: number, dst: I420Frame): void {
  const s = planes(src), d = planes(dst);
  const move = (sp: Uint8Array, dp: Uint8Array, w: number, h: number, ox: number, oy: number) => {
    for (let y = 0; y < h; y++) {
      const sy = (((y + oy) % h) + h) % h;
      const sx = ((ox % w) + w) % w;
      const row = sp.subarray(sy * w, sy * w + w);
      dp.set(row.subarray(sx), y * w);
      dp.set(row.subarray(0, sx), y * w + w - sx);
    }
  };
  move(s.y, d.y, src.width, src.height, dx, dy);
  move(s.u, d.u, s.cw, s.ch, dx >> 1, dy >> 1);
  move(s.v, d.v, s.cw, s.ch, dx >> 1, dy >> 1);
}

interface Row {
  backend: string;
  size: string;
  cpuMsPerFrame: number;
  encP50: number;
  encP95: number;
  encCallP50: number;
  decP50: number;
  decP95: number;
  decCallP50: number;
  kbps: number;
  psnr: number;
  minPsnr: number;
  bitrate: number;
  cpuUsed: number;
}

async function benchSize(backend: CodecBackend, cpuUsed: number | undefined, portrait: I420Frame, width: number, height: number, codec: VideoCodec = 'vp8'): Promise<Row> {
  const still = allocI420(width, height);
  cropScaleI420(portrait, still, 'cover');
  const frame = allocI420(width, height);
  const encoder = await openEncoder(backend, { width, height, fps: FPS, cpuUsed }, codec);
  const decoder = await openDecoder(backend, codec);
  // One frame each way before counting: process and worker start-up is not the per-frame cost.
  translate(still, 0, 0, frame);
  await decoder.decode((await encoder.encode(frame)).data, 0);
  const cpu0 = sampleTree(process.pid);
  let cpu1 = cpu0;
  const enc: number[] = [], encCall: number[] = [], dec: number[] = [], decCall: number[] = [], psnr: number[] = [];
  let bytes = 0;
  try {
    for (let i = 0; i < FRAMES; i++) {
      translate(still, i * 3, i, frame);
      // After the warm-up frame at 0: timestamps keep their spacing (the wasm encoder reads its rate from them).
      frame.timestamp = ((i + 1) * 1000) / FPS;
      let t0 = performance.now();
      const packet = await encoder.encode(frame);
      encCall.push(performance.now() - t0);
      enc.push(encoder.lastMs);
      bytes += packet.data.length;
      t0 = performance.now();
      const picture = await decoder.decode(packet.data, packet.timestamp);
      decCall.push(performance.now() - t0);
      dec.push(decoder.lastMs);
      if (!picture) throw new Error(`frame ${i} decoded to nothing`);
      psnr.push(psnrI420(frame, picture));
    }
    cpu1 = sampleTree(process.pid);
  } finally {
    await Promise.all([encoder.close(), decoder.close()]);
  }
  return {
    backend: codec === 'h264' ? `${backend.name} H.264` : backend.name,
    size: `${width}×${height}`,
    cpuMsPerFrame: ((cpu1.cpuS - cpu0.cpuS) * 1000) / FRAMES,
    encP50: percentile(enc, 50),
    encP95: percentile(encCall, 95),
    encCallP50: percentile(encCall, 50),
    decP50: percentile(dec, 50),
    decP95: percentile(decCall, 95),
    decCallP50: percentile(decCall, 50),
    kbps: (bytes * 8 * FPS) / FRAMES / 1000,
    psnr: psnr.reduce((a, b) => a + b, 0) / psnr.length,
    minPsnr: Math.min(...psnr),
    bitrate: encoder.settings.bitrate,
    cpuUsed: encoder.settings.cpuUsed,
  };
}

const portrait = await loadPortrait();
const native = await probeFfmpeg(bundledFfmpeg());
const cases: Array<{ backend: CodecBackend; cpuUsed?: number }> = [{ backend: { name: 'wasm' } }];
if (native.available) {
  const nb: CodecBackend = { name: 'native', ffmpegPath: native.path };
  cases.push({ backend: nb }, ...EXTRA_SPEEDS.map((cpuUsed) => ({ backend: nb, cpuUsed })));
} else {
  print(`native codec unavailable: ${native.reason}`);
}
const rows: Row[] = [];
for (const [w, h] of SIZES) for (const c of cases) rows.push(await benchSize(c.backend, c.cpuUsed, portrait, w, h));
// H.264 (what OBS and ffmpeg's WHIP output send) at the sizes streamers use; native only.
if (native.available) for (const [w, h] of [[1280, 720], [1920, 1080]]) rows.push(await benchSize({ name: 'native', ffmpegPath: native.path }, undefined, portrait, w, h, 'h264'));

const f = (n: number) => n.toFixed(2);
const deno = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
const runtime = deno ? `Deno ${deno.version.deno}` : `Node ${process.versions.node}`;
print(`VP8 (wasm and native) and H.264 (native: libx264 ultrafast/zerolatency, ffmpeg's decoder), ${FRAMES} frames of a moving picture per row, ${FPS} fps, ${runtime}. Default speeds: native cpu-used ${DEFAULT_CPU_USED.native}, wasm ${DEFAULT_CPU_USED.wasm}.`);
print('');
print('| codec | size | cpu-used (VP8) | CPU ms per frame (encode + decode, all threads and processes) | encode call p50 / p95 | decode call p50 / p95 | target kbps | actual kbps | luma PSNR dB mean (min) |');
print('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  print(
    `| ${r.backend} | ${r.size} | ${r.backend.includes('H.264') ? '–' : r.cpuUsed} | ${f(r.cpuMsPerFrame)} | ${f(r.encCallP50)} / ${f(r.encP95)} | ${f(r.decCallP50)} / ${f(r.decP95)} | ${Math.round(r.bitrate / 1000)} | ${Math.round(r.kbps)} | ${r.psnr.toFixed(1)} (${r.minPsnr.toFixed(1)}) |`,
  );
}
print('');
for (const [w, h] of SIZES) {
  const size = `${w}×${h}`;
  const wasm = rows.find((r) => r.backend === 'wasm' && r.size === size);
  const nat = rows.find((r) => r.backend === 'native' && r.size === size && r.cpuUsed === DEFAULT_CPU_USED.native);
  if (wasm && nat) print(`- ${size}: native uses ${f(nat.cpuMsPerFrame / wasm.cpuMsPerFrame)}× the wasm codec's CPU per frame, at ${(nat.psnr - wasm.psnr).toFixed(1)} dB PSNR difference.`);
}
print('- *call*: the time the frame loop waits (the wasm codec\'s thread hop, or the native codec\'s pipes both ways). The two calls run one after the other, so a process tree\'s CPU per frame is one core\'s cost.');

if (!values['no-write']) await writeSection('codec', 'VP8 codec (`npm run bench:codec`)', `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}.\n\n${lines.join('\n')}`);
