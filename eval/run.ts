/**
 * Quality harness, one case: renders a driving clip through the mesh-warp renderer offline and
 * writes metrics.json, metrics.md, plot.png (driver vs output pose, mouth, eyes per frame) and
 * contact.png (driving | output).
 *
 *   npm run eval -- --portrait IMG --driving CLIP --out DIR [--framing head|bust|full] [--zoom 1]
 *                   [--size 512] [--every 15] [--then CLIP2 --cut-after N]
 *
 * CLIP is a .y4m or a frame strip (.jpg + .json, see eval/clip.ts). `--then` splices a second
 * clip after N frames of the first (a driver change) and adds the cut metrics. A ground-truth file
 * next to a .y4m (VIDEO.json, written by eval/make-driving.ts) adds the driver tracker's pose error
 * against the script.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RenderParams } from '../server/renderers/types.ts';
import { loadClip, sliceFrames } from './clip.ts';
import { loadImage } from './make-driving.ts';
import { evaluate, type Aggregate, type EvalResult } from './metrics.ts';
import { contactSheet, plotFrames } from './plot.ts';

const f3 = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3));
const f4 = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(4));
const f1 = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(1));

/** The rows of one case's table: [label, value]. */
export function rows(a: Aggregate): Array<[string, string]> {
  const r: Array<[string, string]> = [
    ['frames (driver tracked / output tracked)', `${a.frames} (${a.driverTracked} / ${a.outputTracked})`],
    ['identity: cos(output, portrait) ↑', f3(a.identityPortrait)],
    ['identity: cos(output, driver) ↓', f3(a.identityDriver)],
    ['identity, centred cosine (+1 portrait … −1 driver) ↑', f3(a.identityCentred)],
    ['expression error (canonical, IOD units) ↓', f3(a.expressionError)],
    ['eye openness error ↓', f3(a.eyeError)],
    ['mouth openness error ↓', f3(a.mouthError)],
    ['mouth openness correlation driver↔output ↑', f3(a.mouthCorrelation)],
    ['pose error, mean / p95 (deg) ↓', `${f3(a.poseError)} / ${f3(a.poseErrorP95)}`],
    ['output face fraction (face width / output width)', f3(a.outputFaceFraction)],
    ['jitter on a still driver: mean abs ΔY ↓', f3(a.jitterY)],
    ['jitter: output / driver landmark motion per frame (IOD), raw trackers', `${f4(a.jitterLandmarks)} / ${f4(a.driverJitterLandmarks)}`],
    ['jitter: output / driver, one fixed crop per side', `${f4(a.jitterFixedCrop)} / ${f4(a.driverJitterFixedCrop)}`],
    ['jitter: raw judge on the still neutral portrait (its floor) / warp vertices (no tracker)', `${f4(a.jitterFloor)} / ${f4(a.jitterMesh)}`],
    ['track / warp ms (p50)', `${f3(a.trackMsP50)} / ${f3(a.renderMsP50)}`],
  ];
  if (a.trackerPoseError !== null) r.push(['driver tracker vs script pose error (deg)', f3(a.trackerPoseError)]);
  if (a.cut) {
    r.push(['after the cut: max face offset in the 1st s / mean in the 2nd s (face widths)', `${f3(a.cut.maxOffset1s)} / ${f3(a.cut.meanOffsetAfter1s)}`]);
    r.push(['after the cut: mean head rotation from neutral in the 2nd s (deg)', f1(a.cut.meanRotationAfter1s)]);
    r.push(['after the cut: within 0.1 face widths of neutral for 0.5 s from (ms)', a.cut.settleMs === null ? 'never' : f1(a.cut.settleMs)]);
  }
  return r;
}

export function markdown(r: EvalResult, title: string): string {
  return [`# ${title}`, '', '| metric | value |', '| --- | --- |', ...rows(r.aggregate).map(([k, v]) => `| ${k} | ${v} |`), ''].join('\n');
}

export interface CaseSpec {
  portrait: string;
  driving: string;
  /** A second clip spliced after `cutAfter` frames of the first. */
  then?: string;
  cutAfter?: number;
  params?: Partial<RenderParams>;
  size?: number;
}

/** Runs one case and writes its files into `outDir`; returns the result. */
export async function runCase(spec: CaseSpec, outDir: string, opts: { every?: number; title?: string; keepFrames?: boolean } = {}): Promise<EvalResult> {
  mkdirSync(outDir, { recursive: true });
  const a = await loadClip(spec.driving);
  let frames = a.frames;
  let still = a.still;
  let cut: number | undefined;
  if (spec.then) {
    const b = await loadClip(spec.then);
    cut = Math.min(spec.cutAfter ?? 75, a.frames.length);
    const first = sliceFrames(a.frames, 0, cut, a.fps);
    frames = [...first, ...sliceFrames(b.frames, 0, b.frames.length, b.fps, (cut * 1000) / a.fps)];
    still = a.still && a.still[1] <= cut ? a.still : undefined;
  }
  const gtPath = spec.driving.replace(/\.y4m$/, '') + '.json';
  const script = /\.y4m$/.test(spec.driving) && existsSync(gtPath) ? JSON.parse(readFileSync(gtPath, 'utf8')).script : undefined;
  const r = await evaluate({ portrait: await loadImage(spec.portrait), frames, script, size: spec.size ?? 512, params: spec.params, still, cut, fps: a.fps });
  const title = opts.title ?? `mesh-warp: ${spec.portrait} driven by ${spec.driving}${spec.then ? ` then ${spec.then}` : ''}`;
  writeFileSync(join(outDir, 'metrics.json'), JSON.stringify({ ...spec, aggregate: r.aggregate, frames: r.frames }, null, 1));
  writeFileSync(join(outDir, 'metrics.md'), markdown(r, title));
  await plotFrames(r.frames, join(outDir, 'plot.png'), { title, cut });
  await contactSheet(frames, r.outputs, opts.every ?? 15, join(outDir, 'contact.png'), { cols: 4, tw: 128 });
  if (!opts.keepFrames) r.outputs.length = 0;
  return r;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (k: string, d?: string): string => {
    const i = process.argv.indexOf(`--${k}`);
    if (i >= 0) return process.argv[i + 1];
    if (d === undefined) {
      console.error('usage: npm run eval -- --portrait IMG --driving CLIP --out DIR [--framing head|bust|full] [--zoom Z] [--size 512] [--every 15] [--then CLIP2 --cut-after N]');
      process.exit(2);
    }
    return d;
  };
  const params: Partial<RenderParams> = {};
  if (process.argv.includes('--framing')) params.framing = arg('framing') as RenderParams['framing'];
  if (process.argv.includes('--zoom')) params.zoom = Number(arg('zoom'));
  const spec: CaseSpec = {
    portrait: arg('portrait'),
    driving: arg('driving'),
    then: process.argv.includes('--then') ? arg('then') : undefined,
    cutAfter: Number(arg('cut-after', '75')),
    params,
    size: Number(arg('size', '512')),
  };
  const outDir = arg('out');
  const t0 = performance.now();
  runCase(spec, outDir, { every: Number(arg('every', '15')) })
    .then((r) => {
      console.log(markdown(r, `mesh-warp: ${spec.portrait} driven by ${spec.driving}`));
      console.log(`(${r.frames.length} frames in ${((performance.now() - t0) / 1000).toFixed(1)} s; wrote ${outDir}/metrics.json, metrics.md, plot.png, contact.png)`);
    })
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
}
