/**
 * The model frame and the way back into the output. Upstream renders the whole (resized) source
 * frame; here the model frame is the largest square of the output frame (the whole frame when the
 * output is square), centred on the portrait's face where the frame allows, scaled to S×S. The
 * generated S×S frame covers that square entirely; only where the square's edge lies inside a
 * non-square output does it fade into the portrait's own pixels (a short smoothstep).
 */
import type { RgbaImage } from '../../media/frame.ts';
import type { Similarity } from './align.ts';

export interface ModelSquare {
  /** Output pixels → model-frame pixels. */
  toModel: Similarity;
  x0: number;
  y0: number;
  side: number;
}

/** The square (output pixels) the model sees, centred on (cx, cy) as far as the frame allows. */
export function modelSquare(width: number, height: number, cx: number, cy: number, size: number): ModelSquare {
  const side = Math.min(width, height);
  const x0 = Math.min(width - side, Math.max(0, Math.round(cx - side / 2)));
  const y0 = Math.min(height - side, Math.max(0, Math.round(cy - side / 2)));
  const s = size / side;
  return { toModel: { ar: s, ai: 0, bx: -s * x0, by: -s * y0 }, x0, y0, side };
}

/** For every output pixel of the square: its model-frame coordinates and its blend weight. */
export interface PasteMap {
  index: Uint32Array;
  qx: Float32Array;
  qy: Float32Array;
  weight: Float32Array;
}

const clamp = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);

export function buildPasteMap(width: number, height: number, sq: ModelSquare, size: number, feather = 0.06): PasteMap {
  const n = sq.side * sq.side;
  const index = new Uint32Array(n);
  const qx = new Float32Array(n);
  const qy = new Float32Array(n);
  const weight = new Float32Array(n);
  const f = Math.max(1, feather * sq.side);
  // an edge on the output's border needs no fade: nothing of the portrait lies beyond it
  const fade = (d: number, onBorder: boolean): number => {
    if (onBorder) return 1;
    const t = clamp(d / f, 0, 1);
    return t * t * (3 - 2 * t);
  };
  const s = size / sq.side;
  let k = 0;
  for (let y = sq.y0; y < sq.y0 + sq.side; y++) {
    for (let x = sq.x0; x < sq.x0 + sq.side; x++) {
      const dx = x - sq.x0 + 0.5, dy = y - sq.y0 + 0.5;
      const w =
        fade(dx, sq.x0 === 0) * fade(sq.side - dx, sq.x0 + sq.side === width) *
        fade(dy, sq.y0 === 0) * fade(sq.side - dy, sq.y0 + sq.side === height);
      index[k] = y * width + x;
      qx[k] = dx * s - 0.5;
      qy[k] = dy * s - 0.5;
      weight[k] = w;
      k++;
    }
  }
  return { index, qx, qy, weight };
}

/** out (RGBA) ← base blended with the generated frame (uint8 RGB HWC, S×S) through the map. */
export function pasteFrame(base: RgbaImage, frame: Uint8Array, size: number, map: PasteMap, out: RgbaImage): void {
  out.data.set(base.data);
  const d = out.data;
  for (let n = 0; n < map.index.length; n++) {
    const x = clamp(map.qx[n], 0, size - 1), y = clamp(map.qy[n], 0, size - 1);
    const x0 = Math.floor(x), y0 = Math.floor(y);
    const x1 = Math.min(x0 + 1, size - 1), y1 = Math.min(y0 + 1, size - 1);
    const fx = x - x0, fy = y - y0;
    const w = map.weight[n];
    const p = map.index[n] * 4;
    const a = 3 * (y0 * size + x0), b = 3 * (y0 * size + x1), e = 3 * (y1 * size + x0), g = 3 * (y1 * size + x1);
    for (let c = 0; c < 3; c++) {
      const v = (frame[a + c] + (frame[b + c] - frame[a + c]) * fx) * (1 - fy) + (frame[e + c] + (frame[g + c] - frame[e + c]) * fx) * fy;
      d[p + c] = Math.round(d[p + c] + (v - d[p + c]) * w);
    }
  }
}
