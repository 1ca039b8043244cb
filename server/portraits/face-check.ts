/** The portrait check used on upload: the face models' one-shot detector, reduced to a box and a score. */
import { detectFace } from '../face/tracker.ts';
import type { RgbaImage } from '../media/frame.ts';
import type { FaceBox } from './store.ts';

export async function findPortraitFace(img: RgbaImage): Promise<FaceBox | null> {
  const face = await detectFace(img);
  if (!face) return null;
  const { box, score } = face.detection;
  const r = (v: number) => Math.round(v * 10) / 10;
  return { x: r(box.x), y: r(box.y), width: r(box.width), height: r(box.height), score: Math.round(score * 1000) / 1000 };
}
