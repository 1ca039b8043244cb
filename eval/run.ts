/**
 * Quality harness: renders a driving video through the mesh-warp renderer offline and writes
 * metrics.json, metrics.md and contact.png (driving | output, every Nth frame).
 *
 *   tsx eval/run.ts --portrait IMG --driving VIDEO.y4m --out DIR [--size 512] [--every 15]
 *
 * A ground-truth file next to the video (VIDEO.json, written by eval/make-driving.ts) adds the
 * driver tracker's pose error against the script.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp, { type OverlayOptions } from 'sharp';
import { i420ToRgba } from '../server/media/convert.ts';
import type { I420Frame } from '../server/media/frame.ts';
import { loadImage } from './make-driving.ts';
import { evaluate, type EvalResult } from './metrics.ts';
import { readY4m } from '../server/media/y4m.ts';

async function toPng(f: I420Frame, w: number): Promise<Buffer> {
  const rgba = { width: f.width, height: f.height, data: new Uint8Array(f.width * f.height * 4) };
  i420ToRgba(f, rgba);
  return sharp(Buffer.from(rgba.data.buffer, rgba.data.byteOffset, rgba.data.byteLength), { raw: { width: f.width, height: f.height, channels: 4 } })
    .resize(w, Math.round((f.height * w) / f.width))
    .png()
    .toBuffer();
}

export async function contactSheet(driving: I420Frame[], outputs: I420Frame[], every: number, path: string): Promise<void> {
  const tw = 192;
  const dh = Math.round((driving[0].height * tw) / driving[0].width);
  const oh = Math.round((outputs[0].height * tw) / outputs[0].width);
  const rowH = Math.max(dh, oh);
  const idx = [];
  for (let k = 0; k < outputs.length; k += every) idx.push(k);
  const cols = 2;
  const rows = Math.ceil(idx.length / cols);
  const comps: OverlayOptions[] = [];
  for (let j = 0; j < idx.length; j++) {
    const k = idx[j];
    const x = (j % cols) * (2 * tw + 16);
    const y = Math.floor(j / cols) * (rowH + 8);
    comps.push({ input: await toPng(driving[k], tw), left: x, top: y });
    comps.push({ input: await toPng(outputs[k], tw), left: x + tw, top: y });
  }
  await sharp({ create: { width: cols * (2 * tw + 16), height: rows * (rowH + 8), channels: 3, background: '#202020' } })
    .composite(comps)
    .png()
    .toFile(path);
}

const f3 = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3));

export function markdown(r: EvalResult, title: string): string {
  const a = r.aggregate;
  return [
    `# ${title}`,
    '',
    '| metric | value |',
    '| --- | --- |',
    `| frames (driver tracked / output tracked) | ${a.frames} (${a.driverTracked} / ${a.outputTracked}) |`,
    `| identity: cos(output, portrait) ↑ | ${f3(a.identityPortrait)} |`,
    `| identity: cos(output, driver) ↓ | ${f3(a.identityDriver)} |`,
    `| identity, centred cosine (+1 portrait … −1 driver) ↑ | ${f3(a.identityCentred)} |`,
    `| expression error (canonical, IOD units) ↓ | ${f3(a.expressionError)} |`,
    `| eye openness error ↓ | ${f3(a.eyeError)} |`,
    `| mouth openness error ↓ | ${f3(a.mouthError)} |`,
    `| mouth openness correlation driver↔output ↑ | ${f3(a.mouthCorrelation)} |`,
    `| pose error, mean / p95 (deg) ↓ | ${f3(a.poseError)} / ${f3(a.poseErrorP95)} |`,
    `| driver tracker vs script pose error (deg) | ${f3(a.trackerPoseError)} |`,
    `| jitter on still driver: mean abs ΔY / landmark motion (IOD) ↓ | ${f3(a.jitterY)} / ${f3(a.jitterLandmarks)} |`,
    `| track / render ms (p50) | ${f3(a.trackMsP50)} / ${f3(a.renderMsP50)} |`,
    '',
  ].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (k: string, d?: string): string => {
    const i = process.argv.indexOf(`--${k}`);
    if (i >= 0) return process.argv[i + 1];
    if (d === undefined) {
      console.error('usage: tsx eval/run.ts --portrait IMG --driving VIDEO.y4m --out DIR [--size 512] [--every 15]');
      process.exit(2);
    }
    return d;
  };
  const portraitPath = arg('portrait');
  const drivingPath = arg('driving');
  const outDir = arg('out');
  const size = Number(arg('size', '512'));
  const every = Number(arg('every', '15'));
  (async () => {
    mkdirSync(outDir, { recursive: true });
    const { frames } = await readY4m(drivingPath);
    const gtPath = drivingPath.replace(/\.y4m$/, '') + '.json';
    const script = existsSync(gtPath) ? JSON.parse(readFileSync(gtPath, 'utf8')).script : undefined;
    const t0 = performance.now();
    const r = await evaluate({ portrait: await loadImage(portraitPath), frames, script, size });
    writeFileSync(join(outDir, 'metrics.json'), JSON.stringify({ portrait: portraitPath, driving: drivingPath, size, aggregate: r.aggregate, frames: r.frames }, null, 1));
    const md = markdown(r, `mesh-warp: ${portraitPath} driven by ${drivingPath}`);
    writeFileSync(join(outDir, 'metrics.md'), md);
    await contactSheet(frames, r.outputs, every, join(outDir, 'contact.png'));
    console.log(md);
    console.log(`(${frames.length} frames in ${((performance.now() - t0) / 1000).toFixed(1)} s; wrote ${outDir}/metrics.json, metrics.md, contact.png)`);
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
