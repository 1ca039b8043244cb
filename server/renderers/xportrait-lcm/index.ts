/**
 * xportrait-lcm: X-Portrait (LCM-distilled, streaming) on one of two engines — an ONNX model pack
 * on onnxruntime-node (`onnx`: CPU, WebGPU) or the PyTorch worker process (`torch`: CUDA; CPU for
 * the tiny model). Per frame: track the driver's face → the whole frame warped into the model
 * frame by the session's calibration (one similarity, fixed from the first tracked frame after a
 * reset, so head translation, roll and scale come through) + the eye/mouth patch boxes →
 * (similarity skip?) → the engine (control + denoise per LCM step with the rolling temporal
 * caches, decode) → the generated model frame pasted over the portrait's square. No face → hold.
 *
 * One renderer instance = one session (it runs in that session's loop worker). Settings come
 * from the config's `lcm` section (RendererOptions.lcm); the engine's state (caches, noise,
 * reference K/V) is this session's own stream: in the shared pack worker (options.packPort), in the
 * torch worker process (options.torchSocket), or — tests, benchmarks — in this thread.
 */
import { lcmDefaults, type LcmSettings } from '../../config.ts';
import { XplError } from '../../errors.ts';
import { allocI420, type I420Frame, type RgbaImage } from '../../media/frame.ts';
import { cropScaleI420, i420ToRgba, rgbaToI420 } from '../../media/convert.ts';
import { detectFace, FaceTracker, type TrackerOptions } from '../../face/tracker.ts';
import type { DrivingFrame, PortraitState, Renderer, RendererOptions } from '../types.ts';
import { anchorsFromLandmarks, applySim, calibrate, invertSim, meanAbsDiff, thumbnail, warpI420, warpRgba, type Similarity } from './align.ts';
import { buildPasteMap, modelSquare, pasteFrame, type PasteMap } from './paste.ts';
import { patchBoxes } from './patches.ts';
import { LocalStream, RemoteStream, type LcmStream, type RefHandle, type StreamInfo, type StreamOptions, type StreamTotals } from './stream.ts';
import type { FrameIo } from './tensor-ops.ts';
import { TorchStream } from './torch/stream.ts';

export type XportraitLcmOptions = Omit<RendererOptions, 'lcm'> & {
  /** Over the defaults (tests, benchmarks); the server passes its whole config section. */
  lcm?: Partial<LcmSettings>;
  /** Return the engine's float output too (engine comparisons). */
  raw?: boolean;
  tracker?: TrackerOptions;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
};

export interface XportraitPortrait extends PortraitState {
  /** The portrait fitted ('cover') to the output size: the background of every output frame. */
  base: RgbaImage;
  baseI420: I420Frame;
  /** Its model frame (uint8 RGB, S×S) and the face anchors in it (calibration targets). */
  crop: Uint8Array;
  anchors: Array<[number, number]>;
  /** Its reference K/V (per step timestep, in the stream), kept for the portrait's lifetime. */
  ref: RefHandle;
  paste: PasteMap;
}

export interface XportraitStats {
  frames: number;
  rendered: number;
  skipped: number;
  noFace: number;
  /** Frames answered with the held output while stream batch fills (or the torch worker restarts). */
  filling: number;
  resets: number;
  calibrations: number;
  lastIo: FrameIo;
  totals: StreamTotals;
  pack: StreamInfo;
}

export interface XportraitLcmRenderer extends Renderer<XportraitPortrait> {
  readonly stream: LcmStream;
  readonly stats: XportraitStats;
  readonly lastTimings: { track: number; align: number; infer: number; paste: number };
  /** The driving crop and patch boxes of the last frame sent to the engine (fidelity tests). */
  readonly lastInput: { driving: Uint8Array; boxes: Array<[number, number, number, number]>; calibration: Similarity | null };
}

const defaultLog = (msg: string, extra?: Record<string, unknown>): void => {
  process.stderr.write(`${JSON.stringify({ level: 40, svc: 'xportrait-live', renderer: 'xportrait-lcm', msg, ...extra })}\n`);
};

