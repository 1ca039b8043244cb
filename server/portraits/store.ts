/**
 * Portraits: decoded once on upload (sharp), checked for a face, kept in memory as RGBA. The
 * built-in default portrait is always present under the id "default".
 */
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { XplError } from '../errors.ts';
import type { RgbaImage } from '../media/frame.ts';

export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
  score: number;
}

export interface Portrait {
  id: string;
  width: number;
  height: number;
  face: FaceBox | null;
  image: RgbaImage;
  createdAt: string;
}

/** Finds the main face of an image, or null. Injected so the store does not depend on the face models. */
export type FaceFinder = (img: RgbaImage) => Promise<FaceBox | null>;

export const DEFAULT_PORTRAIT_ID = 'default';
const DEFAULT_PORTRAIT_FILE = fileURLToPath(new URL('../../assets/portraits/default.png', import.meta.url));
/** Larger portraits are scaled down: renderers never need more, and memory per portrait stays bounded. */
const MAX_SIDE = 1024;
const MAX_INPUT_PIXELS = 50_000_000;

export async function decodeImage(bytes: Uint8Array): Promise<RgbaImage> {
  let img;
  try {
    img = sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' });
    const meta = await img.metadata();
    if (!meta.format || !['jpeg', 'png', 'webp'].includes(meta.format)) {
      throw new XplError('unsupported_media_type', `unsupported image format ${meta.format ?? 'unknown'}: send JPEG, PNG or WebP`);
    }
  } catch (err) {
    if (err instanceof XplError) throw err;
    const msg = (err as Error).message;
    if (/pixel limit/i.test(msg)) throw new XplError('too_large', `the image has more than ${MAX_INPUT_PIXELS} pixels`);
    throw new XplError('unsupported_media_type', `not a readable image: ${msg}`);
  }
  try {
    const { data, info } = await img
      .rotate()
      .resize({ width: MAX_SIDE, height: MAX_SIDE, fit: 'inside', withoutEnlargement: true })
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (err) {
    throw new XplError('unsupported_media_type', `the image could not be decoded: ${(err as Error).message}`);
  }
}

export class PortraitStore {
  private readonly portraits = new Map<string, Portrait>();

  constructor(private readonly findFace: FaceFinder, private readonly maxCount = 64) {}

  async loadDefault(): Promise<Portrait> {
    const { readFile } = await import('node:fs/promises');
    const image = await decodeImage(await readFile(DEFAULT_PORTRAIT_FILE));
    const p: Portrait = { id: DEFAULT_PORTRAIT_ID, width: image.width, height: image.height, face: await this.findFace(image), image, createdAt: new Date().toISOString() };
    this.portraits.set(p.id, p);
    return p;
  }

  async add(bytes: Uint8Array): Promise<Portrait> {
    if (this.portraits.size >= this.maxCount) {
      throw new XplError('too_many_sessions', `the server holds its limit of ${this.maxCount} portraits: delete one first`, { retryAfter: 1 });
    }
    const image = await decodeImage(bytes);
    const face = await this.findFace(image);
    if (!face) throw new XplError('no_face', 'no face was found in the image: use a photo with one clearly visible, roughly frontal face');
    const p: Portrait = { id: randomUUID(), width: image.width, height: image.height, face, image, createdAt: new Date().toISOString() };
    this.portraits.set(p.id, p);
    return p;
  }

  get(id: string): Portrait {
    const p = this.portraits.get(id);
    if (!p) throw new XplError('not_found', `no portrait ${id}`);
    return p;
  }

  list(): Portrait[] {
    return [...this.portraits.values()];
  }

  delete(id: string): void {
    if (id === DEFAULT_PORTRAIT_ID) throw new XplError('conflict', 'the default portrait cannot be deleted');
    if (!this.portraits.delete(id)) throw new XplError('not_found', `no portrait ${id}`);
  }
}

export function describePortrait(p: Portrait): { id: string; width: number; height: number; face: FaceBox | null; createdAt: string } {
  return { id: p.id, width: p.width, height: p.height, face: p.face, createdAt: p.createdAt };
}
