/**
 * mesh-warp: the CPU renderer. The driver's face is tracked in each driving frame; its head pose
 * and expression relative to its own neutral (auto-calibrated from the first confident frames)
 * are retargeted onto the portrait, which is warped piecewise-affinely along the face mesh
 * (extended over the whole frame), with eyelids, irises and the mouth interior handled explicitly.
 */
import { XplError } from '../../errors.ts';
import { allocI420, planes, type I420Frame, type RgbaImage } from '../../media/frame.ts';
import { cropScaleI420, i420ToRgba, rgbaToI420 } from '../../media/convert.ts';
import { LEFT_EYE_LOWER, LEFT_EYE_UPPER, NUM_LANDMARKS, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER } from '../../face/landmarks.ts';
import { matMul, scaleRotation, transpose, quatToMat, type Mat3 } from '../../face/pose.ts';
import { detectFace, FaceTracker, type TrackerOptions } from '../../face/tracker.ts';
import type { FaceState } from '../../face/types.ts';
import type { DrivingFrame, PortraitState, RenderParams, Renderer, RendererOptions } from '../types.ts';
import { allocTargets, buildRig, computeTargets, identityMotion, type Motion, type Rig, type Targets } from './rig.ts';
import { allocScratch, warpFrame, type WarpScratch } from './warp.ts';

export interface MeshWarpPortrait extends PortraitState {
  rig: Rig;
  scratch: WarpScratch;
  targets: Targets;
}

export interface MeshWarpOptions extends RendererOptions {
  tracker?: TrackerOptions;
  /** Confident frames averaged into the driver's neutral (default 8). */
  calibrationFrames?: number;
  /** How long the last good state is held when the face is lost, ms (default 500), and the ease to neutral after it (time constant, ms; default 400). */
  holdMs?: number;
  easeMs?: number;
}

export const DEFAULT_PARAMS: RenderParams = { expressionGain: 1, poseGain: 1, smoothing: 0.5, gaze: true, framing: 'full', zoom: 1 };

const LID_POINTS = new Set([...LEFT_EYE_UPPER.slice(1, -1), ...LEFT_EYE_LOWER.slice(1, -1), ...RIGHT_EYE_UPPER.slice(1, -1), ...RIGHT_EYE_LOWER.slice(1, -1)]);

/**
 * Prepares a portrait for an output size: fit 'cover' around the face (so a wide output of a tall
 * portrait keeps the face in frame), find the face again in the fitted image, build the warp rig.
 */
export async function preparePortrait(portrait: RgbaImage, width: number, height: number): Promise<MeshWarpPortrait> {
  const srcW = portrait.width & ~1;
  const srcH = portrait.height & ~1;
  const even = portrait.width === srcW && portrait.height === srcH ? portrait : cropRgba(portrait, srcW, srcH);
  const full = allocI420(srcW, srcH);
  rgbaToI420(even, full);
  const whole = await detectFace(even);
  if (!whole) throw new XplError('no_face', 'no face found in the portrait');
  const { x, y, width: bw, height: bh } = whole.detection.box;
  const fitted = allocI420(width, height);
  cropScaleI420(full, fitted, 'cover', { x: x + bw / 2, y: y + bh / 2 });
  const rgba: RgbaImage = { width, height, data: new Uint8Array(width * height * 4) };
  i420ToRgba(fitted, rgba);
  const face = await detectFace(rgba);
  if (!face) throw new XplError('no_face', 'no face found in the portrait');
  const p = planes(fitted);
  const rig = buildRig(width, height, { data: p.y, width, height }, { data: p.u, width: p.cw, height: p.ch }, { data: p.v, width: p.cw, height: p.ch }, face);
  return { width, height, rig, scratch: allocScratch(rig), targets: allocTargets(rig) };
}

function cropRgba(img: RgbaImage, w: number, h: number): RgbaImage {
  const out = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) out.set(img.data.subarray(y * img.width * 4, y * img.width * 4 + w * 4), y * w * 4);
  return { width: w, height: h, data: out };
}

interface Neutral {
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
}

function orthonormalise(m: Float64Array): Mat3 {
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

/** Motion of the driver relative to its neutral, with gains. */
export function motionFromDriver(d: FaceState, n: Neutral, params: RenderParams, out: Motion): Motion {
  const rel = matMul(d.pose.rotation, transpose(n.rotation));
  out.rotation = params.poseGain === 1 ? rel : scaleRotation(rel, params.poseGain);
  out.tx = ((d.pose.translation[0] - n.tx) / n.scale) * params.poseGain;
  out.ty = ((d.pose.translation[1] - n.ty) / n.scale) * params.poseGain;
  out.scale = Math.pow(d.pose.scale / n.scale, params.poseGain);
  const e = (out.expression ??= new Float32Array(NUM_LANDMARKS * 3));
  const g = params.expressionGain;
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    if (LID_POINTS.has(i)) {
      e[3 * i] = e[3 * i + 1] = e[3 * i + 2] = 0;
      continue;
    }
    e[3 * i] = (d.canonical[3 * i] - n.canonical[3 * i]) * g;
    e[3 * i + 1] = (d.canonical[3 * i + 1] - n.canonical[3 * i + 1]) * g;
    e[3 * i + 2] = (d.canonical[3 * i + 2] - n.canonical[3 * i + 2]) * g;
  }
  const eye = (v: number, v0: number): number => Math.max(0, 1 + (Math.min(1.4, v / Math.max(1e-3, v0)) - 1) * g);
  out.eyeLeft = eye(d.eyeOpenLeft, n.eyeL);
  out.eyeRight = eye(d.eyeOpenRight, n.eyeR);
  out.gazeX = params.gaze ? d.gaze.x - n.gx : 0;
  out.gazeY = params.gaze ? d.gaze.y - n.gy : 0;
  return out;
}