async function openStream(s: LcmSettings, opts: XportraitLcmOptions, log: NonNullable<XportraitLcmOptions['log']>): Promise<LcmStream> {
  if (s.engine === 'torch') {
    if (!s.weights) throw new XplError('bad_config', 'xportrait-lcm --engine torch needs --weights FILE|random|tiny');
    let socket = opts.torchSocket;
    if (!socket) {
      const { ensureTorchWorker } = await import('./torch/host.ts');
      socket = (await ensureTorchWorker(s)).socket;
    }
    const decoder = s.decoder ?? (s.weights === 'tiny' || s.weights === 'random' || s.taesd ? 'taesd' : 'vae');
    return TorchStream.open({
      socket,
      weights: s.weights,
      attachTimeoutMs: s.startTimeout * 1000,
      log,
      stream: { steps: s.steps, stream_batch: s.streamBatch, seed: s.seed, noise: s.noise, cfg: s.cfg, init: s.init, rule: s.timesteps ?? 'skip-step', decoder, output: opts.raw ? 'f32' : 'u8', warmup: s.warmup },
    });
  }
  if (!opts.pack) throw new XplError('bad_config', 'xportrait-lcm needs a model pack: pass --pack DIR (see docs/MODELS.md)');
  const so: StreamOptions = {
    pack: opts.pack,
    raw: opts.raw,
    load: { ep: s.ep, precision: s.precision ?? (s.ep === 'cpu' ? 'fp32' : 'fp16'), decoder: s.decoder, threads: s.threads || 1 },
    pipeline: { steps: s.steps, streamBatch: s.streamBatch, seed: s.seed, noise: s.noise, cfg: s.cfg, init: s.init, timesteps: s.timesteps, warmup: s.warmup },
  };
  if (!opts.packPort) return LocalStream.open(so, log);
  return RemoteStream.open(opts.packPort, so, (err) => {
    // the shared pack worker is gone, and this session's stream with it: end this render
    // worker so that its host restarts it and the new one attaches to a new pack worker
    log('xportrait-lcm: pack worker lost; restarting this loop worker', { error: err.message });
    process.exit(70);
  });
}

