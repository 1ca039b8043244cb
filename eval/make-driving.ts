/**
 * Synthetic driving videos with ground truth.
 *
 * How: the fixture portrait is fitted to the video size and rigged exactly as the mesh-warp
 * renderer rigs a portrait (face mesh + iris + rings + border, see server/renderers/mesh-warp/
 * rig.ts). Each frame of a script (eval/script.ts: yaw, pitch, roll, blinks, smile, mouth
 * opening) becomes a Motion — a rotation about the face centre, canonical-frame expression
 * offsets for smile / jaw drop, lid-gap ratios for blinks — and the same piecewise-affine warp
 * renders it. The script values are written next to the video (`.json`), so the tracker and the
 * renderer can be scored against what was actually performed.
 *
 *   tsx eval/make-driving.ts [--portrait test/fixtures/grace_hopper.jpg] [--out out/driving.y4m]
 *                            [--width 640] [--height 480] [--fps 30] [--seconds 11]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { allocI420, type I420Frame, type RgbaImage } from '../server/media/frame.ts';
import { preparePortrait } from '../server/renderers/mesh-warp/index.ts';
import { computeTargets } from '../server/renderers/mesh-warp/rig.ts';
import { warpFrame } from '../server/renderers/mesh-warp/warp.ts';
import { defaultScript, motionForFrame, type ScriptFrame } from './script.ts';
import { writeY4m } from '../server/media/y4m.ts';

export async function loadImage(path: string): Promise<RgbaImage> {
  const { data, info } = await sharp(path).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** Renders a script into frames (in memory). */
export async function synthesiseDriving(portrait: RgbaImage, script: ScriptFrame[], width: number, height: number, fps: number): Promise<I420Frame[]> {
  const p = await preparePortrait(portrait, width, height);
  const frames: I420Frame[] = [];
  for (let k = 0; k < script.length; k++) {
    const f = allocI420(width, height, (k * 1000) / fps);
    computeTargets(p.rig, motionForFrame(script[k]), p.targets);
    warpFrame(p.rig, p.targets, f, p.scratch);
    frames.push(f);
  }
  return frames;
}

export async function makeDriving(opts: { portrait: string; out: string; width?: number; height?: number; fps?: number; seconds?: number; log?: (s: string) => void }): Promise<{ frames: number; script: ScriptFrame[] }> {
  const width = opts.width ?? 640;
  const height = opts.height ?? 480;
  const fps = opts.fps ?? 30;
  const script = defaultScript(fps, opts.seconds ?? 11);
  const frames = await synthesiseDriving(await loadImage(opts.portrait), script, width, height, fps);
  mkdirSync(dirname(resolve(opts.out)), { recursive: true });
  await writeY4m(opts.out, { width, height, fps }, frames.length, (i) => frames[i]);
  writeFileSync(opts.out.replace(/\.y4m$/, '') + '.json', JSON.stringify({ portrait: opts.portrait, width, height, fps, script }, null, 1));
  opts.log?.(`wrote ${opts.out} (${frames.length} frames ${width}×${height} @ ${fps} fps) and its ground truth .json`);
  return { frames: frames.length, script };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (k: string, d: string): string => {
    const i = process.argv.indexOf(`--${k}`);
    return i >= 0 ? process.argv[i + 1] : d;
  };
  makeDriving({
    portrait: arg('portrait', 'test/fixtures/grace_hopper.jpg'),
    out: arg('out', 'out/driving.y4m'),
    width: Number(arg('width', '640')),
    height: Number(arg('height', '480')),
    fps: Number(arg('fps', '30')),
    seconds: Number(arg('seconds', '11')),
    log: console.log,
  }).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
