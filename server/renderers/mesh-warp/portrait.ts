/**
 * A portrait prepared for mesh-warp: its face found once in the source picture, the framed crop
 * resampled from the source at the output size, the face found again in the crop (its landmarks at
 * output resolution), and the warp rig built on it. A framing change re-frames from the source.
 */
import { XplError } from '../../errors.ts';
import { allocI420, planes, type RgbaImage } from '../../media/frame.ts';
import { rgbaToI420 } from '../../media/convert.ts';
import { detectFace, type DetectedFace } from '../../face/tracker.ts';
import { landmarkBox } from '../../face/landmarks.ts';
import type { PortraitState } from '../types.ts';
import { framingKey, framingRect, resampleRect, type FramingSpec, type Rect } from './framing.ts';
import { allocTargets, buildRig, type Rig, type Targets } from './rig.ts';
import { allocScratch, type WarpScratch } from './warp.ts';

export interface MeshWarpPortrait extends PortraitState {
  rig: Rig;
  scratch: WarpScratch;
  targets: Targets;
  /** The source picture and its face (source pixels), kept for re-framing. */
  source: RgbaImage;
  sourceFace: DetectedFace;
  /** The framing the rig was built for, and the source rectangle it shows. */
  framing: string;
  crop: Rect;
}

/** What the 'full' framing of an unzoomed portrait is: the old 'cover' fit around the face. */
export const FULL: FramingSpec = { framing: 'full', zoom: 1 };

/** Builds (or rebuilds, in place) the rig of `p` for a framing. */
async function frame(source: RgbaImage, sourceFace: DetectedFace, width: number, height: number, spec: FramingSpec): Promise<Omit<MeshWarpPortrait, 'source' | 'sourceFace'>> {
  const crop = framingRect(source.width, source.height, landmarkBox(sourceFace.landmarks), width, height, spec);
  const rgba = await resampleRect(source, crop, width, height);
  // the face again at output resolution (sharper landmarks for a small face); the first face is
  // the one nearest to where the source face maps, so a second person in the crop is not taken
  const box = landmarkBox(sourceFace.landmarks);
  const near = { x: ((box.x + box.width / 2 - crop.x) * width) / crop.width, y: ((box.y + box.height / 2 - crop.y) * height) / crop.height };
  const face = await detectFace(rgba, { near });
  if (!face) throw new XplError('no_face', 'no face found in the framed portrait');
  const yuv = allocI420(width, height);
  rgbaToI420(rgba, yuv);
  const pl = planes(yuv);
  const rig = buildRig(width, height, { data: pl.y, width, height }, { data: pl.u, width: pl.cw, height: pl.ch }, { data: pl.v, width: pl.cw, height: pl.ch }, face);
  return { width, height, rig, scratch: allocScratch(rig), targets: allocTargets(rig), framing: framingKey(spec), crop };
}

/** Prepares a portrait for an output size and framing (default: the whole picture, fitted around the face). */
export async function preparePortrait(portrait: RgbaImage, width: number, height: number, spec: FramingSpec = FULL): Promise<MeshWarpPortrait> {
  const sourceFace = await detectFace(portrait);
  if (!sourceFace) throw new XplError('no_face', 'no face found in the portrait');
  return { source: portrait, sourceFace, ...(await frame(portrait, sourceFace, width, height, spec)) };
}

/** Re-frames a prepared portrait in place (a live framing or zoom change). */
export async function reframePortrait(p: MeshWarpPortrait, spec: FramingSpec): Promise<void> {
  if (p.framing === framingKey(spec)) return;
  Object.assign(p, await frame(p.source, p.sourceFace, p.width, p.height, spec));
}
