/**
 * Framing: which part of the portrait the output shows. `head` (the default) is a LivePortrait-style
 * crop around the detected face — 2.3 face sizes, centred a little above the face so hair and a
 * turned head stay in frame — `bust` adds the shoulders, `full` is the whole picture (fitted to the
 * output's aspect around the face). `zoom` magnifies any of them about the face.
 *
 * The crop is resampled from the source picture at full quality (sharp, Lanczos), so a small face in
 * a large photo becomes a sharp head, not an upscaled thumbnail of the fitted picture.
 */
import sharp from 'sharp';
import type { RgbaImage } from '../../media/frame.ts';
import type { Framing } from '../types.ts';

export interface FramingSpec {
  framing: Framing;
  zoom: number;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Crop side in face sizes (the larger side of the landmark box) and vertical shift of its centre, in crop sides (+ = down). */
const SHAPES: Record<Exclude<Framing, 'full'>, { side: number; shift: number }> = {
  head: { side: 2.3, shift: -0.08 },
  bust: { side: 3.4, shift: 0.12 },
};
/** Never crop tighter than this many face sizes, even when the picture is smaller than the framing asks (a close-up). */
const MIN_SIDE = 1.45;

export const framingKey = (s: FramingSpec): string => `${s.framing}@${s.zoom}`;

/**
 * The source rectangle (pixels, may reach outside the picture) for an output of outW×outH.
 * `face` is the landmark box of the portrait's face in source pixels.
 */
export function framingRect(imgW: number, imgH: number, face: Rect, outW: number, outH: number, spec: FramingSpec): Rect {
  const aspect = outW / outH;
  const fcx = face.x + face.width / 2;
  const fcy = face.y + face.height / 2;
  const zoom = Math.max(0.25, spec.zoom);
  let w: number;
  let h: number;
  let cx = fcx;
  let cy = fcy;
  if (spec.framing === 'full') {
    // the largest rectangle of the output's aspect inside the picture ('cover')
    w = Math.min(imgW, imgH * aspect) / zoom;
    h = w / aspect;
  } else {
    const shape = SHAPES[spec.framing];
    const faceSize = Math.max(face.width, face.height);
    const side = (shape.side * faceSize) / zoom;
    // `side` is the output's shorter side
    w = aspect >= 1 ? side * aspect : side;
    h = aspect >= 1 ? side : side / aspect;
    cy = fcy + shape.shift * Math.min(w, h);
    // a picture smaller than the crop: crop less (the face gets bigger), down to MIN_SIDE face sizes
    const fit = Math.min(1, imgW / w, imgH / h);
    const floor = Math.min(1, (MIN_SIDE * faceSize) / Math.min(w, h));
    const k = Math.max(fit, floor);
    w *= k;
    h *= k;
  }
  // keep the crop inside the picture where it fits, else centred on the face
  const x = w <= imgW ? Math.max(0, Math.min(imgW - w, cx - w / 2)) : cx - w / 2;
  const y = h <= imgH ? Math.max(0, Math.min(imgH - h, cy - h / 2)) : cy - h / 2;
  return { x, y, width: w, height: h };
}

/** Resamples `rect` of the source (edge pixels repeated outside it) into an outW×outH RGBA image, Lanczos. */
export async function resampleRect(src: RgbaImage, rect: Rect, outW: number, outH: number): Promise<RgbaImage> {
  let left = Math.round(rect.x);
  let top = Math.round(rect.y);
  const width = Math.max(1, Math.round(rect.width));
  const height = Math.max(1, Math.round(rect.height));
  const padL = Math.max(0, -left);
  const padT = Math.max(0, -top);
  const padR = Math.max(0, left + width - src.width);
  const padB = Math.max(0, top + height - src.height);
  let img = sharp(Buffer.from(src.data.buffer, src.data.byteOffset, src.data.byteLength), { raw: { width: src.width, height: src.height, channels: 4 } });
  if (padL || padT || padR || padB) {
    img = sharp(await img.extend({ left: padL, top: padT, right: padR, bottom: padB, extendWith: 'copy' }).raw().toBuffer(), {
      raw: { width: src.width + padL + padR, height: src.height + padT + padB, channels: 4 },
    });
    left += padL;
    top += padT;
  }
  const { data } = await img
    .extract({ left, top, width, height })
    .resize(outW, outH, { kernel: 'lanczos3', fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: outW, height: outH, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
