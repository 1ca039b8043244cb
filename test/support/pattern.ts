/**
 * A synthetic, moving I420 test pattern that carries a frame id.
 *
 * Layout (S = min(width, height), the centred square that a 'cover' crop keeps):
 * - everywhere: smooth moving luma waves and moving chroma waves, so the encoder has real motion
 *   to code and a wrong frame (or a wrong crop) is visible as a large pixel difference;
 * - in the middle of the square, from 0.25·S to 0.75·S on both axes: a 4×4 grid of black/white
 *   luma cells (cell = S/8) holding a 16-bit word, MSB first, row-major:
 *   12 bits of id, then a 4-bit CRC (x⁴+x+1, xored with {@link CHECK_XOR});
 * - a neutral grey quiet zone S/32 wide around the grid, so moving content does not bleed into it.
 *
 * Everything is placed relative to the centred square, so the code survives a centre crop to a
 * square, any scaling, and lossy compression: the reader averages the middle of each cell and
 * thresholds adaptively between the darkest and brightest cell.
 */
import { planes, type I420Frame } from '../../server/media/frame.ts';

export const ID_BITS = 12;
export const ID_MODULO = 1 << ID_BITS;
/** Makes the all-black and all-white grids invalid words. */
const CHECK_XOR = 0x5;
const BLACK = 16;
const WHITE = 235;
const GREY = 128;

/** CRC-4 (polynomial x⁴+x+1) of the low 12 bits of `id`. */
export function crc4(id: number): number {
  let reg = 0;
  for (let i = ID_BITS - 1; i >= 0; i--) {
    const bit = (id >> i) & 1;
    const top = (reg >> 3) & 1;
    reg = ((reg << 1) & 0xf) ^ (top ^ bit ? 0x3 : 0);
  }
  return reg;
}

/** The 16-bit word drawn for an id (ids wrap modulo 4096). */
export function encodeWord(id: number): number {
  const v = ((id % ID_MODULO) + ID_MODULO) % ID_MODULO;
  return (v << 4) | (crc4(v) ^ CHECK_XOR);
}

/** The id in a 16-bit word, or null when its check does not match. */
export function decodeWord(word: number): number | null {
  const id = (word >> 4) & (ID_MODULO - 1);
  return (crc4(id) ^ CHECK_XOR) === (word & 0xf) ? id : null;
}

/** Geometry of the code grid inside a frame of the given size, in luma pixels. */
export function codeGeometry(width: number, height: number): { x0: number; y0: number; cell: number; quiet: number } {
  const s = Math.min(width, height);
  const sx = (width - s) / 2;
  const sy = (height - s) / 2;
  return { x0: sx + s / 4, y0: sy + s / 4, cell: s / 8, quiet: s / 32 };
}

/**
 * Draws pattern number `id` into `frame` (all three planes). Motion is a function of `id`, so the
 * same id always gives the same picture: a test can redraw what it expects to receive.
 */
