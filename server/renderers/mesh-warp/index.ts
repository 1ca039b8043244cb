/**
 * mesh-warp: the CPU renderer. The driver's face is tracked in each driving frame; its head pose
 * and expression relative to its own neutral (auto-calibrated from the first confident frames of
 * each driver: a cut, a new person or a long loss starts a new calibration) are retargeted onto the
 * portrait — framed on its head by default — which is warped piecewise-affinely along the face mesh
 * (extended over the whole frame), with eyelids, irises and the mouth interior handled explicitly.
 */
import { XplError } from '../../errors.ts';
import type { I420Frame, RgbaImage } from '../../media/frame.ts';
import { MOUTH_CORNERS } from '../../face/landmarks.ts';
import { FaceTracker, type TrackerOptions } from '../../face/tracker.ts';
import type { FaceState } from '../../face/types.ts';
import { FRAMINGS, type DrivingFrame, type RenderParams, type Renderer, type RendererOptions } from '../types.ts';
import { blendMotion, calibrate, copyMotion, DriverWatch, motionFromDriver, type Neutral } from './motion.ts';
import { preparePortrait, reframePortrait, type MeshWarpPortrait } from './portrait.ts';
import { computeTargets, identityMotion } from './rig.ts';
import { warpFrame } from './warp.ts';

export { preparePortrait, type MeshWarpPortrait } from './portrait.ts';
export { motionFromDriver } from './motion.ts';

export interface MeshWarpOptions extends RendererOptions {
  tracker?: TrackerOptions;
  /** Confident frames averaged into the driver's neutral (default 8). */
  calibrationFrames?: number;
  /** How long the last good state is held when the face is lost, ms (default 500), and the ease to neutral after it (time constant, ms; default 400). */
  holdMs?: number;
  easeMs?: number;
  /** A face lost longer than this is a new driver when it comes back (ms, default 1500). */
  lossMs?: number;
  /** How long the output takes to blend from the old driver's motion into the new one's after a change, ms (default 400). */
  changeMs?: number;
}

export const DEFAULT_PARAMS: RenderParams = { expressionGain: 1, poseGain: 1, smoothing: 0.5, gaze: true, framing: 'head', zoom: 1 };
export const ZOOM_RANGE: [number, number] = [0.5, 3];
/** Landmark jump (eye distances per 30 fps frame) that counts as a cut: real heads stay ≤ 0.1 (see DriverWatch). */
const CUT_JUMP = 0.25;
/** Frames a tracker takes to settle on a new face before its readings are calibrated on. */
const SETTLE = 2;

export interface MeshWarpRenderer extends Renderer<MeshWarpPortrait> {
  /** The last tracked driver face (null when none): for stats and the eval harness. */
  readonly lastDriverFace: FaceState | null;
  /** Timings of the last render, ms. */
  readonly lastTimings: { track: number; warp: number };
  /** Driver changes seen (cuts, new people, long losses) since creation. */
  readonly driverChanges: number;
}

const ease = (t: number): number => (t <= 0 ? 0 : t >= 1 ? 1 : 0.5 - 0.5 * Math.cos(Math.PI * t));

