/**
 * The driver's motion relative to its own neutral: calibration (the neutral is the average of the
 * first confident frames of a driver), retargeting with gains and relative amplitudes, blends
 * between motions, and the driver-change watch (a cut, a new person, a long loss) that starts a new
 * calibration.
 */
import { CANONICAL_FACE } from '../../face/canonical-data.ts';
import { LEFT_EYE_LOWER, LEFT_EYE_UPPER, MOUTH_CORNERS, NUM_LANDMARKS, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER } from '../../face/landmarks.ts';
import { matMul, quatToMat, scaleRotation, transpose, type Mat3 } from '../../face/pose.ts';
import type { FaceState } from '../../face/types.ts';
import type { RenderParams } from '../types.ts';
import { identityMotion, type Motion } from './rig.ts';

const LID_POINTS = new Set([...LEFT_EYE_UPPER.slice(1, -1), ...LEFT_EYE_LOWER.slice(1, -1), ...RIGHT_EYE_UPPER.slice(1, -1), ...RIGHT_EYE_LOWER.slice(1, -1)]);
/** Head translation passed on, in eye distances, and its gain: the avatar follows a moving head, but a framed head never leaves its frame. */
const MAX_SHIFT = 0.6;
const SHIFT_GAIN = 0.6;
const SCALE_RANGE: [number, number] = [0.85, 1.2];

export interface Neutral {
  n: number;
  canonical: Float64Array;
  rotSum: Float64Array;
  rotation: Mat3;
  tx: number;
  ty: number;
  scale: number;
  eyeL: number;
  eyeR: number;
  gx: number;
  gy: number;
  /** Mouth width in canonical units (eye distances): the driver's mouth size, for relative amplitudes. */
  mouthWidth: number;
  /** Mouth openness of the neutral: a calibration taken mid-sentence is corrected towards a closed mouth. */
  mouth: number;
  /** Frames seen since the calibration started (the eye correction runs only in the first seconds). */
  seen: number;
}

/** Points that move with the mouth (lips, jaw, chin): what a closed-mouth correction updates. */
const EYE_CORRECTION_FRAMES = 90;
const MOUTH_REGION: Int32Array = (() => {
  const out: number[] = [];
  for (let i = 0; i < NUM_LANDMARKS; i++) if (CANONICAL_FACE[3 * i + 1] > CANONICAL_FACE[3 * 2 + 1] + 0.05) out.push(i);
  return Int32Array.from(out);
})();

/**
 * A driver's neutral has the mouth closed and the eyes open. A calibration taken while the driver
 * talks (or blinks) is corrected: a frame with the mouth more closed than the neutral's pulls the
 * neutral's mouth region towards it, a frame with the eyes wider pulls its eye openness up. Without
 * this, every later closed mouth would read as "closing further than neutral" and the portrait's
 * lips would be pushed into each other.
 */
export function correctNeutral(n: Neutral, d: FaceState): void {
  if (d.mouthOpen < n.mouth - 0.01) {
    const k = 0.5;
    for (const i of MOUTH_REGION) for (let c = 0; c < 3; c++) n.canonical[3 * i + c] += (d.canonical[3 * i + c] - n.canonical[3 * i + c]) * k;
    n.mouth += (d.mouthOpen - n.mouth) * k;
  }
  // eyes only in the first ~3 s: later, wide eyes are an expression to pass on
  if (++n.seen > EYE_CORRECTION_FRAMES) return;
  if (d.eyeOpenLeft > n.eyeL + 0.01) n.eyeL += (d.eyeOpenLeft - n.eyeL) * 0.3;
  if (d.eyeOpenRight > n.eyeR + 0.01) n.eyeR += (d.eyeOpenRight - n.eyeR) * 0.3;
}