export function drawPattern(frame: I420Frame, id: number): void {
  const { width: w, height: h } = frame;
  const { y, u, v, cw, ch } = planes(frame);
  const t = id;

  // Luma: a horizontal wave moving right plus a vertical wave moving down (separable, so two
  // small tables per frame).
  const colL = new Float32Array(w);
  for (let x = 0; x < w; x++) colL[x] = 70 * Math.sin((2 * Math.PI * (x - 6 * t)) / 96);
  const rowL = new Float32Array(h);
  for (let r = 0; r < h; r++) rowL[r] = 128 + 40 * Math.cos((2 * Math.PI * (r - 3 * t)) / 160);
  for (let r = 0; r < h; r++) {
    const base = rowL[r];
    const off = r * w;
    for (let x = 0; x < w; x++) y[off + x] = base + colL[x]; // Uint8Array clamps nothing: stays in 18..238
  }

  // Chroma: U varies along x, V along y, both moving.
  const colU = new Uint8Array(cw);
  for (let x = 0; x < cw; x++) colU[x] = Math.round(128 + 60 * Math.sin((2 * Math.PI * (x + 2 * t)) / 80));
  for (let r = 0; r < ch; r++) {
    const vv = Math.round(128 + 60 * Math.cos((2 * Math.PI * (r - 2 * t)) / 60));
    const off = r * cw;
    u.set(colU, off);
    v.fill(vv, off, off + cw);
  }

  // Quiet zone and code grid.
  const g = codeGeometry(w, h);
  const qx0 = Math.round(g.x0 - g.quiet);
  const qy0 = Math.round(g.y0 - g.quiet);
  const qx1 = Math.round(g.x0 + 4 * g.cell + g.quiet);
  const qy1 = Math.round(g.y0 + 4 * g.cell + g.quiet);
  fillRect(y, w, qx0, qy0, qx1, qy1, GREY);
  fillRect(u, cw, qx0 >> 1, qy0 >> 1, (qx1 + 1) >> 1, (qy1 + 1) >> 1, 128);
  fillRect(v, cw, qx0 >> 1, qy0 >> 1, (qx1 + 1) >> 1, (qy1 + 1) >> 1, 128);
  const word = encodeWord(id);
  for (let i = 0; i < 16; i++) {
    const bit = (word >> (15 - i)) & 1;
    const cx = i & 3;
    const cy = i >> 2;
    fillRect(
      y,
      w,
      Math.round(g.x0 + cx * g.cell),
      Math.round(g.y0 + cy * g.cell),
      Math.round(g.x0 + (cx + 1) * g.cell),
      Math.round(g.y0 + (cy + 1) * g.cell),
      bit ? WHITE : BLACK,
    );
  }
}

function fillRect(plane: Uint8Array, stride: number, x0: number, y0: number, x1: number, y1: number, value: number): void {
  for (let r = y0; r < y1; r++) plane.fill(value, r * stride + x0, r * stride + x1);
}

/** Mean luma of the middle half of each of the 16 code cells. */
export function cellMeans(frame: I420Frame): number[] {
  const w = frame.width;
  const y = frame.data;
  const g = codeGeometry(frame.width, frame.height);
  const means: number[] = [];
  const step = g.cell >= 32 ? 2 : 1;
  for (let i = 0; i < 16; i++) {
    const cx = g.x0 + ((i & 3) + 0.25) * g.cell;
    const cy = g.y0 + ((i >> 2) + 0.25) * g.cell;
    const x0 = Math.round(cx);
    const y0 = Math.round(cy);
    const x1 = Math.max(x0 + 1, Math.round(cx + g.cell / 2));
    const y1 = Math.max(y0 + 1, Math.round(cy + g.cell / 2));
    let sum = 0;
    let n = 0;
    for (let r = y0; r < y1; r += step) {
      const off = r * w;
      for (let x = x0; x < x1; x += step) {
        sum += y[off + x];
        n++;
      }
    }
    means.push(sum / n);
  }
  return means;
}

/**
 * Reads the id drawn by {@link drawPattern}, from the frame as drawn or after a centre crop to a
 * square and any scaling. Null when there is no code: too little contrast, a cell too close to
 * the threshold, or a failed check.
 */
export function readPatternId(frame: I420Frame): number | null {
  if (frame.width < 16 || frame.height < 16) return null;
  const means = cellMeans(frame);
  let lo = Infinity;
  let hi = -Infinity;
  for (const m of means) {
    if (m < lo) lo = m;
    if (m > hi) hi = m;
  }
  const range = hi - lo;
  if (range < 64) return null;
  const mid = (lo + hi) / 2;
  let word = 0;
  for (const m of means) {
    if (Math.abs(m - mid) < range * 0.2) return null;
    word = (word << 1) | (m > mid ? 1 : 0);
  }
  return decodeWord(word);
}
