/**
 * Face tracking for the frame loop: BlazeFace only when the face is lost, FaceMesh from the
 * previous frame's landmark box otherwise, Iris per eye; One Euro smoothing; pose, expression,
 * eye/mouth openness and gaze. Also `detectFace`, the one-shot portrait check used at upload.
 */
import type { RgbaImage } from '../media/frame.ts';
import { CANONICAL_FACE } from './canonical-data.ts';
import { FaceDetector, roiFromDetection } from './detector.ts';
import {
  INNER_LIP_LOWER,
  INNER_LIP_UPPER,
  LEFT_EYE_CORNERS,
  LEFT_EYE_LIDS,
  LEFT_EYE_LOWER,
  LEFT_EYE_UPPER,
  MOUTH_CORNERS,
  MOUTH_MID,
  NUM_LANDMARKS,
  RIGHT_EYE_CORNERS,
  RIGHT_EYE_LIDS,
  RIGHT_EYE_LOWER,
  RIGHT_EYE_UPPER,
} from './landmarks.ts';
import { FaceMesher } from './mesh.ts';
import type { FaceModelOptions } from './models.ts';
import { DEFAULT_ONE_EURO, OneEuroVector, type OneEuroParams } from './one-euro.ts';
import { fitSimilarity, matToEuler } from './pose.ts';
import type { FaceBox, FaceDetection, FaceImage, FaceRoi, FaceState, Gaze, HeadPose, Point2 } from './types.ts';

const EYEBROWS = [70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276];

/** Landmarks that move little with expression: upper face minus eyes and brows (for the pose fit). */
export const RIGID_INDICES: Int32Array = (() => {
  const skip = new Set([...EYEBROWS, ...LEFT_EYE_UPPER, ...LEFT_EYE_LOWER, ...RIGHT_EYE_UPPER, ...RIGHT_EYE_LOWER, ...INNER_LIP_LOWER, ...INNER_LIP_UPPER]);
  const noseBottomY = CANONICAL_FACE[3 * 2 + 1];
  const out: number[] = [];
  for (let i = 0; i < NUM_LANDMARKS; i++) if (!skip.has(i) && CANONICAL_FACE[3 * i + 1] <= noseBottomY + 0.05) out.push(i);
  return new Int32Array(out);
})();

/** The next frame's mesh ROI from this frame's landmarks: rotated box of all points ×1.5, eyes level. */
export function roiFromLandmarks(lm: ArrayLike<number>, scale = 1.5): FaceRoi {
  const [r, l] = [RIGHT_EYE_CORNERS[0], LEFT_EYE_CORNERS[0]];
  const angle = Math.atan2(lm[3 * l + 1] - lm[3 * r + 1], lm[3 * l] - lm[3 * r]);
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  let minU = Infinity;
  let maxU = -Infinity;
  let minV = Infinity;
  let maxV = -Infinity;
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    const x = lm[3 * i];
    const y = lm[3 * i + 1];
    const u = c * x + s * y;
    const v = -s * x + c * y;
    if (u < minU) minU = u;
    if (u > maxU) maxU = u;
    if (v < minV) minV = v;
    if (v > maxV) maxV = v;
  }
  const cu = (minU + maxU) / 2;
  const cv = (minV + maxV) / 2;
  return { cx: c * cu - s * cv, cy: s * cu + c * cv, size: Math.max(maxU - minU, maxV - minV) * scale, angle };
}

export function boxOfLandmarks(lm: ArrayLike<number>): FaceBox {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    x0 = Math.min(x0, lm[3 * i]);
    x1 = Math.max(x1, lm[3 * i]);
    y0 = Math.min(y0, lm[3 * i + 1]);
    y1 = Math.max(y1, lm[3 * i + 1]);
  }
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

function dist3(a: ArrayLike<number>, i: number, j: number): number {
  return Math.hypot(a[3 * i] - a[3 * j], a[3 * i + 1] - a[3 * j + 1], a[3 * i + 2] - a[3 * j + 2]);
}

export function eyeOpenness(canonical: ArrayLike<number>): { left: number; right: number } {
  return {
    left: dist3(canonical, LEFT_EYE_LIDS[0], LEFT_EYE_LIDS[1]) / dist3(canonical, LEFT_EYE_CORNERS[0], LEFT_EYE_CORNERS[1]),
    right: dist3(canonical, RIGHT_EYE_LIDS[0], RIGHT_EYE_LIDS[1]) / dist3(canonical, RIGHT_EYE_CORNERS[0], RIGHT_EYE_CORNERS[1]),
  };
}