/** The rotation nearest to a sum or average of rotation matrices. */
export function orthonormalise(sum: Float64Array): Mat3 {
  // scaled to a rotation's Frobenius norm (√3) first: the quaternion formulas below assume one, and
  // a sum of N rotations would otherwise come out with its angle exaggerated by 4N/(3N+1) (×1.28 for 8)
  let f = 0;
  for (let i = 0; i < 9; i++) f += sum[i] * sum[i];
  const k = Math.sqrt(3 / (f || 1));
  const m = sum.map((v) => v * k);
  // nearest rotation via the quaternion of the (averaged) matrix
  const tr = m[0] + m[4] + m[8];
  let w: number, x: number, y: number, z: number;
  if (tr > 0) {
    const s = Math.sqrt(tr + 1) * 2;
    w = s / 4; x = (m[7] - m[5]) / s; y = (m[2] - m[6]) / s; z = (m[3] - m[1]) / s;
  } else if (m[0] > m[4] && m[0] > m[8]) {
    const s = Math.sqrt(1 + m[0] - m[4] - m[8]) * 2;
    w = (m[7] - m[5]) / s; x = s / 4; y = (m[1] + m[3]) / s; z = (m[2] + m[6]) / s;
  } else if (m[4] > m[8]) {
    const s = Math.sqrt(1 + m[4] - m[0] - m[8]) * 2;
    w = (m[2] - m[6]) / s; x = (m[1] + m[3]) / s; y = s / 4; z = (m[5] + m[7]) / s;
  } else {
    const s = Math.sqrt(1 + m[8] - m[0] - m[4]) * 2;
    w = (m[3] - m[1]) / s; x = (m[2] + m[6]) / s; y = (m[5] + m[7]) / s; z = s / 4;
  }
  return quatToMat(w, x, y, z);
}

const canonicalDist = (c: ArrayLike<number>, i: number, j: number): number => Math.hypot(c[3 * i] - c[3 * j], c[3 * i + 1] - c[3 * j + 1], c[3 * i + 2] - c[3 * j + 2]);

/** Adds one confident frame to a calibration; returns the neutral (new when `n` is null). */
export function calibrate(n: Neutral | null, d: FaceState, frames: number): Neutral {
  n ??= { n: 0, canonical: new Float64Array(NUM_LANDMARKS * 3), rotSum: new Float64Array(9), rotation: d.pose.rotation, tx: 0, ty: 0, scale: 0, eyeL: 0, eyeR: 0, gx: 0, gy: 0, mouthWidth: 0, mouth: 0, seen: 0 };
  if (n.n >= frames) {
    correctNeutral(n, d);
    return n;
  }
  const k = n.n + 1;
  const mix = (old: number, v: number): number => old + (v - old) / k;
  for (let i = 0; i < n.canonical.length; i++) n.canonical[i] = mix(n.canonical[i], d.canonical[i]);
  for (let i = 0; i < 9; i++) n.rotSum[i] += d.pose.rotation[i];
  n.rotation = orthonormalise(n.rotSum);
  n.tx = mix(n.tx, d.pose.translation[0]);
  n.ty = mix(n.ty, d.pose.translation[1]);
  n.scale = mix(n.scale, d.pose.scale);
  n.eyeL = mix(n.eyeL, d.eyeOpenLeft);
  n.eyeR = mix(n.eyeR, d.eyeOpenRight);
  n.gx = mix(n.gx, d.gaze.x);
  n.gy = mix(n.gy, d.gaze.y);
  n.mouthWidth = canonicalDist(n.canonical, MOUTH_CORNERS[0], MOUTH_CORNERS[1]);
  n.mouth = mix(n.mouth, d.mouthOpen);
  n.n = k;
  return n;
}

/**
 * Motion of the driver relative to its neutral, with gains. Expression offsets are scaled by the
 * ratio of the portrait's mouth width to the driver's (both in eye distances), so a mouth opens as
 * far as the driver's relative to its own size; eyelids move by openness ratios.
 */
export function motionFromDriver(d: FaceState, n: Neutral, params: RenderParams, portraitMouthWidth: number, out: Motion): Motion {
  const rel = matMul(d.pose.rotation, transpose(n.rotation));
  out.rotation = params.poseGain === 1 ? rel : scaleRotation(rel, params.poseGain);
  const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, v));
  out.tx = clamp(((d.pose.translation[0] - n.tx) / n.scale) * SHIFT_GAIN * params.poseGain, -MAX_SHIFT, MAX_SHIFT);
  out.ty = clamp(((d.pose.translation[1] - n.ty) / n.scale) * SHIFT_GAIN * params.poseGain, -MAX_SHIFT, MAX_SHIFT);
  out.scale = clamp(Math.pow(d.pose.scale / n.scale, params.poseGain), SCALE_RANGE[0], SCALE_RANGE[1]);
  const e = (out.expression ??= new Float32Array(NUM_LANDMARKS * 3));
  const g = params.expressionGain * (n.mouthWidth > 0 ? portraitMouthWidth / n.mouthWidth : 1);
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    if (LID_POINTS.has(i)) {
      e[3 * i] = e[3 * i + 1] = e[3 * i + 2] = 0;
      continue;
    }
    e[3 * i] = (d.canonical[3 * i] - n.canonical[3 * i]) * g;
    e[3 * i + 1] = (d.canonical[3 * i + 1] - n.canonical[3 * i + 1]) * g;
    e[3 * i + 2] = (d.canonical[3 * i + 2] - n.canonical[3 * i + 2]) * g;
  }
  const eg = params.expressionGain;
  const eye = (v: number, v0: number): number => Math.max(0, 1 + (Math.min(1.4, v / Math.max(1e-3, v0)) - 1) * eg);
  out.eyeLeft = eye(d.eyeOpenLeft, n.eyeL);
  out.eyeRight = eye(d.eyeOpenRight, n.eyeR);
  out.gazeX = params.gaze ? d.gaze.x - n.gx : 0;
  out.gazeY = params.gaze ? d.gaze.y - n.gy : 0;
  return out;
}