export async function createMeshWarpRenderer(opts: MeshWarpOptions): Promise<MeshWarpRenderer> {
  const W = opts.outputWidth;
  const H = opts.outputHeight;
  if (!(W > 0 && H > 0) || W % 2 || H % 2) throw new XplError('bad_request', `mesh-warp: output size must be even and positive, got ${W}×${H}`);
  const tracker = await FaceTracker.create(opts.tracker);
  const calibN = opts.calibrationFrames ?? 8;
  const holdMs = opts.holdMs ?? 500;
  const easeMs = opts.easeMs ?? 400;
  const changeMs = opts.changeMs ?? 400;
  const params: RenderParams = { ...DEFAULT_PARAMS, framing: opts.framing ?? DEFAULT_PARAMS.framing, zoom: opts.zoom ?? DEFAULT_PARAMS.zoom };
  const watch = new DriverWatch({ jump: CUT_JUMP, lossMs: opts.lossMs ?? 1500 });
  let neutral: Neutral | null = null;
  const motion = identityMotion();
  const fresh = identityMotion();
  const lastGood = identityMotion();
  /** The output's motion when the driver changed: blended out over changeMs. */
  const before = identityMotion();
  let changeT = -Infinity;
  let lastGoodT = -Infinity;
  let changes = 0;
  /** Frames of the current driver: the first SETTLE are not calibrated on (the tracker's first reading of a new face is off by degrees). */
  let driverFrames = 0;
  /** reset() asks for a new calibration from the next frame on (it has no timestamp of its own). */
  let resetPending = false;
  let driverFace: FaceState | null = null;
  const timings = { track: 0, warp: 0 };

  const applySmoothing = (): void => {
    // 0 → light (2.5 Hz), 1 → heavy (0.15 Hz) at rest; fast motion raises the cutoff (beta)
    const s = Math.max(0, Math.min(1, params.smoothing));
    tracker.setSmoothing({ minCutoff: 2.5 * Math.pow(0.06, s), beta: 8 * (1 - 0.7 * s) });
  };
  applySmoothing();

  /** A new driver from now on: forget the old one's smoothing and neutral, blend out of where the output is. */
  const newDriver = (now: number): void => {
    copyMotion(motion, before);
    changeT = now;
    neutral = null;
    driverFrames = 0;
    changes++;
  };

  const spec = () => ({ framing: params.framing, zoom: params.zoom });
  const mouthWidth = (p: MeshWarpPortrait): number => {
    const c = p.rig.face.canonical;
    const [a, b] = MOUTH_CORNERS;
    return Math.hypot(c[3 * a] - c[3 * b], c[3 * a + 1] - c[3 * b + 1], c[3 * a + 2] - c[3 * b + 2]);
  };

  return {
    name: 'mesh-warp',
    get lastDriverFace() {
      return driverFace;
    },
    get lastTimings() {
      return timings;
    },
    get driverChanges() {
      return changes;
    },
    get lastFaceFound() {
      return driverFace !== null && driverFace.confidence >= 0.5;
    },
    async prepare(portrait: RgbaImage): Promise<MeshWarpPortrait> {
      return preparePortrait(portrait, W, H, spec());
    },
    async render(p: MeshWarpPortrait, d: DrivingFrame, out: I420Frame): Promise<void> {
      // a framing or zoom change since the last frame: re-frame from the source (once)
      await reframePortrait(p, spec());
      const t0 = performance.now();
      const f = d.frame;
      const now = f.timestamp;
      let face = await tracker.trackImage({ kind: 'i420', width: f.width, height: f.height, data: f.data }, now);
      if (face && face.confidence < 0.5) face = null;
      if (resetPending) {
        resetPending = false;
        newDriver(now);
      }
      if (watch.see(face, now)) {
        // the smoothed landmarks still carry the old face: start the filter afresh on this frame
        tracker.reset();
        face = await tracker.trackImage({ kind: 'i420', width: f.width, height: f.height, data: f.data }, now);
        newDriver(now);
      }
      driverFace = face;
      const t1 = performance.now();
      if (face && ++driverFrames <= SETTLE) {
        // the output holds where it is while the tracker settles on a new face
        lastGoodT = now;
      } else if (face) {
        neutral = calibrate(neutral, face, calibN);
        motionFromDriver(face, neutral, params, mouthWidth(p), fresh);
        // after a driver change, blend from where the output was into the new driver's motion
        const k = ease((now - changeT) / changeMs);
        if (k < 1) blendMotion(before, fresh, k, motion);
        else copyMotion(fresh, motion);
        copyMotion(motion, lastGood);
        lastGoodT = now;
      } else if (now - lastGoodT <= holdMs) {
        copyMotion(lastGood, motion);
      } else {
        blendMotion(lastGood, null, 1 - Math.exp(-(now - lastGoodT - holdMs) / easeMs), motion);
      }
      computeTargets(p.rig, motion, p.targets);
      warpFrame(p.rig, p.targets, out, p.scratch);
      out.timestamp = f.timestamp;
      timings.track = t1 - t0;
      timings.warp = performance.now() - t1;
    },
    reset(_p: MeshWarpPortrait): void {
      tracker.reset();
      watch.reset();
      resetPending = true;
    },
    setParams(next: Partial<RenderParams>): void {
      const checked: Partial<RenderParams> = {};
      for (const [k, v] of Object.entries(next)) {
        if (v === undefined) continue;
        if (k === 'gaze') {
          if (typeof v !== 'boolean') throw new XplError('bad_request', 'gaze must be a boolean');
          checked.gaze = v;
        } else if (k === 'framing') {
          if (!FRAMINGS.includes(v as never)) throw new XplError('bad_request', `framing must be one of ${FRAMINGS.join(', ')}`);
          checked.framing = v as RenderParams['framing'];
        } else if (k === 'zoom') {
          if (typeof v !== 'number' || !(v >= ZOOM_RANGE[0] && v <= ZOOM_RANGE[1])) throw new XplError('bad_request', `zoom must be ${ZOOM_RANGE[0]}..${ZOOM_RANGE[1]}`);
          checked.zoom = v;
        } else if (k === 'expressionGain' || k === 'poseGain' || k === 'smoothing') {
          if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > (k === 'smoothing' ? 1 : 3)) throw new XplError('bad_request', `${k} out of range`);
          checked[k] = v;
        } else throw new XplError('bad_request', `unknown render parameter ${k}`);
      }
      Object.assign(params, checked);
      applySmoothing();
    },
    async dispose(): Promise<void> {
      driverFace = null;
    },
  };
}
