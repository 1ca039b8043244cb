/** Shared helpers for face / mesh-warp tests: fixture loading. */
import sharp from 'sharp';
import type { RgbaImage } from '../../server/media/frame.ts';

export async function loadRgba(path: string | URL): Promise<RgbaImage> {
  const p = path instanceof URL ? path.pathname : path;
  const { data, info } = await sharp(p).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function fixture(name: string): URL {
  return new URL(`../fixtures/${name}`, import.meta.url);
}

/** Shifts an RGBA image by (dx, dy) whole pixels, filling with grey. */
export function shifted(img: RgbaImage, dx: number, dy: number): RgbaImage {
  const out = new Uint8Array(img.data.length).fill(128);
  const { width: W, height: H } = img;
  for (let y = 0; y < H; y++) {
    const sy = y - dy;
    if (sy < 0 || sy >= H) continue;
    for (let x = 0; x < W; x++) {
      const sx = x - dx;
      if (sx < 0 || sx >= W) continue;
      const s = (sy * W + sx) * 4;
      const d = (y * W + x) * 4;
      out[d] = img.data[s];
      out[d + 1] = img.data[s + 1];
      out[d + 2] = img.data[s + 2];
      out[d + 3] = 255;
    }
  }
  return { width: W, height: H, data: out };
}
