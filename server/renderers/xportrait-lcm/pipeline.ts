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
 * Noise is a pure function of (seed, frame index, step) — 'fixed' uses the same noise for every
 * frame (StreamDiffusion's choice: stabler video), 'fresh' draws per frame — so both modes see the
 * same noise for the same frame.
 */
import * as ort from 'onnxruntime-node';
import { XplError } from '../../errors.ts';
import { GaussianRng, LcmScheduler, type TimestepRule } from '../../schedulers/lcm.ts';
import type { LoadedPack, StageName } from './pack.ts';
import { DeviceOps, emptyIo, HostOps, onDevice, tensorBytes, type FrameIo, type TensorOps } from './tensor-ops.ts';

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

/** A portrait's reference K/V for one step schedule (device tensors with WebGPU), and its latent when init = portrait. */
export interface RefKv {
  timesteps: number[];
  perStep: ort.Tensor[];
  batched: ort.Tensor | null;
  latent: ort.Tensor | null;
}

/** A frame in flight through the stream batch: its next step's input latent and its control inputs. */
interface Item {
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
  private readonly seed: number;
  private readonly noiseMode: 'fixed' | 'fresh';
  private readonly init: 'noise' | 'portrait';
  private readonly cfg: number;
  private readonly warmup: number;
  /** The warm-up window's frames, held until it is full. */
  private held: Item[] = [];
  /** CFG: the unconditional branch's own per-step caches, and its (zero) control residuals. */
  private cacheU: ort.Tensor[] = [];
  private maskU: ort.Tensor[] = [];
  private zeroCtrl: ort.Tensor | null = null;
  private readonly half: boolean;
  private refKv: ort.Tensor[] = [];
  private refLatent: ort.Tensor | null = null;
  private refKvBatched: ort.Tensor | null = null;
  /** Every portrait reference computed here and not yet released (kept through a failed frame's clean-up). */
  private readonly refs = new Set<RefKv>();
  /** Per-step caches while the stream fills; joined into one [n, W, F] tensor when stream batch is full. */
  private cache: ort.Tensor[] = [];
  private mask: ort.Tensor[] = [];
  private cacheB: ort.Tensor | null = null;
  private maskB: ort.Tensor | null = null;
  /** Stream batch: the item waiting for step k (index k ≥ 1). */
  private pending: Array<Item | null> = [];
  private frameIndex = 0;
  /** 'fixed' noise, uploaded once: per step [1,…] and, for stream batch, the re-noise batch [n,…]. */
  private fixedNoise: ort.Tensor[] | null = null;
  private fixedNoiseBatch: ort.Tensor | null = null;
  io: FrameIo = emptyIo();
  readonly totals = emptyTotals();

  constructor(pack: LoadedPack, opts: PipelineOptions) {
    this.pack = pack;
    this.steps = opts.steps;
    this.streamBatch = !!opts.streamBatch && opts.steps > 1;
    this.seed = opts.seed ?? 1;
    this.noiseMode = opts.noise ?? 'fixed';
    this.init = opts.init ?? 'noise';
    this.cfg = opts.cfg ?? 1;
    if (this.cfg > 1 && !pack.uncond) {
      throw new XplError('bad_config', `${pack.dir}: classifier-free guidance (--lcm-cfg ${this.cfg}) needs a pack whose denoise graph takes "uncond": re-export it with this exporter, or use --engine torch`);
    }
    if (this.cfg > 1 && this.streamBatch) throw new XplError('bad_config', 'classifier-free guidance with stream batch needs --engine torch (the onnx engine runs it with stream batch off)');
    this.warmup = opts.warmup ?? 0;
    if (this.warmup && pack.windowFrames !== this.warmup) {
      throw new XplError('bad_config', `${pack.dir}: a warm-up window of ${this.warmup} frames needs a pack exported with --warmup ${this.warmup}${pack.windowFrames ? ` (this one has ${pack.windowFrames})` : ' (this one has none)'}, or --engine torch`);
    }
    if (this.warmup && this.cfg > 1) throw new XplError('bad_config', 'a warm-up window with classifier-free guidance needs --engine torch');
    this.half = pack.precision === 'fp16';
    this.ops = pack.glue ? new DeviceOps(pack.glue, this.half) : new HostOps(this.half, pack.ep !== 'cpu');
    this.scheduler = new LcmScheduler(pack.scheduler, this.seed);
    this.scheduler.setTimesteps(this.steps, opts.timesteps);
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

  private get latentDims(): number[] {
    const g = this.pack.geometry;
    return [1, g.latentChannels, g.latentSize, g.latentSize];
  }

  private get imageDims(): number[] {
    const g = this.pack.geometry;
    return [1, 3, g.imageSize, g.imageSize];
  }

  private async run(stage: StageName, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    const s = this.pack.sessions[stage];
    if (!s) throw new XplError('bad_pack', `${this.pack.dir}: stage "${stage}" not loaded`);
    const bus = this.pack.ep !== 'cpu';
    // On cpu the host is the device; otherwise a host tensor is uploaded for the run.
    if (bus) for (const t of Object.values(feeds)) if (!onDevice(t)) this.io.h2dBytes += tensorBytes(t);
    const t0 = performance.now();
    // (no `fetches`: onnxruntime-node 1.30 rejects a subset of outputs when output locations are set)
    const out = await s.run(feeds);
    this.io.ms[stage] = (this.io.ms[stage] ?? 0) + performance.now() - t0;
    this.io.runs++;
    for (const t of Object.values(out)) {
      if (bus && !onDevice(t)) this.io.d2hBytes += tensorBytes(t); // came back to the host
      this.ops.adopt(t);
    }
    return out;
  }

  private timestepTensor(ts: number[]): ort.Tensor {
    const t = new ort.Tensor('int64', BigInt64Array.from(ts.map((x) => BigInt(x))), [ts.length]);
    this.io.hostInputBytes += 8 * ts.length;
    return t;
  }

  /** The denoise graph's `uncond` flags (packs that have it; 1 = a CFG unconditional item). */
  private uncondFeed(flags: number[]): { uncond?: ort.Tensor } {
    if (!this.pack.uncond) return {};
    this.io.hostInputBytes += flags.length * (this.half ? 2 : 4);
    const t = this.half ? new ort.Tensor('float16', Uint16Array.from(flags, (f) => (f ? 0x3c00 : 0)), [flags.length]) : new ort.Tensor('float32', Float32Array.from(flags), [flags.length]);
    return { uncond: t };
  }

  // ------------------------------------------------------------------------------ portrait

  /** VAE encode of an aligned portrait crop (CHW, [-1,1]) → latent. */
  async encode(image: Float32Array): Promise<Float32Array> {
    const img = await this.ops.upload(image, this.imageDims, this.io);
    const out = await this.run('vae_encode', { image: img });
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
  async computeReference(refLatent: Float32Array): Promise<RefKv> {
    const n = this.steps;
    const ts = this.timesteps;
    const lat = await this.ops.upload(refLatent, this.latentDims, this.io);
    const perStep: ort.Tensor[] = [];
    for (let k = 0; k < n; k++) perStep.push((await this.run('reference', { ref_latent: lat, timestep: this.timestepTensor([ts[k]]) })).ref_kv);
    let batched: ort.Tensor | null = null;
    if (this.streamBatch) {
      const rep = await this.ops.concat(new Array(n).fill(lat), this.io);
      batched = (await this.run('reference', { ref_latent: rep, timestep: this.timestepTensor(ts) })).ref_kv;
      this.ops.release(rep);
    }
    const keep = this.init === 'portrait';
    if (!keep) this.ops.release(lat);
    const ref = { timesteps: [...ts], perStep, batched, latent: keep ? lat : null };
    this.refs.add(ref);
    return ref;
  }

  /** Installs a portrait's K/V and starts a fresh stream (caches emptied). */
  useReference(ref: RefKv): void {
    if (ref.timesteps.length !== this.steps || ref.timesteps.some((t, i) => t !== this.timesteps[i]) || (this.streamBatch && !ref.batched)) {
      throw new XplError('internal', 'xportrait-lcm: reference K/V computed for another step schedule');
    }
    if (this.init === 'portrait' && !ref.latent) throw new XplError('internal', 'xportrait-lcm: reference computed without its latent (init = portrait)');
    this.refKv = ref.perStep;
    this.refKvBatched = ref.batched;
    this.refLatent = ref.latent;
    this.reset();
  }

  /** Frees a portrait's K/V (device memory); it must not be in use. */
  releaseReference(ref: RefKv): void {
    if (this.refKv === ref.perStep) {
      this.refKv = [];
      this.refKvBatched = null;
      this.refLatent = null;
    }
    for (const t of ref.perStep) this.ops.release(t);
    this.ops.release(ref.batched);
    this.ops.release(ref.latent);
    this.refs.delete(ref);
  }

  async setReference(refLatent: Float32Array): Promise<void> {
    this.useReference(await this.computeReference(refLatent));
  }

  get hasReference(): boolean {
    return this.refKv.length === this.steps;
  }

  // ------------------------------------------------------------------------------ stream state

  private releaseItem(it: Item | null): void {
    if (!it) return;
    this.releaseLatent(it.x);
    this.ops.release(it.driving);
    this.ops.release(it.local);
  }

  /** Frees a latent unless it is one of the stream's fixed noise tensors. */
  private releaseLatent(t: ort.Tensor): void {
    if (!this.fixedNoise?.includes(t)) this.ops.release(t);
  }

  /** Empties every step's cache (fresh stream): new portrait, re-calibration, face re-acquired. */
  reset(): void {
    for (const t of [...this.cache, ...this.mask, ...this.cacheU, ...this.maskU, this.cacheB, this.maskB]) this.ops.release(t);
    for (const it of [...this.pending, ...this.held]) this.releaseItem(it);
    this.emptyStream();
  }

  /** Forgets the caches, the items in flight and the frame count (their tensors already freed). */
  private emptyStream(): void {
    this.cache = [];
    this.mask = [];
    this.cacheU = [];
    this.maskU = [];
    this.cacheB = null;
    this.maskB = null;
    this.pending = new Array(this.steps).fill(null);
    this.held = [];
    this.frameIndex = 0;
    this.scheduler.reset();
  }

  /**
   * After a failed frame: intermediate tensors may already be released while the caches or the
   * pending items still point at them, so every device tensor but the portraits' K/V and the fixed
   * noise is freed and the stream starts afresh (as on a reset).
   */
  private recover(): void {
    const keep = new Set<ort.Tensor>([...(this.fixedNoise ?? []), ...(this.fixedNoiseBatch ? [this.fixedNoiseBatch] : []), ...(this.zeroCtrl ? [this.zeroCtrl] : [])]);
    for (const r of this.refs) for (const t of [...r.perStep, ...(r.batched ? [r.batched] : []), ...(r.latent ? [r.latent] : [])]) keep.add(t);
    this.ops.releaseAllExcept(keep);
    this.emptyStream();
    this.totals.recoveries++;
  }

  /** Frees everything this stream holds on the device (its K/V stay with the portrait). */
  dispose(): void {
    this.reset();
    for (const t of this.fixedNoise ?? []) this.ops.release(t);
    this.ops.release(this.fixedNoiseBatch);
    this.ops.release(this.zeroCtrl);
    this.fixedNoise = null;
    this.fixedNoiseBatch = null;
    this.zeroCtrl = null;
  }

  /** Step k's cache and mask (of the CFG unconditional branch with `uncond`), zero tensors until the step first runs. */
  private async stepCache(k: number, uncond = false): Promise<[ort.Tensor, ort.Tensor]> {
    const [cache, mask] = uncond ? [this.cacheU, this.maskU] : [this.cache, this.mask];
    if (!cache[k]) {
      const g = this.pack.geometry;
      cache[k] = await this.ops.zeros([1, g.slots, g.framePayload], this.io);
      mask[k] = await this.ops.zeros([1, g.slots], this.io);
    }
    return [cache[k], mask[k]];
  }

  private noiseData(frame: number, k: number): Float32Array {
    const rng = new GaussianRng((Math.imul(this.seed, 0x9e3779b1) ^ Math.imul(frame + 1, 0x85ebca6b) ^ Math.imul(k + 1, 0xc2b2ae35)) >>> 0);
    return rng.fill(new Float32Array(this.pack.geometry.latentLen));
  }

  /** Noise for (frame, step) as a tensor: step 0 is the initial latent, step k ≥ 1 re-noises to t_k. */
  private async noise(frame: number, k: number): Promise<ort.Tensor> {
    if (this.noiseMode === 'fresh') return this.ops.upload(this.noiseData(frame, k), this.latentDims, this.io);
    if (!this.fixedNoise) {
      const rng = new GaussianRng(this.seed);
      const len = this.pack.geometry.latentLen;
      this.fixedNoise = [];
      for (let s = 0; s < this.steps; s++) this.fixedNoise.push(await this.ops.upload(rng.fill(new Float32Array(len)), this.latentDims, this.io));
    }
    return this.fixedNoise[k];
  }

  /** Step 0's input: noise, or (init = portrait) the portrait latent noised to the first timestep. */
  private async initial(f: number): Promise<ort.Tensor> {
    const z = await this.noise(f, 0);
    if (this.init !== 'portrait') return z;
    const [a, b] = this.coef(0);
    const x = await this.ops.renoise(this.refLatent!, z, [a], [b], this.io);
    this.releaseLatent(z);
    return x;
  }

  /** Re-noise coefficients that take a clean estimate to step k's input. */
  private coef(k: number): [number, number] {
    const c = this.scheduler.coefficients[k];
    return [c.sqrtAlphaCumprod, c.sqrtOneMinusAlphaCumprod];
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
    this.io = emptyIo();
    try {
      const f = this.frameIndex++;
      const item: Item = {
        frame: f,
        x: await this.initial(f),
        driving: await this.ops.upload(driving, this.imageDims, this.io, true),
        local: await this.ops.upload(local, this.imageDims, this.io, true),
      };
      let finished: { latent: ort.Tensor; frame: number } | null;
      if (this.warmup && f < this.warmup) {
        this.held.push(item);
        finished = this.held.length === this.warmup ? await this.windowed() : null;
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
    const out = await this.run(this.pack.decoder, { latent });
    const image = await this.ops.read(out.image, this.io, true);
    if (this.pack.ep !== 'cpu' && !onDevice(out.image)) this.io.frameD2hBytes += tensorBytes(out.image);
    this.ops.release(out.image);
    return image;
  }

  /** One step k of one item at batch 1, on cache[k]; returns the denoised latent (the item's x is consumed). */
  private async stepOne(k: number, it: Item): Promise<ort.Tensor> {
    if (this.cfg > 1) return this.stepGuided(k, it);
    const tT = this.timestepTensor([this.timesteps[k]]);
    const ctrl = await this.run('control', { latent: it.x, timestep: tT, driving: it.driving, local: it.local });
    const [cache, mask] = await this.stepCache(k);
    const out = await this.run('denoise', { latent: it.x, timestep: tT, ref_kv: this.refKv[k], ctrl_res: ctrl.ctrl_res, cache_in: cache, cache_mask: mask, ...this.uncondFeed([0]) });
    this.ops.release(ctrl.ctrl_res);
    this.ops.release(out.eps);
    this.ops.release(cache);
    this.ops.release(mask);
    this.cache[k] = out.cache_out;
    this.mask[k] = out.cache_mask_out;
    this.releaseLatent(it.x);
    return out.denoised;
  }

  /**
   * One step with classifier-free guidance, as upstream: the conditional item and its
   * unconditional twin (no reference attention, no ControlNets — zero residuals —, its own cache)
   * in one batch of 2; ε = ε_u + g·(ε_c − ε_u); the boundary condition on the guided ε, as one
   * linear combination c_skip·x + c_out·(x − √(1−ᾱ)·ε)/√ᾱ = A·x + B·ε.
   */
  private async stepGuided(k: number, it: Item): Promise<ort.Tensor> {
    const t = this.timesteps[k];
    const ctrl = await this.run('control', { latent: it.x, timestep: this.timestepTensor([t]), driving: it.driving, local: it.local });
    const [cache, mask] = await this.stepCache(k);
    const [cacheU, maskU] = await this.stepCache(k, true);
    this.zeroCtrl ??= await this.ops.zeros([1, this.pack.geometry.ctrlResLen], this.io);
    const x2 = await this.ops.concat([it.x, it.x], this.io);
    const ref2 = await this.ops.concat([this.refKv[k], this.refKv[k]], this.io);
    const ctrl2 = await this.ops.concat([ctrl.ctrl_res, this.zeroCtrl], this.io);
    const cache2 = await this.ops.concat([cache, cacheU], this.io);
    const mask2 = await this.ops.concat([mask, maskU], this.io);
    const out = await this.run('denoise', { latent: x2, timestep: this.timestepTensor([t, t]), ref_kv: ref2, ctrl_res: ctrl2, cache_in: cache2, cache_mask: mask2, ...this.uncondFeed([0, 1]) });
    for (const x of [x2, ref2, ctrl2, cache2, mask2, ctrl.ctrl_res, cache, mask, cacheU, maskU, out.denoised]) this.ops.release(x);
    [this.cache[k], this.cacheU[k]] = await this.ops.split(out.cache_out, 2, this.io);
    [this.mask[k], this.maskU[k]] = await this.ops.split(out.cache_mask_out, 2, this.io);
    const [epsC, epsU] = await this.ops.split(out.eps, 2, this.io);
    for (const x of [out.cache_out, out.cache_mask_out, out.eps]) this.ops.release(x);
    const guided = await this.ops.renoise(epsC, epsU, [this.cfg], [1 - this.cfg], this.io);
    this.ops.release(epsC);
    this.ops.release(epsU);
    const c = this.scheduler.coefficients[k];
    const den = await this.ops.renoise(it.x, guided, [c.cSkip + c.cOut / c.sqrtAlphaCumprod], [(-c.cOut * c.sqrtOneMinusAlphaCumprod) / c.sqrtAlphaCumprod], this.io);
    this.ops.release(guided);
    this.releaseLatent(it.x);
    return den;
  }

  /**
   * The warm-up window: its frames together at each step through `denoise_window` (every frame
   * attends to every frame), which also leaves step k's cache as streaming them would have; each
   * frame re-noised with its own noise; the last frame finishes, and the stream goes on streaming.
   */
  private async windowed(): Promise<{ latent: ort.Tensor; frame: number }> {
    const items = this.held;
    this.held = [];
    const K = items.length;
    let last!: ort.Tensor;
    for (let k = 0; k < this.steps; k++) {
      const tT = this.timestepTensor(new Array(K).fill(this.timesteps[k]));
      const xs = await this.ops.concat(items.map((it) => it.x), this.io);
      const dr = await this.ops.concat(items.map((it) => it.driving), this.io);
      const lo = await this.ops.concat(items.map((it) => it.local), this.io);
      const ctrl = await this.run('control', { latent: xs, timestep: tT, driving: dr, local: lo });
      const refs = await this.ops.concat(new Array(K).fill(this.refKv[k]), this.io);
      const out = await this.run('denoise_window', { latent: xs, timestep: tT, ref_kv: refs, ctrl_res: ctrl.ctrl_res });
      for (const x of [xs, dr, lo, refs, ctrl.ctrl_res, out.eps, this.cache[k], this.mask[k]]) this.ops.release(x);
      for (const it of items) this.releaseLatent(it.x);
      this.cache[k] = out.cache_out;
      this.mask[k] = out.cache_mask_out;
      const dens = await this.ops.split(out.denoised, K, this.io);
      this.ops.release(out.denoised);
      for (let f = 0; f < K; f++) {
        if (k === this.steps - 1) {
          if (f === K - 1) last = dens[f];
          else this.ops.release(dens[f]);
          continue;
        }
        const [a, b] = this.coef(k + 1);
        const z = await this.noise(items[f].frame, k + 1);
        items[f].x = await this.ops.renoise(dens[f], z, [a], [b], this.io);
        this.releaseLatent(z);
        this.ops.release(dens[f]);
      }
    }
    for (const it of items) {
      this.ops.release(it.driving);
      this.ops.release(it.local);
    }
    return { latent: last, frame: items[K - 1].frame };
  }

  private async sequential(it: Item): Promise<{ latent: ort.Tensor; frame: number }> {
    let den!: ort.Tensor;
    for (let k = 0; k < this.steps; k++) {
      den = await this.stepOne(k, it);
      if (k < this.steps - 1) {
        const [a, b] = this.coef(k + 1);
        const z = await this.noise(it.frame, k + 1);
        it.x = await this.ops.renoise(den, z, [a], [b], this.io);
        this.releaseLatent(z);
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
        const [a, b] = this.coef(k + 1);
        const z = await this.noise(it.frame, k + 1);
        next[k + 1] = { ...it, x: await this.ops.renoise(den, z, [a], [b], this.io) };
        this.releaseLatent(z);
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
      const [ak, bk] = this.coef(k + 1);
      a.push(ak);
      b.push(bk);
    }
    a.push(1);
    b.push(0);
    const z = await this.renoiseBatch(items);
    const mixed = await this.ops.renoise(den, z, a, b, this.io);
    this.ops.release(den);
    if (z !== this.fixedNoiseBatch) this.ops.release(z);
    const xs = await this.ops.split(mixed, n, this.io);
    this.ops.release(mixed);
    for (let k = 0; k < n - 1; k++) next[k + 1] = { ...items[k], x: xs[k] };
    const last = items[n - 1];
    this.ops.release(last.driving);
    this.ops.release(last.local);
    this.pending = next;
    return { latent: xs[n - 1], frame: last.frame };
  }

  /** The [n,…] noise that re-noises item k to step k+1 (the last item's part is unused). */
  private async renoiseBatch(items: Item[]): Promise<ort.Tensor> {
    const n = this.steps;
    const len = this.pack.geometry.latentLen;
    const dims = [n, ...this.latentDims.slice(1)];
    if (this.noiseMode === 'fixed' && this.fixedNoiseBatch) return this.fixedNoiseBatch;
    const data = new Float32Array(n * len);
    if (this.noiseMode === 'fixed') {
      const rng = new GaussianRng(this.seed);
      const per = Array.from({ length: n }, () => rng.fill(new Float32Array(len)));
      for (let k = 0; k < n - 1; k++) data.set(per[k + 1], k * len);
      this.fixedNoiseBatch = await this.ops.upload(data, dims, this.io);
      return this.fixedNoiseBatch;
    }
    for (let k = 0; k < n - 1; k++) data.set(this.noiseData(items[k].frame, k + 1), k * len);
    return this.ops.upload(data, dims, this.io);
  }

  /** Per-step caches → one [n, W, F] cache (once, when the pipeline first fills; on the device with WebGPU). */
  private async joinCaches(): Promise<void> {
    const caches: ort.Tensor[] = [];
    const masks: ort.Tensor[] = [];
    for (let k = 0; k < this.steps; k++) {
      const [c, m] = await this.stepCache(k);
      caches.push(c);
      masks.push(m);
    }
    this.cacheB = await this.ops.concat(caches, this.io);
    this.maskB = await this.ops.concat(masks, this.io);
    for (const t of [...caches, ...masks]) this.ops.release(t);
    this.cache = [];
    this.mask = [];
    this.totals.cacheConcats++;
  }

  /** One batched control + denoise over the n items (item k at step k, cache slice k). */
  private async stepBatched(items: Item[]): Promise<ort.Tensor> {
    if (!this.cacheB) await this.joinCaches();
    const xs = await this.ops.concat(items.map((it) => it.x), this.io);
    const dr = await this.ops.concat(items.map((it) => it.driving), this.io);
    const lo = await this.ops.concat(items.map((it) => it.local), this.io);
    for (const it of items) this.releaseLatent(it.x);
    const tT = this.timestepTensor(this.timesteps.slice(0, items.length));
    const ctrl = await this.run('control', { latent: xs, timestep: tT, driving: dr, local: lo });
    this.ops.release(dr);
    this.ops.release(lo);
    const out = await this.run('denoise', { latent: xs, timestep: tT, ref_kv: this.refKvBatched!, ctrl_res: ctrl.ctrl_res, cache_in: this.cacheB!, cache_mask: this.maskB!, ...this.uncondFeed(new Array(items.length).fill(0)) });
    this.ops.release(ctrl.ctrl_res);
    this.ops.release(out.eps);
    this.ops.release(xs);
    this.ops.release(this.cacheB);
    this.ops.release(this.maskB);
    this.cacheB = out.cache_out;
    this.maskB = out.cache_mask_out;
    return out.denoised;
  }

  // ------------------------------------------------------------------------------ inspection (tests, stats)

  /** Host copy of step k's cache and mask (downloads on WebGPU; not counted in the frame's I/O). */
  async inspectCache(k: number): Promise<{ cache: Float32Array; mask: Float32Array }> {
    const g = this.pack.geometry;
    const per = g.slots * g.framePayload;
    if (this.cacheB) {
      const c = await this.ops.read(this.cacheB, null);
      const m = await this.ops.read(this.maskB!, null);
      return { cache: c.slice(k * per, (k + 1) * per), mask: m.slice(k * g.slots, (k + 1) * g.slots) };
    }
    const [c, m] = await this.stepCache(k);
    return { cache: await this.ops.read(c, null), mask: await this.ops.read(m, null) };
  }
}