export function mouthOpenness(canonical: ArrayLike<number>): number {
  return dist3(canonical, MOUTH_MID[0], MOUTH_MID[1]) / dist3(canonical, MOUTH_CORNERS[0], MOUTH_CORNERS[1]);
}

/** Iris centre relative to the eye centre, in units of eye width, along / across the eye line. */
export function irisOffset(lm: ArrayLike<number>, corners: readonly [number, number], iris: Point2): Point2 {
  let [a, b] = corners;
  if (lm[3 * a] > lm[3 * b]) [a, b] = [b, a]; // a: image-left corner
  const ax = lm[3 * a];
  const ay = lm[3 * a + 1];
  const ex = lm[3 * b] - ax;
  const ey = lm[3 * b + 1] - ay;
  const l2 = ex * ex + ey * ey || 1;
  const dx = iris.x - (ax + ex / 2);
  const dy = iris.y - (ay + ey / 2);
  return { x: (dx * ex + dy * ey) / l2, y: (-dx * ey + dy * ex) / l2 };
}

/** Pose, canonical-frame shape, expression, openness and gaze from landmarks (image pixels). */
export function analyzeLandmarks(
  lm: Float32Array,
  irisLeft: Point2 | null,
  irisRight: Point2 | null,
  canonicalOut = new Float32Array(NUM_LANDMARKS * 3),
  expressionOut = new Float32Array(NUM_LANDMARKS * 3),
): Pick<FaceState, 'pose' | 'canonical' | 'expression' | 'eyeOpenLeft' | 'eyeOpenRight' | 'mouthOpen' | 'gaze'> {
  const sim = fitSimilarity(CANONICAL_FACE, lm, RIGID_INDICES);
  const R = sim.rotation;
  const [tx, ty, tz] = sim.translation;
  const inv = 1 / sim.scale;
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    const x = lm[3 * i] - tx;
    const y = lm[3 * i + 1] - ty;
    const z = lm[3 * i + 2] - tz;
    // Rᵀ · v / s
    const cx = (R[0] * x + R[3] * y + R[6] * z) * inv;
    const cy = (R[1] * x + R[4] * y + R[7] * z) * inv;
    const cz = (R[2] * x + R[5] * y + R[8] * z) * inv;
    canonicalOut[3 * i] = cx;
    canonicalOut[3 * i + 1] = cy;
    canonicalOut[3 * i + 2] = cz;
    expressionOut[3 * i] = cx - CANONICAL_FACE[3 * i];
    expressionOut[3 * i + 1] = cy - CANONICAL_FACE[3 * i + 1];
    expressionOut[3 * i + 2] = cz - CANONICAL_FACE[3 * i + 2];
  }
  const e = matToEuler(R);
  const pose: HeadPose = { ...e, rotation: R, translation: [tx, ty, tz], scale: sim.scale };
  const eyes = eyeOpenness(canonicalOut);
  const gl = irisLeft ? irisOffset(lm, LEFT_EYE_CORNERS, irisLeft) : { x: 0, y: 0 };
  const gr = irisRight ? irisOffset(lm, RIGHT_EYE_CORNERS, irisRight) : { x: 0, y: 0 };
  const gaze: Gaze = { left: gl, right: gr, x: (gl.x + gr.x) / 2, y: (gl.y + gr.y) / 2 };
  return { pose, canonical: canonicalOut, expression: expressionOut, eyeOpenLeft: eyes.left, eyeOpenRight: eyes.right, mouthOpen: mouthOpenness(canonicalOut), gaze };
}

export interface TrackerOptions extends FaceModelOptions {
  /** Run the iris model (gaze); default true. */
  iris?: boolean;
  /** Below this FaceMesh confidence the face counts as lost; default 0.5. */
  minConfidence?: number;
  /** Minimum BlazeFace score when (re-)detecting; default 0.6. */
  minDetectionScore?: number;
  /** One Euro parameters (beta in face sizes per second). */
  smoothing?: Partial<OneEuroParams>;
}

export class FaceTracker {
  private roi: FaceRoi | null = null;
  private readonly raw = new Float32Array(NUM_LANDMARKS * 3);
  private readonly lmFilter: OneEuroVector;
  private readonly irisFilter = new OneEuroVector(4, { ...DEFAULT_ONE_EURO, minCutoff: 2 });
  private readonly irisBuf = new Float64Array(4);
  /** Last iris offsets per eye (raw, relative to the eye centre); null until both were measured. */
  private irisDelta: { left: Point2; right: Point2 } | null = null;
  private irisTurn: 'left' | 'right' = 'left';
  /** Frames tracked, detector runs (for stats). */
  frames = 0;
  detections = 0;