function lerpMotion(a: Motion, k: number, out: Motion): Motion {
  // k = 0 → a, k = 1 → identity
  const id = identityMotion();
  out.rotation = scaleRotation(a.rotation, 1 - k);
  out.tx = a.tx * (1 - k);
  out.ty = a.ty * (1 - k);
  out.scale = 1 + (a.scale - 1) * (1 - k);
  if (a.expression) {
    const e = (out.expression ??= new Float32Array(a.expression.length));
    for (let i = 0; i < e.length; i++) e[i] = a.expression[i] * (1 - k);
  } else out.expression = null;
  out.eyeLeft = id.eyeLeft + (a.eyeLeft - 1) * (1 - k);
  out.eyeRight = id.eyeRight + (a.eyeRight - 1) * (1 - k);
  out.gazeX = a.gazeX * (1 - k);
  out.gazeY = a.gazeY * (1 - k);
  return out;
}

function copyMotion(a: Motion, out: Motion): Motion {
  out.rotation = Float64Array.from(a.rotation);
  out.tx = a.tx;
  out.ty = a.ty;
  out.scale = a.scale;
  out.expression = a.expression ? Float32Array.from(a.expression) : null;
  out.eyeLeft = a.eyeLeft;
  out.eyeRight = a.eyeRight;
  out.gazeX = a.gazeX;
  out.gazeY = a.gazeY;
  return out;
}

export interface MeshWarpRenderer extends Renderer<MeshWarpPortrait> {
  /** The last tracked driver face (null when none): for stats and the eval harness. */
  readonly lastDriverFace: FaceState | null;
  /** Timings of the last render, ms. */
  readonly lastTimings: { track: number; warp: number };
}

export async function createMeshWarpRenderer(opts: MeshWarpOptions): Promise<MeshWarpRenderer> {
  const W = opts.outputWidth;
  const H = opts.outputHeight;
  if (!(W > 0 && H > 0) || W % 2 || H % 2) throw new XplError('bad_request', `mesh-warp: output size must be even and positive, got ${W}×${H}`);
  const tracker = await FaceTracker.create(opts.tracker);
  const calibN = opts.calibrationFrames ?? 8;
  const holdMs = opts.holdMs ?? 500;
  const easeMs = opts.easeMs ?? 400;
  const params: RenderParams = { ...DEFAULT_PARAMS };
  let neutral: Neutral | null = null;
  const motion = identityMotion();
  const lastGood = identityMotion();
  let lastGoodT = -Infinity;
  let driverFace: FaceState | null = null;
  const timings = { track: 0, warp: 0 };

  const applySmoothing = (): void => {
    // 0 → light (5 Hz), 1 → heavy (0.3 Hz)
    const s = Math.max(0, Math.min(1, params.smoothing));
    tracker.setSmoothing({ minCutoff: 5 * Math.pow(0.06, s), beta: 8 * (1 - 0.7 * s) });
  };
  applySmoothing();

  const calibrate = (d: FaceState): void => {
    if (!neutral) {
      neutral = { n: 0, canonical: new Float64Array(NUM_LANDMARKS * 3), rotSum: new Float64Array(9), rotation: d.pose.rotation, tx: 0, ty: 0, scale: 0, eyeL: 0, eyeR: 0, gx: 0, gy: 0 };
    }
    const n = neutral;
    if (n.n >= calibN) return;
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
    n.n = k;
  };

  return {
    name: 'mesh-warp',
    get lastDriverFace() {
      return driverFace;
    },
    get lastTimings() {
      return timings;
    },
    get lastFaceFound() {
      return driverFace !== null && driverFace.confidence >= 0.5;
    },
    async prepare(portrait: RgbaImage): Promise<MeshWarpPortrait> {
      return preparePortrait(portrait, W, H);
    },
    async render(p: MeshWarpPortrait, d: DrivingFrame, out: I420Frame): Promise<void> {
      const t0 = performance.now();
      const f = d.frame;
      const now = f.timestamp;
      driverFace = await tracker.trackImage({ kind: 'i420', width: f.width, height: f.height, data: f.data }, now);
      const t1 = performance.now();
      if (driverFace && driverFace.confidence >= 0.5) {
        calibrate(driverFace);
        motionFromDriver(driverFace, neutral!, params, motion);
        copyMotion(motion, lastGood);
        lastGoodT = now;
      } else if (now - lastGoodT <= holdMs) {
        copyMotion(lastGood, motion);
      } else {
        const k = 1 - Math.exp(-(now - lastGoodT - holdMs) / easeMs);
        lerpMotion(lastGood, k, motion);
      }
      computeTargets(p.rig, motion, p.targets);
      warpFrame(p.rig, p.targets, out, p.scratch);
      out.timestamp = f.timestamp;
      timings.track = t1 - t0;
      timings.warp = performance.now() - t1;
    },
    reset(_p: MeshWarpPortrait): void {
      neutral = null;
      tracker.reset();
      copyMotion(identityMotion(), lastGood);
      lastGoodT = -Infinity;
    },
    setParams(next: Partial<RenderParams>): void {
      for (const [k, v] of Object.entries(next)) {
        if (v === undefined) continue;
        if (k === 'gaze') {
          if (typeof v !== 'boolean') throw new XplError('bad_request', 'gaze must be a boolean');
          params.gaze = v;
        } else if (k === 'expressionGain' || k === 'poseGain' || k === 'smoothing') {
          if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > (k === 'smoothing' ? 1 : 3)) throw new XplError('bad_request', `${k} out of range`);
          params[k] = v;
        } else throw new XplError('bad_request', `unknown render parameter ${k}`);
      }
      applySmoothing();
    },
    async dispose(): Promise<void> {
      driverFace = null;
    },
  };
}
