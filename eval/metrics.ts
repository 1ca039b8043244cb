/**
 * Quality metrics of the mesh-warp renderer on a driving sequence, computed offline through the
 * same renderer code path the server uses (createMeshWarpRenderer → prepare → render per frame).
 *
 * Per frame (the output is tracked with its own FaceTracker, the driver's face comes from the
 * renderer; both relative to their neutral — the average of 8 tracked frames after the 2 a tracker
 * takes to settle, as the renderer calibrates (again after a cut); frames before a neutral is complete are not scored):
 * - identity: cosine of FaceRes descriptors, output vs portrait and output vs driver
 * - expression error: mean canonical-frame landmark distance between the driver's and the output's
 *   expression change (canonical unit = distance between the eye centres, i.e. IOD-normalised)
 * - eye / mouth openness error: |Δopenness(output) − Δopenness(driver)|
 * - pose error: angle between the driver's and the output's head rotation change, degrees
 * - output face fraction: width of the output face (its landmarks' extent) / output width
 * - jitter (the clip's still window, eval/jitter.ts): mean |ΔY| between consecutive output frames,
 *   and landmark motion per frame / IOD of the output and of the driver (its own landmark noise),
 *   read raw by the trackers and through one fixed crop per side; the raw judge's floor on the
 *   portrait (its neutral render repeated); the warp's own face vertices
 * With ground truth (make-driving's .json): driver-tracker pose error vs the script.
 * With a cut (a spliced clip): the output face's distance from the portrait's neutral position
 * after the cut, and how long it takes to come back.
 */
import { allocI420, type I420Frame, type RgbaImage } from '../server/media/frame.ts';
import { createMeshWarpRenderer, type MeshWarpPortrait } from '../server/renderers/mesh-warp/index.ts';
import { detectFace, FaceTracker, roiFromLandmarks } from '../server/face/tracker.ts';
import { landmarkBox } from '../server/face/landmarks.ts';
import { loadFaceResModel, ort } from '../server/face/models.ts';
import { cropToTensor } from '../server/face/sampler.ts';
import { eulerToMat, matMul, matToEuler, rotationDistanceDeg, transpose } from '../server/face/pose.ts';
import type { FaceImage, FaceState } from '../server/face/types.ts';
import type { RenderParams } from '../server/renderers/types.ts';
import { computeTargets, identityMotion } from '../server/renderers/mesh-warp/rig.ts';
import { warpFrame } from '../server/renderers/mesh-warp/warp.ts';
import { judgeFloor, JitterMeter, type JitterMetrics } from './jitter.ts';
import type { ScriptFrame } from './script.ts';

/** Frames averaged into a neutral, as the renderer calibrates (8 confident frames, after the 2 a tracker takes to settle on a new face). */
const NEUTRAL_FRAMES = 8;
const SETTLE_FRAMES = 2;

/** What a neutral keeps: the average of a side's first frames. */
type NeutralFace = Pick<FaceState, 'canonical' | 'eyeOpenLeft' | 'eyeOpenRight' | 'mouthOpen'> & { pose: { rotation: Float64Array } };

function averageFace(fs: FaceState[]): NeutralFace {
  const canonical = new Float32Array(468 * 3);
  const rot = new Float64Array(9);
  let el = 0;
  let er = 0;
  let mo = 0;
  for (const f of fs) {
    for (let i = 0; i < canonical.length; i++) canonical[i] += f.canonical[i] / fs.length;
    for (let i = 0; i < 9; i++) rot[i] += f.pose.rotation[i];
    el += f.eyeOpenLeft / fs.length;
    er += f.eyeOpenRight / fs.length;
    mo += f.mouthOpen / fs.length;
  }
  return { canonical, eyeOpenLeft: el, eyeOpenRight: er, mouthOpen: mo, pose: { rotation: nearestRotation(rot.map((v) => v / fs.length)) } };
}

/**
 * The rotation nearest to an average of rotations: the orthogonal polar factor, by Newton's
 * iteration R ← (R + R⁻ᵀ) / 2. (The judge has its own, rather than the renderer's.)
 */
function nearestRotation(m: Float64Array): Float64Array {
  let r = Float64Array.from(m);
  for (let it = 0; it < 20; it++) {
    const [a, b, c, d, e, f, g, h, i] = r;
    const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    // inverse transpose = cofactor matrix / det
    const it_ = [e * i - f * h, -(d * i - f * g), d * h - e * g, -(b * i - c * h), a * i - c * g, -(a * h - b * g), b * f - c * e, -(a * f - c * d), a * e - b * d];
    r = r.map((v, k) => (v + it_[k] / det) / 2);
  }
  return r;
}

