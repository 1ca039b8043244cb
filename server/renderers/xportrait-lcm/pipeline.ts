/**
 * One stream's LCM pipeline on a loaded pack: reference K/V per step timestep, the per-step
 * rolling temporal caches, control + denoise per step, decode. All state here belongs to one
 * session; the pack (ORT sessions, weights) may be shared.
 *
 * Stream batch (StreamDiffusion-style), precisely: with n steps, call f runs ONE batched
 * `control` and ONE batched `denoise` over n items, item k = frame f−k at step k (its latent is
 * the previous call's item k−1 output re-noised to t_k; item 0 starts from noise), using cache[k]
 * for item k, and finishes frame f−(n−1) (decoded and returned). So frame f's output appears
 * n−1 calls later and each frame's result is, up to float rounding, the result the sequential
 * pipeline (stream batch off) gives for that frame. During the first n−1 calls the pipeline is
 * filling: the existing items run one by one (same arithmetic) and nothing is returned.
 *
 * Its other concepts have their own modules: stage runs and the frame's I/O accounting
 * (stage-runner.ts), the portraits' reference K/V (reference-kv.ts), the per-step caches
 * (step-caches.ts), noise (noise.ts), classifier-free guidance (guidance.ts) and the bidirectional
 * warm-up window (warmup-window.ts).
 */
import type * as ort from 'onnxruntime-node';
import { XplError } from '../../errors.ts';
import { LcmScheduler, type TimestepRule } from '../../schedulers/lcm.ts';
import { checkGuidance, Guidance } from './guidance.ts';
import { StreamNoise } from './noise.ts';
import type { LoadedPack } from './pack.ts';
import { PortraitKv, type RefKv } from './reference-kv.ts';
import { StageRunner } from './stage-runner.ts';
import { StepCaches } from './step-caches.ts';
import { DeviceOps, emptyIo, HostOps, onDevice, tensorBytes, type FrameIo, type TensorOps } from './tensor-ops.ts';
import { checkWindow, WarmupWindow } from './warmup-window.ts';

export type { FrameIo } from './tensor-ops.ts';

export interface PipelineOptions {
  steps: number;
  streamBatch?: boolean;
  seed?: number;
  noise?: 'fixed' | 'fresh';
  /** LCM timestep rule (default: the pack's). */
  timesteps?: TimestepRule;
  /** Initial latent: pure noise, or the portrait's latent noised to the first timestep (upstream's x_T). */
  init?: 'noise' | 'portrait';
  /** Classifier-free guidance scale (> 1: on, stream batch off; needs a pack whose denoise takes `uncond`). */
  cfg?: number;
  /** Bidirectional warm-up window: a stream's first N frames denoised together (the pack's `denoise_window`); 0 = off. */
  warmup?: number;
}

/** A frame in flight through the stream batch: its next step's input latent and its control inputs. */
export interface Item {
  frame: number;
  x: ort.Tensor;
  driving: ort.Tensor;
  local: ort.Tensor;
}

/**
 * Running totals of one stream (frames, bytes moved, cache joins, failed frames recovered from,
 * and — torch engine — re-attaches to a restarted worker process).
 */
export function emptyTotals() {
  return { frames: 0, h2dBytes: 0, d2hBytes: 0, frameH2dBytes: 0, frameD2hBytes: 0, hostInputBytes: 0, hostOutputBytes: 0, cacheConcats: 0, recoveries: 0, reattaches: 0 };
}

export interface PushResult {
  frame: number;
  /** Decoded image, CHW in [-1,1]. */
  image: Float32Array;
  /** The final latent, only when asked for (a download on WebGPU). */
  latent?: Float32Array;
}

export class LcmPipeline {
  readonly pack: LoadedPack;
  readonly steps: number;
  readonly streamBatch: boolean;
  readonly scheduler: LcmScheduler;
  /** Where tensors live between runs (device buffers with WebGPU). */
  readonly ops: TensorOps;
  private readonly init: 'noise' | 'portrait';
  private readonly half: boolean;
  private readonly stages: StageRunner;
  private readonly noise: StreamNoise;
  private readonly reference: PortraitKv;
  private readonly caches: StepCaches;
  /** Classifier-free guidance (cfg > 1) and the warm-up window (warmup > 0), when on. */
  private readonly guidance: Guidance | null;
  private readonly window: WarmupWindow | null;
  /** Stream batch: the item waiting for step k (index k ≥ 1). */
  private pending: Array<Item | null> = [];
  private frameIndex = 0;
  readonly totals = emptyTotals();