/** out = a blended towards b by k (0 → a, 1 → b); b = null means the neutral (identity) motion. */
export function blendMotion(a: Motion, b: Motion | null, k: number, out: Motion): Motion {
  const t = b ?? IDENTITY;
  const rel = matMul(t.rotation, transpose(a.rotation));
  out.rotation = matMul(scaleRotation(rel, k), a.rotation);
  out.tx = a.tx + (t.tx - a.tx) * k;
  out.ty = a.ty + (t.ty - a.ty) * k;
  out.scale = a.scale + (t.scale - a.scale) * k;
  if (a.expression || t.expression) {
    const e = (out.expression ??= new Float32Array(NUM_LANDMARKS * 3));
    for (let i = 0; i < e.length; i++) {
      const va = a.expression ? a.expression[i] : 0;
      const vb = t.expression ? t.expression[i] : 0;
      e[i] = va + (vb - va) * k;
    }
  } else out.expression = null;
  out.eyeLeft = a.eyeLeft + (t.eyeLeft - a.eyeLeft) * k;
  out.eyeRight = a.eyeRight + (t.eyeRight - a.eyeRight) * k;
  out.gazeX = a.gazeX + (t.gazeX - a.gazeX) * k;
  out.gazeY = a.gazeY + (t.gazeY - a.gazeY) * k;
  return out;
}
const IDENTITY = identityMotion();

export function copyMotion(a: Motion, out: Motion): Motion {
  out.rotation = Float64Array.from(a.rotation);
  out.tx = a.tx;
  out.ty = a.ty;
  out.scale = a.scale;
  if (a.expression) (out.expression ??= new Float32Array(a.expression.length)).set(a.expression);
  else out.expression = null;
  out.eyeLeft = a.eyeLeft;
  out.eyeRight = a.eyeRight;
  out.gazeX = a.gazeX;
  out.gazeY = a.gazeY;
  return out;
}

/**
 * Watches the driver for a change that needs a new calibration: a cut (the landmarks jump by more
 * than `jump` eye distances in a 30 fps frame's time — a head never moves that fast, measured at
 * ≤ 0.1 on the real clips; a splice of two clips jumps by ≥ 0.46) or frames without a face for
 * longer than `lossMs`. Returns true on the frame where the change is seen.
 */
export class DriverWatch {
  private prev: Float32Array | null = null;
  private prevT = -Infinity;
  /** When frames without a face began (null while a face is seen): a pause in delivery is no loss. */
  private lostSince: number | null = null;
  constructor(private readonly opts: { jump: number; lossMs: number }) {}

  see(d: FaceState | null, now: number): boolean {
    if (!d) {
      this.prev = null;
      if (this.lostSince === null && this.prevT > -Infinity) this.lostSince = now;
      return false;
    }
    let changed = this.lostSince !== null && now - this.lostSince > this.opts.lossMs;
    this.lostSince = null;
    const lm = d.rawLandmarks;
    if (this.prev) {
      let m = 0;
      for (let i = 0; i < NUM_LANDMARKS; i++) m += Math.hypot(lm[3 * i] - this.prev[3 * i], lm[3 * i + 1] - this.prev[3 * i + 1]);
      const perFrame = Math.max(1, (now - this.prevT) / (1000 / 30));
      if (m / NUM_LANDMARKS / d.pose.scale / perFrame > this.opts.jump) changed = true;
    }
    (this.prev ??= new Float32Array(lm.length)).set(lm);
    this.prevT = now;
    return changed;
  }

  reset(): void {
    this.prev = null;
    this.prevT = -Infinity;
    this.lostSince = null;
  }
}