const snapshot = (f: FaceState): FaceState => ({ ...f, canonical: Float32Array.from(f.canonical), pose: { ...f.pose, rotation: Float64Array.from(f.pose.rotation) } });

export interface Euler {
  yaw: number;
  pitch: number;
  roll: number;
}

export interface FrameMetrics {
  index: number;
  driverFace: boolean;
  outputFace: boolean;
  identityPortrait: number | null;
  identityDriver: number | null;
  /** cos(output − c, portrait − c) with c = mean of the portrait's and the driver's first descriptors: +1 portrait-like, −1 driver-like. */
  identityCentred: number | null;
  expressionError: number | null;
  eyeError: number | null;
  mouthError: number | null;
  poseError: number | null;
  /** Head rotation relative to neutral (degrees), driver and output. */
  driverPose: Euler | null;
  outputPose: Euler | null;
  driverMouth: number | null;
  outputMouth: number | null;
  driverEye: number | null;
  outputEye: number | null;
  /** Output face width / output width. */
  outputFaceFraction: number | null;
  /** Output face centre's distance from its neutral position, in output face widths. */
  outputOffset: number | null;
  /** Driver tracker vs script (degrees), when ground truth is given. */
  trackerPoseError: number | null;
  renderMs: number;
  trackMs: number;
}

export interface CutMetrics {
  /** Frame index of the cut. */
  at: number;
  /** Output face offset from neutral (face widths), max over the second after the cut and mean over the second after that. */
  maxOffset1s: number;
  meanOffsetAfter1s: number;
  /** Output head rotation from neutral (degrees), mean over the second after the first one. */
  meanRotationAfter1s: number;
  /** ms after the cut until the output face is within 0.1 face widths of neutral for 0.5 s (null: never). */
  settleMs: number | null;
}

export interface Aggregate extends JitterMetrics {
  frames: number;
  driverTracked: number;
  outputTracked: number;
  identityPortrait: number;
  identityDriver: number;
  identityCentred: number;
  expressionError: number;
  eyeError: number;
  mouthError: number;
  poseError: number;
  poseErrorP95: number;
  trackerPoseError: number | null;
  mouthCorrelation: number;
  /** Output face width / output width, mean over frames. */
  outputFaceFraction: number;
  renderMsP50: number;
  trackMsP50: number;
  cut: CutMetrics | null;
}

export interface EvalResult {
  frames: FrameMetrics[];
  aggregate: Aggregate;
  /** Output frames (for contact sheets). */
  outputs: I420Frame[];
}

async function descriptor(sess: ort.InferenceSession, img: FaceImage, lm: Float32Array, buf: Float32Array): Promise<Float32Array> {
  const roi = roiFromLandmarks(lm, 1.1);
  cropToTensor(img, roi, 224, buf, '01');
  const r = await sess.run({ input_1: new ort.Tensor('float32', buf, [1, 224, 224, 3]) });
  return Float32Array.from(r['global_pooling/Mean'].data as Float32Array);
}

function cosine(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return d / Math.sqrt(na * nb);
}

export function pearson(a: number[], b: number[]): number {
  const n = a.length;
  if (n < 2) return 0;
  const ma = a.reduce((s, v) => s + v, 0) / n;
  const mb = b.reduce((s, v) => s + v, 0) / n;
  let c = 0;
  let va = 0;
  let vb = 0;
  for (let i = 0; i < n; i++) {
    c += (a[i] - ma) * (b[i] - mb);
    va += (a[i] - ma) ** 2;
    vb += (b[i] - mb) ** 2;
  }
  return c / Math.sqrt(va * vb || 1);
}