  constructor(pack: LoadedPack, opts: PipelineOptions) {
    this.pack = pack;
    this.steps = opts.steps;
    this.streamBatch = !!opts.streamBatch && opts.steps > 1;
    const seed = opts.seed ?? 1;
    this.init = opts.init ?? 'noise';
    const cfg = opts.cfg ?? 1;
    checkGuidance(pack, cfg, this.streamBatch);
    const warmup = opts.warmup ?? 0;
    checkWindow(pack, warmup);
    if (warmup && cfg > 1) throw new XplError('bad_config', 'a warm-up window with classifier-free guidance needs --engine torch');
    this.half = pack.precision === 'fp16';
    this.ops = pack.glue ? new DeviceOps(pack.glue, this.half) : new HostOps(this.half, pack.ep !== 'cpu');
    this.scheduler = new LcmScheduler(pack.scheduler, seed);
    this.scheduler.setTimesteps(this.steps, opts.timesteps);
    this.stages = new StageRunner(pack, this.ops);
    this.noise = new StreamNoise(this.ops, pack.geometry, this.scheduler, this.steps, seed, opts.noise ?? 'fixed');
    this.reference = new PortraitKv(this.ops, this.stages, pack.geometry, this.scheduler, this.steps, this.streamBatch, this.init === 'portrait');
    this.caches = new StepCaches(this.ops, pack.geometry, this.steps);
    this.guidance = cfg > 1 ? new Guidance(cfg, pack, this.ops, this.stages, this.caches, this.scheduler, this.steps) : null;
    this.window = warmup ? new WarmupWindow(warmup, this.steps, this.ops, this.stages, this.caches, this.noise, this.scheduler) : null;
    this.reset();
  }

  get timesteps(): number[] {
    return this.scheduler.timesteps;
  }

  /** Frames pushed since the last reset. */
  get framesPushed(): number {
    return this.frameIndex;
  }

  /** Bytes of this stream's temporal caches (all steps), in the graph's float type. */
  get cacheBytes(): number {
    const g = this.pack.geometry;
    return this.steps * g.slots * (g.framePayload + 1) * (this.half ? 2 : 4);
  }

  get refKvBytes(): number {
    return this.steps * this.pack.geometry.refKvLen * (this.half ? 2 : 4) * (this.streamBatch ? 2 : 1);
  }

  /** This frame's I/O (the last push's once it returned). */
  get io(): FrameIo {
    return this.stages.io;
  }

  private get imageDims(): number[] {
    const g = this.pack.geometry;
    return [1, 3, g.imageSize, g.imageSize];
  }

  // ------------------------------------------------------------------------------ portrait

  /** VAE encode of an aligned portrait crop (CHW, [-1,1]) → latent. */
  async encode(image: Float32Array): Promise<Float32Array> {
    const img = await this.ops.upload(image, this.imageDims, this.io);
    const out = await this.stages.run('vae_encode', { image: img });
    this.ops.release(img);
    const latent = await this.ops.read(out.latent, this.io);
    this.ops.release(out.latent);
    return latent;
  }

  /**
   * Runs `reference` once per step timestep (and, with stream batch, once batched over the n
   * timesteps) for a portrait latent. The K/V belong to the portrait: the caller keeps them for
   * the portrait's lifetime (on the device with WebGPU), installs them with useReference() and
   * frees them with releaseReference().
   */
  computeReference(refLatent: Float32Array): Promise<RefKv> {
    return this.reference.compute(refLatent);
  }

  /** Installs a portrait's K/V and starts a fresh stream (caches emptied). */
  useReference(ref: RefKv): void {
    this.reference.use(ref);
    this.reset();
  }

  /** Frees a portrait's K/V (device memory); it must not be in use. */
  releaseReference(ref: RefKv): void {
    this.reference.release(ref);
  }

  async setReference(refLatent: Float32Array): Promise<void> {
    this.useReference(await this.computeReference(refLatent));
  }

  get hasReference(): boolean {
    return this.reference.perStep.length === this.steps;
  }

  // ------------------------------------------------------------------------------ stream state

  private releaseItem(it: Item | null): void {
    if (!it) return;
    this.noise.releaseLatent(it.x);
    this.ops.release(it.driving);
    this.ops.release(it.local);
  }

  /** Empties every step's cache (fresh stream): new portrait, re-calibration, face re-acquired. */
  reset(): void {
    this.caches.release();
    this.guidance?.uncond.release();
    for (const it of [...this.pending, ...(this.window?.held ?? [])]) this.releaseItem(it);
    this.emptyStream();
  }

