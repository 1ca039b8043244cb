/**
 * xportrait-lcm: X-Portrait (LCM-distilled, streaming) from an ONNX model pack on
 * onnxruntime-node. Per frame: track the driver's face → aligned driving crop + eye/mouth patch
 * canvas → (similarity skip?) → control + denoise per LCM step with the per-step rolling temporal
 * caches → VAE/TAESD decode → feathered paste into the portrait frame. No face → hold last output.
 *
 * One renderer instance = one session (it runs in that session's render worker). In the server
 * the pack lives in the shared pack worker (options.packPort, see stream.ts): every session on a
 * pack shares its weights; caches, noise, reference K/V, tracker and outputs are per session.
 * Without a port (tests, benchmarks) the pack is loaded in this thread, shared with the other
 * instances of the thread (acquirePack).
 *
 * Settings: the factory's options, else environment variables (the server passes only the pack):
 *   XPL_LCM_EP=cpu|cuda|webgpu (cpu)        XPL_LCM_STEPS=1..8 (2)        XPL_LCM_STREAM_BATCH=1
 *   XPL_LCM_PRECISION=fp32|fp16 (fp32 on cpu, fp16 otherwise)            XPL_LCM_DECODER=taesd|vae
 *   XPL_LCM_SKIP=<mean abs luma diff, 0..255, of a 16² thumbnail; 0 = off> (1.0)
 *   XPL_LCM_THREADS=<ORT intra-op threads> (1)    XPL_LCM_SEED (1)    XPL_LCM_NOISE=fixed|fresh
 */
import { XplError } from '../../errors.ts';
import { allocI420, type I420Frame, type RgbaImage } from '../../media/frame.ts';
import { cropScaleI420, i420ToRgba, rgbaToI420 } from '../../media/convert.ts';
import { detectFace, FaceTracker, type TrackerOptions } from '../../face/tracker.ts';
import type { DrivingFrame, PortraitState, Renderer, RendererOptions } from '../types.ts';
import {
  alignmentFromLandmarks,
  buildPasteMap,
  cropI420,
  cropRgba,
  invertSim,
  localCanvas,
  meanAbsDiff,
  pasteCrop,
  patchBoxes,
  thumbnail,
  type PasteMap,
} from './align.ts';
import type { ExecutionProvider, Precision } from './pack.ts';
import { LocalStream, RemoteStream, type LcmStream, type RefHandle, type StreamInfo, type StreamOptions, type StreamTotals } from './stream.ts';
import type { FrameIo } from './tensor-ops.ts';

export interface XportraitLcmOptions extends RendererOptions {
  ep?: ExecutionProvider;
  precision?: Precision;
  steps?: number;
  streamBatch?: boolean;
  decoder?: 'vae' | 'taesd';
  /** Similarity-skip threshold (mean abs luma diff on a 16² thumbnail of the aligned crop, 0..255); 0 disables. */
  skipThreshold?: number;
  threads?: number;
  seed?: number;
  noise?: 'fixed' | 'fresh';
  tracker?: TrackerOptions;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
}

export interface XportraitPortrait extends PortraitState {
  /** The portrait fitted ('cover') to the output size: the background of every output frame. */
  base: RgbaImage;
  baseI420: I420Frame;
  /** Its aligned crop's latent and reference K/V (per step timestep, in the stream), kept for the portrait's lifetime. */
  latent: Float32Array;
  ref: RefHandle;
  paste: PasteMap;
}

export interface XportraitStats {
  frames: number;
  rendered: number;
  skipped: number;
  noFace: number;
  /** Frames answered with the held output while stream batch fills. */
  filling: number;
  resets: number;
  lastIo: FrameIo;
  totals: StreamTotals;
  pack: StreamInfo;
}

export interface XportraitLcmRenderer extends Renderer<XportraitPortrait> {
  readonly stream: LcmStream;
  readonly stats: XportraitStats;
  readonly lastTimings: { track: number; align: number; infer: number; paste: number };
}

function envNum(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new XplError('bad_config', `${name} must be a number, got "${v}"`);
  return n;
}

function envChoice<T extends string>(name: string, allowed: readonly T[]): T | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw new XplError('bad_config', `${name} must be one of ${allowed.join(', ')}, got "${v}"`);
  return v as T;
}

const defaultLog = (msg: string, extra?: Record<string, unknown>): void => {
  process.stderr.write(`${JSON.stringify({ level: 40, svc: 'xportrait-live', renderer: 'xportrait-lcm', msg, ...extra })}\n`);
};

