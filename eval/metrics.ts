/**
 * Quality metrics of the mesh-warp renderer on a driving sequence, computed offline through the
 * same renderer code path the server uses (createMeshWarpRenderer → prepare → render per frame).
 *
 * Per frame (the output is tracked with its own FaceTracker, the driver's face comes from the
 * renderer; both relative to their first tracked frame, which the renderer also uses as neutral):
 * - identity: cosine of FaceRes descriptors, output vs portrait and output vs driver
 * - expression error: mean canonical-frame landmark distance between the driver's and the output's
 *   expression change (canonical unit = distance between the eye centres, i.e. IOD-normalised)
 * - eye / mouth openness error: |Δopenness(output) − Δopenness(driver)|
 * - pose error: angle between the driver's and the output's head rotation change, degrees
 * - jitter (still frames): mean |ΔY| between consecutive output frames, and output landmark motion / IOD
 * With ground truth (make-driving's .json): driver-tracker pose error vs the script.
 */
import { allocI420, type I420Frame, type RgbaImage } from '../server/media/frame.ts';
import { i420ToRgba } from '../server/media/convert.ts';
import { createMeshWarpRenderer, type MeshWarpPortrait } from '../server/renderers/mesh-warp/index.ts';
import { FaceTracker, roiFromLandmarks } from '../server/face/tracker.ts';
import { loadFaceResModel, ort } from '../server/face/models.ts';
import { cropToTensor } from '../server/face/sampler.ts';
import { eulerToMat, matMul, rotationDistanceDeg, transpose } from '../server/face/pose.ts';
import type { FaceImage, FaceState } from '../server/face/types.ts';
import type { ScriptFrame } from './script.ts';
import { detectFace } from '../server/face/tracker.ts';

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
  driverMouth: number | null;
  outputMouth: number | null;
  /** Driver tracker vs script (degrees), when ground truth is given. */
  trackerPoseError: number | null;
  renderMs: number;
  trackMs: number;
}

export interface Aggregate {
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
  jitterY: number;
  jitterLandmarks: number;
  renderMsP50: number;
  trackMsP50: number;
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

export interface EvalOptions {
  portrait: RgbaImage;
  frames: I420Frame[];
  script?: ScriptFrame[];
  size?: number;
  /** Identity descriptors every `identityStride` frames (default 5). */
  identityStride?: number;
  /** Frame indices [start, end) of a still driver for the jitter metric (default 0–30). */
  still?: [number, number];
  keepOutputs?: boolean;
}

export async function evaluate(opts: EvalOptions): Promise<EvalResult> {
  const size = opts.size ?? 512;
  const renderer = await createMeshWarpRenderer({ outputWidth: size, outputHeight: size });
  const p: MeshWarpPortrait = await renderer.prepare(opts.portrait);
  const outTracker = await FaceTracker.create();
  const faceres = await loadFaceResModel();
  const buf = new Float32Array(224 * 224 * 3);
  const portraitFace = await detectFace(opts.portrait);
  const portraitDesc = portraitFace
    ? await descriptor(faceres, { kind: 'rgba', ...opts.portrait }, portraitFace.landmarks, buf)
    : null;
  const stride = opts.identityStride ?? 5;
  const [s0, s1] = opts.still ?? [0, 30];
  const frames: FrameMetrics[] = [];
  const outputs: I420Frame[] = [];
  let dN: FaceState | null = null;
  let oN: FaceState | null = null;
  let prevOut: I420Frame | null = null;
  let centre: Float32Array | null = null;
  let prevLm: Float32Array | null = null;
  const jitY: number[] = [];
  const jitL: number[] = [];
  const rgba: RgbaImage = { width: size, height: size, data: new Uint8Array(size * size * 4) };
  const scriptR0 = opts.script ? eulerToMat(opts.script[0].yaw, opts.script[0].pitch, opts.script[0].roll) : null;
  for (let k = 0; k < opts.frames.length; k++) {
    const out = allocI420(size, size);
    const df = opts.frames[k];
    await renderer.render(p, { frame: df, index: k }, out);
    const d = renderer.lastDriverFace;
    const o = await outTracker.trackImage({ kind: 'i420', width: size, height: size, data: out.data }, df.timestamp);
    const m: FrameMetrics = {
      index: k, driverFace: !!d, outputFace: !!o,
      identityPortrait: null, identityDriver: null, identityCentred: null, expressionError: null, eyeError: null, mouthError: null, poseError: null,
      driverMouth: null, outputMouth: null, trackerPoseError: null,
      renderMs: renderer.lastTimings.warp, trackMs: renderer.lastTimings.track,
    };
    if (d && !dN) dN = d;
    if (o && !oN) oN = o;
    if (d && o && dN && oN) {
      let e = 0;
      for (let i = 0; i < 468; i++) {
        const dx = d.canonical[3 * i] - dN.canonical[3 * i] - (o.canonical[3 * i] - oN.canonical[3 * i]);
        const dy = d.canonical[3 * i + 1] - dN.canonical[3 * i + 1] - (o.canonical[3 * i + 1] - oN.canonical[3 * i + 1]);
        e += Math.hypot(dx, dy);
      }
      m.expressionError = e / 468;
      const dEye = (d.eyeOpenLeft + d.eyeOpenRight - dN.eyeOpenLeft - dN.eyeOpenRight) / 2;
      const oEye = (o.eyeOpenLeft + o.eyeOpenRight - oN.eyeOpenLeft - oN.eyeOpenRight) / 2;
      m.eyeError = Math.abs(dEye - oEye);
      m.driverMouth = d.mouthOpen - dN.mouthOpen;
      m.outputMouth = o.mouthOpen - oN.mouthOpen;
      m.mouthError = Math.abs(m.driverMouth - m.outputMouth);
      const dRel = matMul(d.pose.rotation, transpose(dN.pose.rotation));
      const oRel = matMul(o.pose.rotation, transpose(oN.pose.rotation));
      m.poseError = rotationDistanceDeg(dRel, oRel);
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
    if (k > s0 && k < s1 && prevOut) {
      let sum = 0;
      const n = size * size;
      for (let i = 0; i < n; i++) sum += Math.abs(out.data[i] - prevOut.data[i]);
      jitY.push(sum / n);
      if (o && prevLm) {
        let l = 0;
        for (let i = 0; i < 468; i++) l += Math.hypot(o.rawLandmarks[3 * i] - prevLm[3 * i], o.rawLandmarks[3 * i + 1] - prevLm[3 * i + 1]);
        jitL.push(l / 468 / o.pose.scale);
      }
    }
    prevOut = out;
    prevLm = o ? o.rawLandmarks : null;
    if (opts.keepOutputs !== false) outputs.push(out);
    frames.push(m);
  }
  void rgba;
  void i420ToRgba;
  await renderer.dispose();
  const col = (f: (m: FrameMetrics) => number | null): number[] => frames.map(f).filter((v): v is number => v !== null && Number.isFinite(v));
  const dm = frames.filter((m) => m.driverMouth !== null && m.outputMouth !== null);
  const tpe = col((m) => m.trackerPoseError);
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
      jitterY: mean(jitY),
      jitterLandmarks: mean(jitL),
      renderMsP50: pct(col((m) => m.renderMs), 50),
      trackMsP50: pct(col((m) => m.trackMs), 50),
    },
  };
}