  /** Forgets the caches, the items in flight and the frame count (their tensors already freed). */
  private emptyStream(): void {
    this.caches.forget();
    this.guidance?.uncond.forget();
    this.pending = new Array(this.steps).fill(null);
    this.window?.clear();
    this.frameIndex = 0;
    this.scheduler.reset();
  }

  /**
   * After a failed frame: intermediate tensors may already be released while the caches or the
   * pending items still point at them, so every device tensor but the portraits' K/V and the fixed
   * noise is freed and the stream starts afresh (as on a reset).
   */
  private recover(): void {
    const keep = new Set<ort.Tensor>([...this.noise.tensors, ...(this.guidance?.tensors ?? []), ...this.reference.tensors]);
    this.ops.releaseAllExcept(keep);
    this.emptyStream();
    this.totals.recoveries++;
  }

  /** Frees everything this stream holds on the device (its K/V stay with the portrait). */
  dispose(): void {
    this.reset();
    this.noise.dispose();
    this.guidance?.dispose();
  }

  /** Step 0's input: noise, or (init = portrait) the portrait latent noised to the first timestep. */
  private async initial(f: number): Promise<ort.Tensor> {
    const z = await this.noise.at(f, 0, this.io);
    if (this.init !== 'portrait') return z;
    const [a, b] = this.noise.coef(0);
    const x = await this.ops.renoise(this.reference.latent!, z, [a], [b], this.io);
    this.noise.releaseLatent(z);
    return x;
  }

  /**
   * Pushes one frame's control inputs (aligned driving crop and local-patch canvas, CHW in [-1,1])
   * and returns the decoded image (CHW, [-1,1]) of the frame that finished — this one when stream
   * batch is off, the one n−1 pushes earlier when it is on (null while the pipeline fills).
   */
  async push(driving: Float32Array, local: Float32Array, opts: { latent?: boolean } = {}): Promise<PushResult | null> {
    if (!this.hasReference) throw new XplError('internal', 'xportrait-lcm: push() before setReference()');
    const g = this.pack.geometry;
    if (driving.length !== g.imageLen || local.length !== g.imageLen) throw new XplError('bad_request', `xportrait-lcm: control inputs must be 3×${g.imageSize}² floats`);
    this.stages.io = emptyIo();
    try {
      const f = this.frameIndex++;
      const item: Item = {
        frame: f,
        x: await this.initial(f),
        driving: await this.ops.upload(driving, this.imageDims, this.io, true),
        local: await this.ops.upload(local, this.imageDims, this.io, true),
      };
      let finished: { latent: ort.Tensor; frame: number } | null;
      if (this.window && f < this.window.frames) {
        finished = this.window.hold(item) ? await this.window.run(this.reference.perStep) : null;
      } else {
        finished = this.streamBatch ? await this.streamed(item) : await this.sequential(item);
      }
      let result: PushResult | null = null;
      if (finished) {
        result = { frame: finished.frame, image: await this.decode(finished.latent) };
        if (opts.latent) result.latent = await this.ops.read(finished.latent, this.io);
        this.ops.release(finished.latent);
      }
      this.totals.frames++;
      for (const k of ['h2dBytes', 'd2hBytes', 'frameH2dBytes', 'frameD2hBytes', 'hostInputBytes', 'hostOutputBytes'] as const) this.totals[k] += this.io[k];
      return result;
    } catch (err) {
      this.recover();
      throw err;
    }
  }

  private async decode(latent: ort.Tensor): Promise<Float32Array> {
    const out = await this.stages.run(this.pack.decoder, { latent });
    const image = await this.ops.read(out.image, this.io, true);
    if (this.pack.ep !== 'cpu' && !onDevice(out.image)) this.io.frameD2hBytes += tensorBytes(out.image);
    this.ops.release(out.image);
    return image;
  }

  /** One step k of one item at batch 1, on cache[k]; returns the denoised latent (the item's x is consumed). */
  private async stepOne(k: number, it: Item): Promise<ort.Tensor> {
    if (this.guidance) {
      const den = await this.guidance.step(k, it, this.reference.perStep[k]);
      this.noise.releaseLatent(it.x);
      return den;
    }
    const tT = this.stages.timestepTensor([this.timesteps[k]]);
    const ctrl = await this.stages.run('control', { latent: it.x, timestep: tT, driving: it.driving, local: it.local });
    const [cache, mask] = await this.caches.step(k, this.io);
    const out = await this.stages.run('denoise', { latent: it.x, timestep: tT, ref_kv: this.reference.perStep[k], ctrl_res: ctrl.ctrl_res, cache_in: cache, cache_mask: mask, ...this.stages.uncondFeed([0]) });
    this.ops.release(ctrl.ctrl_res);
    this.ops.release(out.eps);
    this.caches.replace(k, out.cache_out, out.cache_mask_out);
    this.noise.releaseLatent(it.x);
    return out.denoised;
  }

