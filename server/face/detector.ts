/**
 * BlazeFace ("back" / full-range variant, 256² input, 896 anchors) on onnxruntime-node:
 * SSD anchors, box + keypoint decoding, sigmoid scores, weighted non-maximum suppression.
 */
import { cropToTensor } from './sampler.ts';
import { loadFaceModels, ort, type FaceModelOptions } from './models.ts';
import type { FaceDetection, FaceImage, FaceRoi } from './types.ts';
import type { RgbaImage } from '../media/frame.ts';

const INPUT = 256;
const NUM_KP = 6;

/** Anchor centres (normalised 0..1): 16×16 grid × 2 anchors (stride 16), then 8×8 × 6 (stride 32). */
function makeAnchors(): Float32Array {
  const a: number[] = [];
  for (const [grid, per] of [
    [16, 2],
    [8, 6],
  ] as const) {
    for (let y = 0; y < grid; y++)
      for (let x = 0; x < grid; x++)
        for (let k = 0; k < per; k++) a.push((x + 0.5) / grid, (y + 0.5) / grid);
  }
  return new Float32Array(a);
}
const ANCHORS = makeAnchors();

export interface DetectOptions extends FaceModelOptions {
  /** Minimum score (0..1), default 0.6. */
  minScore?: number;
  /** IoU above which boxes are merged, default 0.3. */
  iouThreshold?: number;
  maxFaces?: number;
  /** Search only this square region (default: the whole image, letterboxed). */
  region?: { cx: number; cy: number; size: number };
}

function iou(a: FaceDetection['box'], b: FaceDetection['box']): number {
  const x0 = Math.max(a.x, b.x);
  const y0 = Math.max(a.y, b.y);
  const x1 = Math.min(a.x + a.width, b.x + b.width);
  const y1 = Math.min(a.y + a.height, b.y + b.height);
  const inter = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
  const uni = a.width * a.height + b.width * b.height - inter;
  return uni > 0 ? inter / uni : 0;
}

export class FaceDetector {
  private readonly input = new Float32Array(INPUT * INPUT * 3);
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(opts: FaceModelOptions = {}): Promise<FaceDetector> {
    const m = await loadFaceModels(opts);
    return new FaceDetector(m.blazeface);
  }

  /** All faces, best first. The image (or `region`) is letterboxed (aspect kept) into the 256² input. */
  async detect(img: FaceImage, opts: DetectOptions = {}): Promise<FaceDetection[]> {
    const minScore = opts.minScore ?? 0.6;
    const iouThr = opts.iouThreshold ?? 0.3;
    const side = opts.region?.size ?? Math.max(img.width, img.height);
    const roi: FaceRoi = { cx: opts.region?.cx ?? img.width / 2, cy: opts.region?.cy ?? img.height / 2, size: side, angle: 0 };
    cropToTensor(img, roi, INPUT, this.input, '11');
    const res = await this.session.run({ input: new ort.Tensor('float32', this.input, [1, INPUT, INPUT, 3]) });
    const reg16 = res.Identity_2.data as Float32Array; // [512,16]
    const sc16 = res.Identity.data as Float32Array; // [512]
    const reg32 = res.Identity_3.data as Float32Array; // [384,16]
    const sc32 = res.Identity_1.data as Float32Array; // [384]
    const x0 = roi.cx - side / 2;
    const y0 = roi.cy - side / 2;
    const cands: FaceDetection[] = [];
    const logitMin = Math.log(minScore / (1 - minScore));
    for (let i = 0; i < 896; i++) {
      const logit = i < 512 ? sc16[i] : sc32[i - 512];
      if (logit < logitMin) continue;
      const reg = i < 512 ? reg16 : reg32;
      const o = (i < 512 ? i : i - 512) * 16;
      const ax = ANCHORS[2 * i];
      const ay = ANCHORS[2 * i + 1];
      const cx = reg[o] / INPUT + ax;
      const cy = reg[o + 1] / INPUT + ay;
      const w = reg[o + 2] / INPUT;
      const h = reg[o + 3] / INPUT;
      const kps = [];
      for (let k = 0; k < NUM_KP; k++) kps.push({ x: x0 + (reg[o + 4 + 2 * k] / INPUT + ax) * side, y: y0 + (reg[o + 5 + 2 * k] / INPUT + ay) * side });
      cands.push({
        box: { x: x0 + (cx - w / 2) * side, y: y0 + (cy - h / 2) * side, width: w * side, height: h * side },
        score: 1 / (1 + Math.exp(-Math.max(-100, Math.min(100, logit)))),
        keypoints: kps,
      });
    }
    cands.sort((a, b) => b.score - a.score);
    // weighted NMS: each kept face is the score-weighted mean of the boxes it suppresses
    const out: FaceDetection[] = [];
    const used = new Uint8Array(cands.length);
    for (let i = 0; i < cands.length && out.length < (opts.maxFaces ?? 10); i++) {
      if (used[i]) continue;
      const group = [cands[i]];
      for (let j = i + 1; j < cands.length; j++) if (!used[j] && iou(cands[i].box, cands[j].box) > iouThr) {
        used[j] = 1;
        group.push(cands[j]);
      }
      const wsum = group.reduce((a, g) => a + g.score, 0);
      const avg = (f: (g: FaceDetection) => number): number => group.reduce((a, g) => a + f(g) * g.score, 0) / wsum;
      out.push({
        box: { x: avg((g) => g.box.x), y: avg((g) => g.box.y), width: avg((g) => g.box.width), height: avg((g) => g.box.height) },
        score: cands[i].score,
        keypoints: cands[i].keypoints.map((_, k) => ({ x: avg((g) => g.keypoints[k].x), y: avg((g) => g.keypoints[k].y) })),
      });
    }
    return out;
  }
}

/** The mesh ROI MediaPipe derives from a detection: square on the long side ×1.5, rotated so the eyes are level. */
export function roiFromDetection(d: FaceDetection, scale = 1.5): FaceRoi {
  const re = d.keypoints[0];
  const le = d.keypoints[1];
  // subject's right eye is on the image left: angle of the eye line
  const angle = Math.atan2(le.y - re.y, le.x - re.x);
  return { cx: d.box.x + d.box.width / 2, cy: d.box.y + d.box.height / 2, size: Math.max(d.box.width, d.box.height) * scale, angle };
}

export function rgbaToFaceImage(img: RgbaImage): FaceImage {
  return { kind: 'rgba', width: img.width, height: img.height, data: img.data };
}
