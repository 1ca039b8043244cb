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
import { GaussianRng, LcmScheduler } from '../../schedulers/lcm.ts';
import { fromHalfArray, toHalfArray } from './half.ts';
import type { LoadedPack, StageName } from './pack.ts';

export interface PipelineOptions {
  steps: number;
  streamBatch?: boolean;
  seed?: number;
  noise?: 'fixed' | 'fresh';
}

/** Per-frame accounting of the last push (and totals). */
export interface FrameIo {
  /** Bytes moved host → device and device → host by this frame's runs (0 on the CPU EP: host is the device). */
  h2dBytes: number;
  d2hBytes: number;
  /** Bytes of host tensors this code created as inputs and read back as outputs (on any EP). */
  hostInputBytes: number;
  hostOutputBytes: number;
  /** Milliseconds per stage for this frame. */
  ms: Partial<Record<StageName | 'host', number>>;
  runs: number;
}

const BYTES: Record<string, number> = { float32: 4, float16: 2, int64: 8 };

function tensorBytes(t: ort.Tensor): number {
  return t.size * (BYTES[t.type] ?? 4);
}

/** A portrait's reference K/V for one step schedule. */
export interface RefKv {
  timesteps: number[];
  perStep: ort.Tensor[];
  batched: ort.Tensor | null;
}

interface Pending {
  frame: number;
  /** Input latent of the next step (already re-noised). */
  x: Float32Array;
  driving: Float32Array;
  local: Float32Array;
}

export class LcmPipeline {
  readonly pack: LoadedPack;
  readonly steps: number;
  readonly streamBatch: boolean;
  readonly scheduler: LcmScheduler;
  private readonly seed: number;
  private readonly noiseMode: 'fixed' | 'fresh';
  private readonly half: boolean;
  /** ref_kv per step (batch 1) and, with stream batch, all steps in one [n, Lr] tensor. */
  private refKv: ort.Tensor[] = [];
  private refKvBatched: ort.Tensor | null = null;
  private cache: ort.Tensor[] = [];
  private mask: ort.Tensor[] = [];
  private cacheB: ort.Tensor | null = null;
  private maskB: ort.Tensor | null = null;
  /** Stream batch: item k−1's output waiting for step k (index k). */
  private pending: Array<Pending | null> = [];
  private frameIndex = 0;
  private fixedNoise: Float32Array[] | null = null;
  io: FrameIo = LcmPipeline.emptyIo();
  readonly totals = { frames: 0, h2dBytes: 0, d2hBytes: 0, hostInputBytes: 0, hostOutputBytes: 0, cacheConcats: 0 };

  constructor(pack: LoadedPack, opts: PipelineOptions) {
    this.pack = pack;
    this.steps = opts.steps;
    this.streamBatch = !!opts.streamBatch && opts.steps > 1;
    this.seed = opts.seed ?? 1;
    this.noiseMode = opts.noise ?? 'fixed';
    this.half = pack.precision === 'fp16';
    this.scheduler = new LcmScheduler(pack.scheduler, this.seed);
    this.scheduler.setTimesteps(this.steps);
    this.reset();
  }

