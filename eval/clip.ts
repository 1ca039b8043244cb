/**
 * Driving clips for the eval harness and the tests: `.y4m` files, or a *frame strip* — one JPEG
 * with the frames stacked top to bottom plus a sidecar `.json` (fps, frame size, count, where the
 * footage came from). A strip keeps a few seconds of real talking-face video at a few hundred kB,
 * decodable with sharp (already a dependency), where the same frames as y4m would be tens of MB.
 *
 * Make one from any video with ffmpeg (frame height a multiple of 16, so no JPEG block straddles two
 * frames):
 *
 *   ffmpeg -ss 4 -t 6 -i IN.mp4 -vf "crop=320:240:40:60,scale=256:192,fps=25,tile=1x150" -frames:v 1 -q:v 5 OUT.jpg
 */
import { existsSync, readFileSync } from 'node:fs';
import sharp from 'sharp';
import { rgbaToI420 } from '../server/media/convert.ts';
import { allocI420, type I420Frame } from '../server/media/frame.ts';
import { readY4m } from '../server/media/y4m.ts';

/** The sidecar of a frame strip (`NAME.json` next to `NAME.jpg`). */
export interface StripInfo {
  fps: number;
  width: number;
  height: number;
  frames: number;
  /** Frame range [start, end) where the speaker holds still: the jitter metric's window. */
  still?: [number, number];
  source?: string;
  licence?: string;
  command?: string;
}

export interface Clip {
  frames: I420Frame[];
  fps: number;
  still?: [number, number];
}

export function sidecarPath(path: string): string {
  return path.replace(/\.(y4m|jpe?g)$/i, '') + '.json';
}

/** Loads a driving clip (.y4m, or a .jpg frame strip with its .json); timestamps follow the clip's fps. */
export async function loadClip(path: string): Promise<Clip> {
  if (/\.y4m$/i.test(path)) {
    const y = await readY4m(path);
    const fps = y.fpsNum / y.fpsDen;
    y.frames.forEach((f, i) => (f.timestamp = (i * 1000) / fps));
    return { frames: y.frames, fps };
  }
  const side = sidecarPath(path);
  if (!existsSync(side)) throw new Error(`${path}: a frame strip needs its sidecar ${side} (fps, width, height, frames)`);
  const info = JSON.parse(readFileSync(side, 'utf8')) as StripInfo;
  const { data, info: img } = await sharp(path).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  if (img.width !== info.width || img.height < info.height * info.frames) {
    throw new Error(`${path}: ${img.width}×${img.height} does not hold ${info.frames} frames of ${info.width}×${info.height}`);
  }
  const bytes = info.width * info.height * 4;
  const frames: I420Frame[] = [];
  for (let i = 0; i < info.frames; i++) {
    const f = allocI420(info.width, info.height, (i * 1000) / info.fps);
    rgbaToI420({ width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset + i * bytes, bytes) }, f);
    frames.push(f);
  }
  return { frames, fps: info.fps, still: info.still };
}

/** Frames [start, end) of a clip, re-timed from `t0` ms (for splicing two clips into one). */
export function sliceFrames(frames: I420Frame[], start: number, end: number, fps: number, t0 = 0): I420Frame[] {
  return frames.slice(start, end).map((f, i) => ({ ...f, timestamp: t0 + (i * 1000) / fps }));
}