export async function createXportraitLcmRenderer(opts: XportraitLcmOptions): Promise<XportraitLcmRenderer> {
  const W = opts.outputWidth;
  const H = opts.outputHeight;
  const log = opts.log ?? defaultLog;
  const settings: LcmSettings = { ...lcmDefaults(), ...opts.lcm };
  let stream: LcmStream;
  try {
    if (!(W > 0 && H > 0) || W % 2 || H % 2) throw new XplError('bad_request', `xportrait-lcm: output size must be even and positive, got ${W}×${H}`);
    stream = await openStream(settings, opts, log);
  } catch (err) {
    opts.packPort?.close(); // its stream in the pack worker is never opened
    throw err;
  }
  const skipThreshold = settings.skip;
  let tracker: FaceTracker;
  try {
    tracker = await FaceTracker.create(opts.tracker);
  } catch (err) {
    await stream.dispose();
    throw err;
  }
  const S = stream.info.imageSize;
  const driving = new Uint8Array(3 * S * S);
  const composed: RgbaImage = { width: W, height: H, data: new Uint8Array(W * H * 4) };
  let current: XportraitPortrait | null = null;
  /** Portraits prepared and not yet released: their reference K/V may be GPU buffers. */
  const prepared = new Set<XportraitPortrait>();
  let lastOut: I420Frame | null = null;
  let lastThumb: Float32Array | null = null;
  let cal: Similarity | null = null;
  let boxes: Array<[number, number, number, number]> = [];
  let disposed = false;
  const stats = { frames: 0, rendered: 0, skipped: 0, noFace: 0, filling: 0, resets: 0, calibrations: 0 };
  const timings = { track: 0, align: 0, infer: 0, paste: 0 };

  const hold = (p: XportraitPortrait, out: I420Frame): void => {
    out.data.set((lastOut ?? p.baseI420).data);
  };

  return {
    name: 'xportrait-lcm',
    stream,
    get stats(): XportraitStats {
      return { ...stats, lastIo: stream.io, totals: stream.totals, pack: stream.info };
    },
    get lastTimings() {
      return timings;
    },
    get lastInput() {
      return { driving, boxes, calibration: cal };
    },

    async prepare(portrait: RgbaImage): Promise<XportraitPortrait> {
      // fit like mesh-warp does: 'cover' into the output size
      const srcW = portrait.width & ~1;
      const srcH = portrait.height & ~1;
      const full = allocI420(srcW, srcH);
      let src = portrait;
      if (portrait.width !== srcW || portrait.height !== srcH) {
        const d = new Uint8Array(srcW * srcH * 4);
        for (let y = 0; y < srcH; y++) d.set(portrait.data.subarray(y * portrait.width * 4, y * portrait.width * 4 + srcW * 4), y * srcW * 4);
        src = { width: srcW, height: srcH, data: d };
      }
      rgbaToI420(src, full);
      const baseI420 = allocI420(W, H);
      cropScaleI420(full, baseI420, 'cover');
      const base: RgbaImage = { width: W, height: H, data: new Uint8Array(W * H * 4) };
      i420ToRgba(baseI420, base);
      const face = await detectFace(base);
      if (!face) throw new XplError('no_face', 'no face found in the portrait');
      const a = anchorsFromLandmarks(face.landmarks);
      const sq = modelSquare(W, H, (a[0][0] + a[1][0] + a[2][0]) / 3, (a[0][1] + a[1][1] + a[2][1]) / 3, S);
      const crop = warpRgba(base, invertSim(sq.toModel), S);
      const ref = await stream.encodeReference(crop);
      const anchors = a.map(([x, y]) => applySim(sq.toModel, x, y));
      const state: XportraitPortrait = { width: W, height: H, base, baseI420, crop, anchors, ref, paste: buildPasteMap(W, H, sq, S) };
      prepared.add(state);
      return state;
    },

    async render(p: XportraitPortrait, d: DrivingFrame, out: I420Frame): Promise<void> {
      if (disposed) throw new XplError('internal', 'xportrait-lcm: render after dispose');
      stats.frames++;
      out.timestamp = d.frame.timestamp;
      if (p !== current) {
        // new portrait: its K/V, a fresh stream (caches emptied), a new calibration, nothing held
        await stream.useReference(p.ref);
        current = p;
        lastOut = null;
        lastThumb = null;
        cal = null;
        stats.resets++;
      }
      const t0 = performance.now();
      const f = d.frame;
      const face = await tracker.trackImage({ kind: 'i420', width: f.width, height: f.height, data: f.data }, f.timestamp);
      const t1 = performance.now();
      timings.track = t1 - t0;
      if (!face || face.confidence < 0.5) {
        stats.noFace++;
        hold(p, out);
        return;
      }
      if (!cal) {
        cal = calibrate(face.landmarks, p.anchors);
        stats.calibrations++;
      }
      warpI420(f, invertSim(cal), S, driving);
      const thumb = thumbnail(driving, S);
      const t2 = performance.now();
      timings.align = t2 - t1;
      if (skipThreshold > 0 && lastThumb && lastOut && meanAbsDiff(thumb, lastThumb) < skipThreshold) {
        stats.skipped++;
        hold(p, out);
        return;
      }
      lastThumb = thumb;
      boxes = patchBoxes(face.landmarks, cal, S);
      const res = await stream.push(driving, boxes);
      const t3 = performance.now();
      timings.infer = t3 - t2;
      if (!res) {
        stats.filling++;
        hold(p, out);
        return;
      }
      pasteFrame(p.base, res.image, S, p.paste, composed);
      rgbaToI420(composed, out);
      lastOut ??= allocI420(W, H);
      lastOut.data.set(out.data);
      stats.rendered++;
      timings.paste = performance.now() - t3;
    },

    /** Re-calibration: a fresh stream (caches emptied, pipeline drained), tracker restarted, calibrated again on the next face. */
    reset(_p: XportraitPortrait): void {
      stream.reset();
      tracker.reset();
      lastThumb = null;
      cal = null;
      stats.resets++;
    },

    setParams(): void {
      // gains and smoothing are mesh-warp's; the diffusion renderer takes its motion from the pixels
    },

    release(p: XportraitPortrait): void {
      if (!prepared.delete(p)) return;
      if (p === current) current = null;
      stream.releaseReference(p.ref);
    },

    async dispose(): Promise<void> {
      if (disposed) return;
      disposed = true;
      for (const p of prepared) stream.releaseReference(p.ref);
      prepared.clear();
      current = null;
      lastOut = null;
      await stream.dispose();
    },
  };
}