  private constructor(
    private readonly detector: FaceDetector,
    private readonly mesher: FaceMesher,
    private readonly opts: TrackerOptions,
  ) {
    this.lmFilter = new OneEuroVector(NUM_LANDMARKS * 3, { ...DEFAULT_ONE_EURO, ...opts.smoothing });
  }

  static async create(opts: TrackerOptions = {}): Promise<FaceTracker> {
    const [d, m] = await Promise.all([FaceDetector.create(opts), FaceMesher.create(opts)]);
    return new FaceTracker(d, m, opts);
  }

  /** Changes smoothing at run time (renderer setParams). */
  setSmoothing(p: Partial<OneEuroParams>): void {
    this.lmFilter.params = { ...this.lmFilter.params, ...p };
  }

  /** Forgets the face: next frame runs the detector and restarts smoothing. */
  reset(): void {
    this.roi = null;
    this.lmFilter.reset();
    this.irisFilter.reset();
    this.irisDelta = null;
  }

  track(rgba: RgbaImage, timestampMs: number): Promise<FaceState | null> {
    return this.trackImage({ kind: 'rgba', width: rgba.width, height: rgba.height, data: rgba.data }, timestampMs);
  }

  /** Same as track() for an I420 or RGBA frame (I420 is sampled directly, no conversion). */
  async trackImage(img: FaceImage, timestampMs: number): Promise<FaceState | null> {
    this.frames++;
    const minConf = this.opts.minConfidence ?? 0.5;
    let redetected = false;
    if (!this.roi) {
      const roi = await this.detectRoi(img);
      if (!roi) return null;
      this.roi = roi;
      redetected = true;
    }
    let m = await this.mesher.landmarks(img, this.roi, this.raw);
    if (m.confidence < minConf && !redetected) {
      const roi = await this.detectRoi(img);
      if (roi) {
        this.roi = roi;
        redetected = true;
        m = await this.mesher.landmarks(img, this.roi, this.raw);
      }
    }
    if (m.confidence < minConf) {
      this.reset();
      return null;
    }
    let next = roiFromLandmarks(this.raw);
    // drifting: the face left the centre of the crop or changed size a lot → re-run on the corrected box
    const off = Math.hypot(next.cx - this.roi.cx, next.cy - this.roi.cy) / this.roi.size;
    const ratio = next.size / this.roi.size;
    if (off > 0.12 || ratio < 0.8 || ratio > 1.25 || Math.abs(next.angle - this.roi.angle) > 0.35) {
      const m2 = await this.mesher.landmarks(img, next, this.raw);
      if (m2.confidence >= minConf) {
        m = m2;
        next = roiFromLandmarks(this.raw);
      }
    }
    const usedRoi = this.roi;
    this.roi = next;
    const landmarks = new Float32Array(NUM_LANDMARKS * 3);
    this.lmFilter.filter(this.raw, timestampMs, landmarks, next.size);
    let irisLeft: Point2 | null = null;
    let irisRight: Point2 | null = null;
    if (this.opts.iris !== false) {
      // One eye per frame, alternating (both on the first): gaze moves slowly next to the 30 Hz
      // frame rate, and it halves the iris cost, the largest part of a tracked frame after the mesh.
      const both = this.irisDelta === null;
      const eyes: Array<'left' | 'right'> = both ? ['left', 'right'] : [this.irisTurn];
      const d = (this.irisDelta ??= { left: { x: 0, y: 0 }, right: { x: 0, y: 0 } });
      for (const eye of eyes) {
        const found = await this.mesher.iris(img, this.raw, eye);
        // smooth the iris offset relative to the smoothed eye (the raw positions follow the raw mesh)
        d[eye] = this.eyeCentreDelta(landmarks, eye === 'left' ? LEFT_EYE_CORNERS : RIGHT_EYE_CORNERS, found.center);
      }
      this.irisTurn = this.irisTurn === 'left' ? 'right' : 'left';
      this.irisFilter.filter([d.left.x, d.left.y, d.right.x, d.right.y], timestampMs, this.irisBuf, next.size);
      irisLeft = this.fromEyeCentre(landmarks, LEFT_EYE_CORNERS, this.irisBuf[0], this.irisBuf[1]);
      irisRight = this.fromEyeCentre(landmarks, RIGHT_EYE_CORNERS, this.irisBuf[2], this.irisBuf[3]);
    }
    const a = analyzeLandmarks(landmarks, irisLeft, irisRight);
    return {
      timestampMs,
      confidence: m.confidence,
      redetected,
      box: boxOfLandmarks(landmarks),
      roi: usedRoi,
      landmarks,
      rawLandmarks: Float32Array.from(this.raw),
      irisLeft,
      irisRight,
      ...a,
    };
  }