  static emptyIo(): FrameIo {
    return { h2dBytes: 0, d2hBytes: 0, hostInputBytes: 0, hostOutputBytes: 0, ms: {}, runs: 0 };
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

  // ------------------------------------------------------------------------------ tensors

  private float(data: Float32Array, dims: number[]): ort.Tensor {
    return this.half ? new ort.Tensor('float16', toHalfArray(data), dims) : new ort.Tensor('float32', data, dims);
  }

  private zeros(dims: number[]): ort.Tensor {
    const n = dims.reduce((a, b) => a * b, 1);
    return this.half ? new ort.Tensor('float16', new Uint16Array(n), dims) : new ort.Tensor('float32', new Float32Array(n), dims);
  }

  private async read(t: ort.Tensor): Promise<Float32Array> {
    if (t.location !== 'cpu') {
      // a device tensor read on the host: counted as a download
      const d = await t.getData();
      this.io.d2hBytes += tensorBytes(t);
      return this.half ? fromHalfArray(d as Uint16Array) : (d as Float32Array);
    }
    this.io.hostOutputBytes += tensorBytes(t);
    return this.half ? fromHalfArray(t.data as Uint16Array) : (t.data as Float32Array);
  }

  private async run(stage: StageName, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    const s = this.pack.sessions[stage];
    if (!s) throw new XplError('bad_pack', `${this.pack.dir}: stage "${stage}" not loaded`);
    const ep = this.pack.ep;
    for (const t of Object.values(feeds)) {
      if (t.location === 'cpu') {
        // On cpu the host is the device; with webgpu/cuda a host tensor is uploaded for the run.
        if (ep !== 'cpu') this.io.h2dBytes += tensorBytes(t);
      }
    }
    const t0 = performance.now();
    const out = await s.run(feeds);
    this.io.ms[stage] = (this.io.ms[stage] ?? 0) + performance.now() - t0;
    this.io.runs++;
    if (ep === 'cuda') for (const t of Object.values(out)) this.io.d2hBytes += tensorBytes(t); // no IO binding: every output comes back
    return out;
  }

  private timestepTensor(ts: number[]): ort.Tensor {
    const t = new ort.Tensor('int64', BigInt64Array.from(ts.map((x) => BigInt(x))), [ts.length]);
    this.io.hostInputBytes += 8 * ts.length;
    return t;
  }

  private input(data: Float32Array, dims: number[]): ort.Tensor {
    this.io.hostInputBytes += data.length * (this.half ? 2 : 4);
    return this.float(data, dims);
  }

  // ------------------------------------------------------------------------------ portrait

  /** VAE encode of an aligned portrait crop (CHW, [-1,1]) → latent. */
  async encode(image: Float32Array): Promise<Float32Array> {
    const g = this.pack.geometry;
    const out = await this.run('vae_encode', { image: this.input(image, [1, 3, g.imageSize, g.imageSize]) });
    return Float32Array.from(await this.read(out.latent));
  }

  /**
   * Runs `reference` once per step timestep (and, with stream batch, once batched over the n
   * timesteps) for a portrait latent. The K/V belong to the portrait: the caller keeps them for
   * the portrait's lifetime (on the device with WebGPU) and installs them with useReference().
   */
  async computeReference(refLatent: Float32Array): Promise<RefKv> {
    const g = this.pack.geometry;
    const n = this.steps;
    const ts = this.timesteps;
    const perStep: ort.Tensor[] = [];
    for (let k = 0; k < n; k++) {
      const out = await this.run('reference', { ref_latent: this.input(refLatent, [1, g.latentChannels, g.latentSize, g.latentSize]), timestep: this.timestepTensor([ts[k]]) });
      perStep.push(out.ref_kv);
    }
    let batched: ort.Tensor | null = null;
    if (this.streamBatch) {
      const rep = new Float32Array(n * g.latentLen);
      for (let k = 0; k < n; k++) rep.set(refLatent, k * g.latentLen);
      const out = await this.run('reference', { ref_latent: this.input(rep, [n, g.latentChannels, g.latentSize, g.latentSize]), timestep: this.timestepTensor(ts) });
      batched = out.ref_kv;
    }
    return { timesteps: [...ts], perStep, batched };
  }

  /** Installs a portrait's K/V and starts a fresh stream (caches emptied). */
  useReference(ref: RefKv): void {
    if (ref.timesteps.length !== this.steps || ref.timesteps.some((t, i) => t !== this.timesteps[i]) || (this.streamBatch && !ref.batched)) {
      throw new XplError('internal', 'xportrait-lcm: reference K/V computed for another step schedule');
    }
    this.refKv = ref.perStep;
    this.refKvBatched = ref.batched;
    this.reset();
  }

  async setReference(refLatent: Float32Array): Promise<void> {
    this.useReference(await this.computeReference(refLatent));
  }

  get hasReference(): boolean {
    return this.refKv.length === this.steps;
  }

  // ------------------------------------------------------------------------------ stream state

  /** Empties every step's cache (fresh stream): new portrait, re-calibration, face re-acquired. */
  reset(): void {
    const g = this.pack.geometry;
    this.cache = [];
    this.mask = [];
    for (let k = 0; k < this.steps; k++) {
      this.cache.push(this.zeros([1, g.slots, g.framePayload]));
      this.mask.push(this.zeros([1, g.slots]));
    }
    this.cacheB = null;
    this.maskB = null;
    this.pending = new Array(this.steps).fill(null);
    this.frameIndex = 0;
    this.scheduler.reset();
  }

  /** Noise for (frame, step): step 0 is the initial latent, step k ≥ 1 re-noises to t_k. */
  private noiseFor(frame: number, k: number): Float32Array {
    const len = this.pack.geometry.latentLen;
    if (this.noiseMode === 'fixed') {
      if (!this.fixedNoise) {
        const rng = new GaussianRng(this.seed);
        this.fixedNoise = Array.from({ length: this.steps }, () => rng.fill(new Float32Array(len)));
      }
      return this.fixedNoise[k];
    }
    const rng = new GaussianRng((Math.imul(this.seed, 0x9e3779b1) ^ Math.imul(frame + 1, 0x85ebca6b) ^ Math.imul(k + 1, 0xc2b2ae35)) >>> 0);
    return rng.fill(new Float32Array(len));
  }

  /**
   * Pushes one frame's control inputs (aligned driving crop and local-patch canvas, CHW in [-1,1])
   * and returns the decoded image (CHW, [-1,1]) of the frame that finished — this one when stream
   * batch is off, the one n−1 pushes earlier when it is on (null while the pipeline fills).
   */
  async push(driving: Float32Array, local: Float32Array): Promise<{ image: Float32Array; latent: Float32Array; frame: number } | null> {
    if (!this.hasReference) throw new XplError('internal', 'xportrait-lcm: push() before setReference()');
    const g = this.pack.geometry;
    if (driving.length !== g.imageLen || local.length !== g.imageLen) throw new XplError('bad_request', `xportrait-lcm: control inputs must be 3×${g.imageSize}² floats`);
    this.io = LcmPipeline.emptyIo();
    const f = this.frameIndex++;
    let finished: { latent: Float32Array; frame: number } | null;
    if (!this.streamBatch) finished = { latent: await this.sequential(f, driving, local), frame: f };
    else finished = await this.streamed(f, driving, local);
    let result: { image: Float32Array; latent: Float32Array; frame: number } | null = null;
    if (finished) result = { image: await this.decode(finished.latent), latent: finished.latent, frame: finished.frame };
    this.totals.frames++;
    this.totals.h2dBytes += this.io.h2dBytes;
    this.totals.d2hBytes += this.io.d2hBytes;
    this.totals.hostInputBytes += this.io.hostInputBytes;
    this.totals.hostOutputBytes += this.io.hostOutputBytes;
    return result;
  }

  async decode(latent: Float32Array): Promise<Float32Array> {
    const g = this.pack.geometry;
    const dec = this.pack.decoder;
    const out = await this.run(dec, { latent: this.input(latent, [1, g.latentChannels, g.latentSize, g.latentSize]) });
    return Float32Array.from(await this.read(out.image));
  }

  /** One step k of one frame at batch 1, with cache[k]; returns the denoised latent. */
  private async stepOne(k: number, x: Float32Array, driving: Float32Array, local: Float32Array): Promise<Float32Array> {
    const g = this.pack.geometry;
    const L = [1, g.latentChannels, g.latentSize, g.latentSize];
    const I = [1, 3, g.imageSize, g.imageSize];
    const t = this.timesteps[k];
    const xT = this.input(x, L);
    const tT = this.timestepTensor([t]);
    const ctrl = await this.run('control', { latent: xT, timestep: tT, driving: this.input(driving, I), local: this.input(local, I) });
    const out = await this.run('denoise', {
      latent: xT,
      timestep: tT,
      ref_kv: this.refKv[k],
      ctrl_res: ctrl.ctrl_res,
      cache_in: this.cache[k],
      cache_mask: this.mask[k],
    });
    this.cache[k] = out.cache_out;
    this.mask[k] = out.cache_mask_out;
    return this.read(out.denoised);
  }

  private async sequential(f: number, driving: Float32Array, local: Float32Array): Promise<Float32Array> {
    let x = this.noiseFor(f, 0);
    let den: Float32Array = x;
    for (let k = 0; k < this.steps; k++) {
      den = await this.stepOne(k, x, driving, local);
      if (k < this.steps - 1) x = this.renoise(den, k + 1, this.noiseFor(f, k + 1));
    }
    return Float32Array.from(den);
  }

  private renoise(den: Float32Array, k: number, z: Float32Array): Float32Array {
    const t0 = performance.now();
    const x = this.scheduler.renoise(den, k, z);
    this.io.ms.host = (this.io.ms.host ?? 0) + performance.now() - t0;
    return x;
  }

  private async streamed(f: number, driving: Float32Array, local: Float32Array): Promise<{ latent: Float32Array; frame: number } | null> {
    const n = this.steps;
    const items: Pending[] = [{ frame: f, x: this.noiseFor(f, 0), driving, local }];
    for (let k = 1; k < n; k++) {
      const p = this.pending[k];
      if (!p) break;
      items.push(p);
    }
    let dens: Float32Array[];
    if (items.length < n) {
      // filling: the same arithmetic one item at a time, on the per-step caches
      dens = [];
      for (let k = 0; k < items.length; k++) dens.push(Float32Array.from(await this.stepOne(k, items[k].x, items[k].driving, items[k].local)));
    } else {
      dens = await this.stepBatched(items);
    }
    const next: Array<Pending | null> = new Array(n).fill(null);
    let finished: { latent: Float32Array; frame: number } | null = null;
    for (let k = 0; k < items.length; k++) {
      if (k === n - 1) finished = { latent: dens[k], frame: items[k].frame };
      else next[k + 1] = { frame: items[k].frame, x: this.renoise(dens[k], k + 1, this.noiseFor(items[k].frame, k + 1)), driving: items[k].driving, local: items[k].local };
    }
    this.pending = next;
    return finished;
  }

  /** Per-step caches → one [n, W, F] cache (once, when the pipeline first fills). */
  private async joinCaches(): Promise<void> {
    const g = this.pack.geometry;
    const n = this.steps;
    const per = g.slots * g.framePayload;
    const data = this.half ? new Uint16Array(n * per) : new Float32Array(n * per);
    const mask = this.half ? new Uint16Array(n * g.slots) : new Float32Array(n * g.slots);
    for (let k = 0; k < n; k++) {
      const c = this.cache[k];
      const m = this.mask[k];
      const cd = c.location === 'cpu' ? c.data : await c.getData();
      const md = m.location === 'cpu' ? m.data : await m.getData();
      if (c.location !== 'cpu') this.io.d2hBytes += tensorBytes(c) + tensorBytes(m);
      (data as Float32Array).set(cd as Float32Array, k * per);
      (mask as Float32Array).set(md as Float32Array, k * g.slots);
    }
    const type = this.half ? 'float16' : 'float32';
    this.cacheB = new ort.Tensor(type, data, [n, g.slots, g.framePayload]);
    this.maskB = new ort.Tensor(type, mask, [n, g.slots]);
    this.totals.cacheConcats++;
  }

  private async stepBatched(items: Pending[]): Promise<Float32Array[]> {
    const g = this.pack.geometry;
    const n = items.length;
    if (!this.cacheB) await this.joinCaches();
    const xs = new Float32Array(n * g.latentLen);
    const dr = new Float32Array(n * g.imageLen);
    const lo = new Float32Array(n * g.imageLen);
    items.forEach((it, k) => {
      xs.set(it.x, k * g.latentLen);
      dr.set(it.driving, k * g.imageLen);
      lo.set(it.local, k * g.imageLen);
    });
    const L = [n, g.latentChannels, g.latentSize, g.latentSize];
    const I = [n, 3, g.imageSize, g.imageSize];
    const ts = this.timesteps.slice(0, n);
    const xT = this.input(xs, L);
    const tT = this.timestepTensor(ts);
    const ctrl = await this.run('control', { latent: xT, timestep: tT, driving: this.input(dr, I), local: this.input(lo, I) });
    const out = await this.run('denoise', {
      latent: xT,
      timestep: tT,
      ref_kv: this.refKvBatched!,
      ctrl_res: ctrl.ctrl_res,
      cache_in: this.cacheB!,
      cache_mask: this.maskB!,
    });
    this.cacheB = out.cache_out;
    this.maskB = out.cache_mask_out;
    const den = await this.read(out.denoised);
    return items.map((_, k) => den.slice(k * g.latentLen, (k + 1) * g.latentLen));
  }

  // ------------------------------------------------------------------------------ inspection (tests, stats)

  /** Host copy of step k's cache and mask (downloads on WebGPU; not counted in the frame's I/O). */
  async inspectCache(k: number): Promise<{ cache: Float32Array; mask: Float32Array }> {
    const g = this.pack.geometry;
    const per = g.slots * g.framePayload;
    const toF = async (t: ort.Tensor): Promise<Float32Array> => {
      const d = t.location === 'cpu' ? t.data : await t.getData();
      return this.half ? fromHalfArray(d as Uint16Array) : Float32Array.from(d as Float32Array);
    };
    if (this.cacheB) {
      const c = await toF(this.cacheB);
      const m = await toF(this.maskB!);
      return { cache: c.slice(k * per, (k + 1) * per), mask: m.slice(k * g.slots, (k + 1) * g.slots) };
    }
    return { cache: await toF(this.cache[k]), mask: await toF(this.mask[k]) };
  }
}