  private async sequential(it: Item): Promise<{ latent: ort.Tensor; frame: number }> {
    let den!: ort.Tensor;
    for (let k = 0; k < this.steps; k++) {
      den = await this.stepOne(k, it);
      if (k < this.steps - 1) {
        const [a, b] = this.noise.coef(k + 1);
        const z = await this.noise.at(it.frame, k + 1, this.io);
        it.x = await this.ops.renoise(den, z, [a], [b], this.io);
        this.noise.releaseLatent(z);
        this.ops.release(den);
      }
    }
    this.ops.release(it.driving);
    this.ops.release(it.local);
    return { latent: den, frame: it.frame };
  }

  private async streamed(first: Item): Promise<{ latent: ort.Tensor; frame: number } | null> {
    const n = this.steps;
    const items: Item[] = [first];
    for (let k = 1; k < n && this.pending[k]; k++) items.push(this.pending[k]!);
    const next: Array<Item | null> = new Array(n).fill(null);
    if (items.length < n) {
      // filling: the same arithmetic one item at a time, on the per-step caches
      for (let k = 0; k < items.length; k++) {
        const it = items[k];
        const den = await this.stepOne(k, it);
        const [a, b] = this.noise.coef(k + 1);
        const z = await this.noise.at(it.frame, k + 1, this.io);
        next[k + 1] = { ...it, x: await this.ops.renoise(den, z, [a], [b], this.io) };
        this.noise.releaseLatent(z);
        this.ops.release(den);
      }
      this.pending = next;
      return null;
    }
    const den = await this.stepBatched(items);
    // one re-noise over the batch: item k < n−1 goes to step k+1; the last passes through (a=1, b=0)
    const a: number[] = [];
    const b: number[] = [];
    for (let k = 0; k < n - 1; k++) {
      const [ak, bk] = this.noise.coef(k + 1);
      a.push(ak);
      b.push(bk);
    }
    a.push(1);
    b.push(0);
    const z = await this.noise.batch(items.map((it) => it.frame), this.io);
    const mixed = await this.ops.renoise(den, z, a, b, this.io);
    this.ops.release(den);
    this.noise.releaseLatent(z);
    const xs = await this.ops.split(mixed, n, this.io);
    this.ops.release(mixed);
    for (let k = 0; k < n - 1; k++) next[k + 1] = { ...items[k], x: xs[k] };
    const last = items[n - 1];
    this.ops.release(last.driving);
    this.ops.release(last.local);
    this.pending = next;
    return { latent: xs[n - 1], frame: last.frame };
  }

  /** One batched control + denoise over the n items (item k at step k, cache slice k). */
  private async stepBatched(items: Item[]): Promise<ort.Tensor> {
    if (!this.caches.joined) {
      await this.caches.join(this.io);
      this.totals.cacheConcats++;
    }
    const [cache, mask] = this.caches.joined!;
    const xs = await this.ops.concat(items.map((it) => it.x), this.io);
    const dr = await this.ops.concat(items.map((it) => it.driving), this.io);
    const lo = await this.ops.concat(items.map((it) => it.local), this.io);
    for (const it of items) this.noise.releaseLatent(it.x);
    const tT = this.stages.timestepTensor(this.timesteps.slice(0, items.length));
    const ctrl = await this.stages.run('control', { latent: xs, timestep: tT, driving: dr, local: lo });
    this.ops.release(dr);
    this.ops.release(lo);
    const out = await this.stages.run('denoise', { latent: xs, timestep: tT, ref_kv: this.reference.batched!, ctrl_res: ctrl.ctrl_res, cache_in: cache, cache_mask: mask, ...this.stages.uncondFeed(new Array(items.length).fill(0)) });
    this.ops.release(ctrl.ctrl_res);
    this.ops.release(out.eps);
    this.ops.release(xs);
    this.caches.replaceJoined(out.cache_out, out.cache_mask_out);
    return out.denoised;
  }

  // ------------------------------------------------------------------------------ inspection (tests, stats)

  /** Host copy of step k's cache and mask (downloads on WebGPU; not counted in the frame's I/O). */
  inspectCache(k: number): Promise<{ cache: Float32Array; mask: Float32Array }> {
    return this.caches.inspect(k, this.io);
  }
}