  private eyeCentreDelta(lm: Float32Array, c: readonly [number, number], p: Point2): Point2 {
    // raw-mesh iris relative to the raw-mesh eye centre
    const cx = (this.raw[3 * c[0]] + this.raw[3 * c[1]]) / 2;
    const cy = (this.raw[3 * c[0] + 1] + this.raw[3 * c[1] + 1]) / 2;
    void lm;
    return { x: p.x - cx, y: p.y - cy };
  }

  private fromEyeCentre(lm: Float32Array, c: readonly [number, number], dx: number, dy: number): Point2 {
    return { x: (lm[3 * c[0]] + lm[3 * c[1]]) / 2 + dx, y: (lm[3 * c[0] + 1] + lm[3 * c[1] + 1]) / 2 + dy };
  }

  private async detectRoi(img: FaceImage): Promise<FaceRoi | null> {
    this.detections++;
    const [d] = await this.detector.detect(img, { minScore: this.opts.minDetectionScore ?? 0.6, maxFaces: 1 });
    return d ? roiFromDetection(d) : null;
  }
}

export interface DetectedFace extends FaceState {
  detection: FaceDetection;
}

export interface DetectFaceOptions extends FaceModelOptions {
  minScore?: number;
  minConfidence?: number;
  /** Prefer the face nearest to this point (image pixels) over the highest-scoring one. */
  near?: Point2;
}

/**
 * Detections on the whole image, or — when it finds none in a large picture (a small face in a
 * full-length photo is a few pixels in the detector's 256² input) — on overlapping tiles.
 */
async function detectAnywhere(detector: FaceDetector, img: FaceImage, minScore: number): Promise<FaceDetection[]> {
  const whole = await detector.detect(img, { minScore, maxFaces: 3 });
  const long = Math.max(img.width, img.height);
  if (whole.length || long < 640) return whole;
  const out: FaceDetection[] = [];
  const tile = Math.max(320, Math.min(img.width, img.height) / 2);
  const step = tile / 2;
  for (let y = tile / 2; y < img.height - step / 2 + 1; y += step)
    for (let x = tile / 2; x < img.width - step / 2 + 1; x += step) {
      const found = await detector.detect(img, { minScore, maxFaces: 3, region: { cx: Math.min(x, img.width - tile / 2), cy: Math.min(y, img.height - tile / 2), size: tile } });
      for (const d of found) if (!out.some((o) => Math.hypot(o.box.x - d.box.x, o.box.y - d.box.y) < d.box.width / 2)) out.push(d);
    }
  return out.sort((a, b) => b.score - a.score);
}

/**
 * One-shot detection for a still portrait: BlazeFace (score ≥ 0.6; on tiles when the whole picture
 * shows none), then FaceMesh on the detected box and once more on the landmark box; a face only when
 * the mesh confirms it (confidence ≥ 0.5). Returns null when there is no face.
 */
export async function detectFace(rgba: RgbaImage | FaceImage, opts: DetectFaceOptions = {}): Promise<DetectedFace | null> {
  const img: FaceImage = 'kind' in rgba ? rgba : { kind: 'rgba', width: rgba.width, height: rgba.height, data: rgba.data };
  const [detector, mesher] = await Promise.all([FaceDetector.create(opts), FaceMesher.create(opts)]);
  const dets = await detectAnywhere(detector, img, opts.minScore ?? 0.6);
  const near = opts.near;
  if (near) {
    const dist = (d: FaceDetection): number => Math.hypot(d.box.x + d.box.width / 2 - near.x, d.box.y + d.box.height / 2 - near.y);
    dets.sort((a, b) => dist(a) - dist(b));
  }
  const minConf = opts.minConfidence ?? 0.5;
  for (const d of dets) {
    const roi0 = roiFromDetection(d);
    const lm = new Float32Array(NUM_LANDMARKS * 3);
    const m0 = await mesher.landmarks(img, roi0, lm);
    if (m0.confidence < minConf) continue;
    const roi = roiFromLandmarks(lm);
    const m = await mesher.landmarks(img, roi, lm);
    if (m.confidence < minConf) continue;
    const il = await mesher.iris(img, lm, 'left');
    const ir = await mesher.iris(img, lm, 'right');
    const a = analyzeLandmarks(lm, il.center, ir.center);
    return {
      timestampMs: 0,
      confidence: m.confidence,
      redetected: true,
      box: boxOfLandmarks(lm),
      roi,
      landmarks: lm,
      rawLandmarks: lm,
      irisLeft: il.center,
      irisRight: ir.center,
      ...a,
      detection: d,
    };
  }
  return null;
}
