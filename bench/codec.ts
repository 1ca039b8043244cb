/**
 * Micro-benchmark of the VP8 codec workers: milliseconds per encode and decode (codec time inside
 * the worker, and the whole call as the frame loop sees it, thread hops included), at 512² and
 * 1280×720, over a moving picture. Prints a Markdown table.
 *
 *   node --import tsx bench/codec.ts [--frames=150] [--cpu-used=N] [--fps=30]
 *
 * Without --cpu-used the encoder's default speed is measured.
 *
 * Runs one encoder and one decoder at a time, frame after frame, so each figure is one core's cost.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { Vp8Decoder, Vp8Encoder } from '../server/media/codec.ts';
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
  },
});
const FRAMES = Number(values.frames);
const CPU_USED = values['cpu-used'] === undefined ? undefined : Number(values['cpu-used']);
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
  size: string;
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

async function benchSize(portrait: I420Frame, width: number, height: number): Promise<Row> {
  const still = allocI420(width, height);
  cropScaleI420(portrait, still, 'cover');
  const frame = allocI420(width, height);
  const encoder = await Vp8Encoder.create({ width, height, fps: FPS, cpuUsed: CPU_USED });
  const decoder = await Vp8Decoder.create();
  const enc: number[] = [], encCall: number[] = [], dec: number[] = [], decCall: number[] = [], psnr: number[] = [];
  let bytes = 0;
  try {
    for (let i = 0; i < FRAMES; i++) {
      translate(still, i * 3, i, frame);
      frame.timestamp = (i * 1000) / FPS;
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
  } finally {
    await Promise.all([encoder.close(), decoder.close()]);
  }
  return {
    size: `${width}×${height}`,
    encP50: percentile(enc, 50),
    encP95: percentile(enc, 95),
    encCallP50: percentile(encCall, 50),
    decP50: percentile(dec, 50),
    decP95: percentile(dec, 95),
    decCallP50: percentile(decCall, 50),
    kbps: (bytes * 8 * FPS) / FRAMES / 1000,
    psnr: psnr.reduce((a, b) => a + b, 0) / psnr.length,
    minPsnr: Math.min(...psnr),
    bitrate: encoder.settings.bitrate,
    cpuUsed: encoder.settings.cpuUsed,
  };
}

const portrait = await loadPortrait();
const rows: Row[] = [];
for (const [w, h] of SIZES) rows.push(await benchSize(portrait, w, h));

const f = (n: number) => n.toFixed(2);
const deno = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
const runtime = deno ? `Deno ${deno.version.deno}` : `Node ${process.versions.node}`;
print(`VP8 (libvpx via libav.js wasm, one thread), ${FRAMES} frames of a moving picture, ${FPS} fps, cpu-used ${rows[0].cpuUsed}, ${runtime}`);
print('');
print('| size | encode ms p50 | encode ms p95 | encode call p50 | decode ms p50 | decode ms p95 | decode call p50 | target kbps | actual kbps | luma PSNR dB mean (min) |');
print('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  print(
    `| ${r.size} | ${f(r.encP50)} | ${f(r.encP95)} | ${f(r.encCallP50)} | ${f(r.decP50)} | ${f(r.decP95)} | ${f(r.decCallP50)} | ${Math.round(r.bitrate / 1000)} | ${Math.round(r.kbps)} | ${r.psnr.toFixed(1)} (${r.minPsnr.toFixed(1)}) |`,
  );
}

await writeSection('codec', 'VP8 codec workers (`npm run bench:codec`)', `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}.\n\n${lines.join('\n')}`);