const mean = (v: number[]): number => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);
const pct = (v: number[], p: number): number => {
  if (!v.length) return NaN;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** Landmark extent: centre and width (image pixels). */
function faceExtent(lm: Float32Array): { cx: number; cy: number; width: number } {
  const b = landmarkBox(lm);
  return { cx: b.x + b.width / 2, cy: b.y + b.height / 2, width: b.width };
}

export interface EvalOptions {
  portrait: RgbaImage;
  frames: I420Frame[];
  script?: ScriptFrame[];
  size?: number;
  /** Render parameters (framing, zoom, gains) set before the first frame. */
  params?: Partial<RenderParams>;
  /** Identity descriptors every `identityStride` frames (default 5). */
  identityStride?: number;
  /** Frame indices [start, end) of a still driver for the jitter metric (default 0–30). */
  still?: [number, number];
  /** Frame index where the driver changes (a spliced clip): neutrals restart there, and the cut metrics are computed. */
  cut?: number;
  /** Frames per second of the clip (for the cut metrics; default 30). */
  fps?: number;
  keepOutputs?: boolean;
}

export async function evaluate(opts: EvalOptions): Promise<EvalResult> {
  const size = opts.size ?? 512;
  const renderer = await createMeshWarpRenderer({ outputWidth: size, outputHeight: size });
  if (opts.params) renderer.setParams!(opts.params);
  const p: MeshWarpPortrait = await renderer.prepare(opts.portrait);
  // the judge adds no lag of its own: the output is read unsmoothed (the driver's side is what the
  // renderer rendered from, its smoothed reading)
  const outTracker = await FaceTracker.create({ smoothing: { minCutoff: 1000, beta: 0 } });
  const faceres = await loadFaceResModel();
  const buf = new Float32Array(224 * 224 * 3);
  const portraitFace = await detectFace(opts.portrait);
  const portraitDesc = portraitFace ? await descriptor(faceres, { kind: 'rgba', ...opts.portrait }, portraitFace.landmarks, buf) : null;
  const stride = opts.identityStride ?? 5;
  const [s0, s1] = opts.still ?? [0, 30];
  const frames: FrameMetrics[] = [];
  const outputs: I420Frame[] = [];
  let dN: NeutralFace | null = null;
  let oN: NeutralFace | null = null;
  let dAcc: FaceState[] = [];
  const oAcc: FaceState[] = [];
  let dSeen = 0;
  let oSeen = 0;
  let oNeutral: { cx: number; cy: number; width: number } | null = null;
  let centre: Float32Array | null = null;
  const jitter = await JitterMeter.create([s0, s1]);
  const meshXY = new Float64Array(468 * 2);
  const scriptR0 = opts.script ? eulerToMat(opts.script[0].yaw, opts.script[0].pitch, opts.script[0].roll) : null;
  const rotOut: Array<number | null> = [];
  for (let k = 0; k < opts.frames.length; k++) {
    const out = allocI420(size, size);
    const df = opts.frames[k];
    // after a cut the new driver's neutral is its first frames, as the renderer's recalibration takes it
    if (k === opts.cut) {
      dN = null;
      dAcc = [];
      dSeen = 0;
    }
    await renderer.render(p, { frame: df, index: k }, out);
    const d = renderer.lastDriverFace;
    const o = await outTracker.trackImage({ kind: 'i420', width: size, height: size, data: out.data }, df.timestamp);
    const m: FrameMetrics = {
      index: k, driverFace: !!d, outputFace: !!o,
      identityPortrait: null, identityDriver: null, identityCentred: null, expressionError: null, eyeError: null, mouthError: null, poseError: null,
      driverPose: null, outputPose: null, driverMouth: null, outputMouth: null, driverEye: null, outputEye: null,
      outputFaceFraction: null, outputOffset: null, trackerPoseError: null,
      renderMs: renderer.lastTimings.warp, trackMs: renderer.lastTimings.track,
    };
    if (d && !dN && ++dSeen > SETTLE_FRAMES && dAcc.push(snapshot(d)) >= NEUTRAL_FRAMES) dN = averageFace(dAcc);
    if (o && !oN && ++oSeen > SETTLE_FRAMES && oAcc.push(snapshot(o)) >= NEUTRAL_FRAMES) oN = averageFace(oAcc);
    if (o && !oNeutral) oNeutral = faceExtent(o.landmarks);
    let oRel = null;
    if (o && oN && oNeutral) {
      const e = faceExtent(o.landmarks);
      m.outputFaceFraction = e.width / size;
      m.outputOffset = Math.hypot(e.cx - oNeutral.cx, e.cy - oNeutral.cy) / oNeutral.width;
      oRel = matMul(o.pose.rotation, transpose(oN.pose.rotation));
      m.outputPose = matToEuler(oRel);
    }
    rotOut.push(oRel ? rotationDistanceDeg(oRel, eulerToMat(0, 0, 0)) : null);
    if (d && dN) m.driverPose = matToEuler(matMul(d.pose.rotation, transpose(dN.pose.rotation)));
    if (d && o && dN && oN && oRel) {
      let e = 0;
      for (let i = 0; i < 468; i++) {
        const dx = d.canonical[3 * i] - dN.canonical[3 * i] - (o.canonical[3 * i] - oN.canonical[3 * i]);
        const dy = d.canonical[3 * i + 1] - dN.canonical[3 * i + 1] - (o.canonical[3 * i + 1] - oN.canonical[3 * i + 1]);
        e += Math.hypot(dx, dy);
      }
      m.expressionError = e / 468;
      m.driverEye = (d.eyeOpenLeft + d.eyeOpenRight - dN.eyeOpenLeft - dN.eyeOpenRight) / 2;
      m.outputEye = (o.eyeOpenLeft + o.eyeOpenRight - oN.eyeOpenLeft - oN.eyeOpenRight) / 2;
      m.eyeError = Math.abs(m.driverEye - m.outputEye);
      m.driverMouth = d.mouthOpen - dN.mouthOpen;
      m.outputMouth = o.mouthOpen - oN.mouthOpen;
      m.mouthError = Math.abs(m.driverMouth - m.outputMouth);
      m.poseError = rotationDistanceDeg(matMul(d.pose.rotation, transpose(dN.pose.rotation)), oRel);
    }
    if (d && dN && opts.script && scriptR0) {
      const s = opts.script[k];
      const gt = matMul(eulerToMat(s.yaw, s.pitch, s.roll), transpose(scriptR0));
      m.trackerPoseError = rotationDistanceDeg(gt, matMul(d.pose.rotation, transpose(dN.pose.rotation)));
    }
    if (o && portraitDesc && k % stride === 0) {
      const od = await descriptor(faceres, { kind: 'i420', width: size, height: size, data: out.data }, o.landmarks, buf);
      m.identityPortrait = cosine(od, portraitDesc);
      if (d) {
        const dd = await descriptor(faceres, { kind: 'i420', width: df.width, height: df.height, data: df.data }, d.landmarks, buf);
        m.identityDriver = cosine(od, dd);
        if (!centre) centre = dd.map((v, i) => (v + portraitDesc[i]) / 2);
      }
      if (centre) {
        const c = centre;
        m.identityCentred = cosine(od.map((v, i) => v - c[i]), portraitDesc.map((v, i) => v - c[i]));
      }
    }
    for (let i = 0; i < 468; i++) {
      meshXY[2 * i] = p.targets.x[i];
      meshXY[2 * i + 1] = p.targets.y[i];
    }
    await jitter.frame(k, out, o, df, d, { xy: meshXY, iod: p.rig.face.pose.scale });
    if (opts.keepOutputs !== false) outputs.push(out);
    frames.push(m);
  }
  await renderer.dispose();
  // the judge's floor on this portrait: its neutral render, the same frame over as many frames
  const neutral = allocI420(size, size);
  computeTargets(p.rig, identityMotion(), p.targets);
  warpFrame(p.rig, p.targets, neutral, p.scratch);
  const floor = await judgeFloor(neutral, Math.min(s1, opts.frames.length), [s0, s1], opts.fps ?? 30);
  const col = (f: (m: FrameMetrics) => number | null, from = 0, to = frames.length): number[] =>
    frames.slice(from, to).map(f).filter((v): v is number => v !== null && Number.isFinite(v));
  const dm = frames.filter((m) => m.driverMouth !== null && m.outputMouth !== null);
  const tpe = col((m) => m.trackerPoseError);
  let cut: CutMetrics | null = null;
  if (opts.cut !== undefined) {
    const fps = opts.fps ?? 30;
    const at = opts.cut;
    const sec = Math.round(fps);
    // settled: the first moment after which the offset stays under 0.1 face widths for half a second
    let settle: number | null = null;
    const hold = Math.round(fps / 2);
    for (let k = at; k + hold <= frames.length; k++) {
      const win = col((m) => m.outputOffset, k, k + hold);
      if (win.length && Math.max(...win) < 0.1) {
        settle = ((k - at) * 1000) / fps;
        break;
      }
    }
    cut = {
      at,
      maxOffset1s: Math.max(...col((m) => m.outputOffset, at, at + sec)),
      meanOffsetAfter1s: mean(col((m) => m.outputOffset, at + sec, at + 2 * sec)),
      meanRotationAfter1s: mean(rotOut.slice(at + sec, at + 2 * sec).filter((v): v is number => v !== null)),
      settleMs: settle,
    };
  }
  return {
    frames,
    outputs,
    aggregate: {
      frames: frames.length,
      driverTracked: frames.filter((m) => m.driverFace).length,
      outputTracked: frames.filter((m) => m.outputFace).length,
      identityPortrait: mean(col((m) => m.identityPortrait)),
      identityDriver: mean(col((m) => m.identityDriver)),
      identityCentred: mean(col((m) => m.identityCentred)),
      expressionError: mean(col((m) => m.expressionError)),
      eyeError: mean(col((m) => m.eyeError)),
      mouthError: mean(col((m) => m.mouthError)),
      poseError: mean(col((m) => m.poseError)),
      poseErrorP95: pct(col((m) => m.poseError), 95),
      trackerPoseError: tpe.length ? mean(tpe) : null,
      mouthCorrelation: pearson(dm.map((m) => m.driverMouth!), dm.map((m) => m.outputMouth!)),
      outputFaceFraction: mean(col((m) => m.outputFaceFraction)),
      ...jitter.result(floor),
      renderMsP50: pct(col((m) => m.renderMs), 50),
      trackMsP50: pct(col((m) => m.trackMs), 50),
      cut,
    },
  };
}