/** The renderer's settings from its options and the environment, checked. */
function settings(opts: XportraitLcmOptions): { W: number; H: number; skipThreshold: number; log: NonNullable<XportraitLcmOptions['log']>; streamOpts: StreamOptions } {
  const W = opts.outputWidth;
  const H = opts.outputHeight;
  if (!(W > 0 && H > 0) || W % 2 || H % 2) throw new XplError('bad_request', `xportrait-lcm: output size must be even and positive, got ${W}×${H}`);
  if (!opts.pack) throw new XplError('bad_config', 'xportrait-lcm needs a model pack: pass --pack DIR (see docs/MODELS.md)');
  const ep = opts.ep ?? envChoice('XPL_LCM_EP', ['cpu', 'cuda', 'webgpu'] as const) ?? 'cpu';
  const precision = opts.precision ?? envChoice('XPL_LCM_PRECISION', ['fp32', 'fp16'] as const) ?? (ep === 'cpu' ? 'fp32' : 'fp16');
  const steps = opts.steps ?? envNum('XPL_LCM_STEPS') ?? 2;
  if (!Number.isInteger(steps) || steps < 1 || steps > 8) throw new XplError('bad_config', `xportrait-lcm: steps must be 1..8, got ${steps}`);
  const streamBatch = opts.streamBatch ?? process.env.XPL_LCM_STREAM_BATCH === '1';
  const decoder = opts.decoder ?? envChoice('XPL_LCM_DECODER', ['vae', 'taesd'] as const);
  return {
    W,
    H,
    skipThreshold: opts.skipThreshold ?? envNum('XPL_LCM_SKIP') ?? 1.0,
    log: opts.log ?? defaultLog,
    streamOpts: {
      pack: opts.pack,
      load: { ep, precision, decoder, threads: opts.threads ?? envNum('XPL_LCM_THREADS') ?? 1 },
      pipeline: { steps, streamBatch, seed: opts.seed ?? envNum('XPL_LCM_SEED') ?? 1, noise: opts.noise ?? envChoice('XPL_LCM_NOISE', ['fixed', 'fresh'] as const) },
    },
  };
}

export async function createXportraitLcmRenderer(opts: XportraitLcmOptions): Promise<XportraitLcmRenderer> {
  let conf: ReturnType<typeof settings>;
  try {
    conf = settings(opts);
  } catch (err) {
    opts.packPort?.close(); // its stream in the pack worker is never opened
    throw err;
  }
  const { W, H, skipThreshold, log, streamOpts } = conf;
  const stream: LcmStream = opts.packPort
    ? await RemoteStream.open(opts.packPort, streamOpts, (err) => {
        // the shared pack worker is gone, and this session's stream with it: end this render
        // worker so that its host restarts it and the new one attaches to a new pack worker
        log('xportrait-lcm: pack worker lost; restarting this render worker', { error: err.message });
        process.exit(70);
      })
    : await LocalStream.open(streamOpts, log);
  let tracker: FaceTracker;
  try {
    tracker = await FaceTracker.create(opts.tracker);
  } catch (err) {
    await stream.dispose();
    throw err;
  }
  const S = stream.info.imageSize;
  const driving = new Float32Array(3 * S * S);
  const local = new Float32Array(3 * S * S);
  const composed: RgbaImage = { width: W, height: H, data: new Uint8Array(W * H * 4) };
  let current: XportraitPortrait | null = null;
  /** Portraits prepared and not yet released: their reference K/V may be GPU buffers. */
  const prepared = new Set<XportraitPortrait>();
  let lastOut: I420Frame | null = null;
  let lastThumb: Float32Array | null = null;
  let disposed = false;
  const stats = { frames: 0, rendered: 0, skipped: 0, noFace: 0, filling: 0, resets: 0 };
  const timings = { track: 0, align: 0, infer: 0, paste: 0 };

  const startStream = (): void => {
    stream.reset();
    lastThumb = null;
    stats.resets++;
  };

  const hold = (p: XportraitPortrait, out: I420Frame): void => {
    out.data.set((lastOut ?? p.baseI420).data);
  };

  return {
    name: 'xportrait-lcm',
    stream,
    get stats(): XportraitStats {
      return {
        ...stats,
        lastIo: stream.io,
        totals: stream.totals,
        pack: stream.info,
      };
    },
    get lastTimings() {
      return timings;
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
      const toCrop = alignmentFromLandmarks(face.landmarks, S);
      const crop = cropRgba(base, invertSim(toCrop), S);
      const { ref, latent } = await stream.encodeReference(crop);
      const state: XportraitPortrait = { width: W, height: H, base, baseI420, latent, ref, paste: buildPasteMap(W, H, toCrop, S) };
      prepared.add(state);
      return state;
    },

    async render(p: XportraitPortrait, d: DrivingFrame, out: I420Frame): Promise<void> {
      if (disposed) throw new XplError('internal', 'xportrait-lcm: render after dispose');
      stats.frames++;
      out.timestamp = d.frame.timestamp;
      if (p !== current) {
        // new portrait: its K/V, a fresh stream (caches emptied), nothing held from the old one
        await stream.useReference(p.ref);
        current = p;
        lastOut = null;
        lastThumb = null;
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
      const sim = alignmentFromLandmarks(face.landmarks, S);
      cropI420(f, invertSim(sim), S, driving);
      const thumb = thumbnail(driving, S);
      const t2 = performance.now();
      timings.align = t2 - t1;
      if (skipThreshold > 0 && lastThumb && lastOut && meanAbsDiff(thumb, lastThumb) < skipThreshold) {
        stats.skipped++;
        hold(p, out);
        return;
      }
      lastThumb = thumb;
      localCanvas(driving, S, patchBoxes(face.landmarks, sim, S), local);
      const res = await stream.push(driving, local);
      const t3 = performance.now();
      timings.infer = t3 - t2;
      if (!res) {
        stats.filling++;
        hold(p, out);
        return;
      }
      pasteCrop(p.base, res.image, S, p.paste, composed);
      rgbaToI420(composed, out);
      lastOut ??= allocI420(W, H);
      lastOut.data.set(out.data);
      stats.rendered++;
      timings.paste = performance.now() - t3;
    },

    /** Re-calibration: a fresh stream (caches emptied, pipeline drained), tracker restarted. */
    reset(_p: XportraitPortrait): void {
      startStream();
      tracker.reset();
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
