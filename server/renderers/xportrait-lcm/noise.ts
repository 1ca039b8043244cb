/**
 * One stream's noise, and the coefficients that re-noise a clean estimate to a step's input.
 *
 * Noise is a pure function of (seed, frame index, step) — 'fixed' uses the same noise for every
 * frame (StreamDiffusion's choice: stabler video), 'fresh' draws per frame — so both modes of the
 * pipeline (stream batch on and off) see the same noise for the same frame.
 */
import type * as ort from 'onnxruntime-node';
import { GaussianRng, type LcmScheduler } from '../../schedulers/lcm.ts';
import type { PackGeometry } from './pack-manifest.ts';
import type { FrameIo, TensorOps } from './tensor-ops.ts';

export class StreamNoise {
  /** 'fixed' noise, uploaded once: per step [1,…] and, for stream batch, the re-noise batch [n,…]. */
  private fixedNoise: ort.Tensor[] | null = null;
  private fixedNoiseBatch: ort.Tensor | null = null;
  private readonly latentDims: number[];

  constructor(
    private readonly ops: TensorOps,
    private readonly geometry: PackGeometry,
    private readonly scheduler: LcmScheduler,
    private readonly steps: number,
    private readonly seed: number,
    private readonly mode: 'fixed' | 'fresh',
  ) {
    this.latentDims = [1, geometry.latentChannels, geometry.latentSize, geometry.latentSize];
  }

  private noiseData(frame: number, k: number): Float32Array {
    const rng = new GaussianRng((Math.imul(this.seed, 0x9e3779b1) ^ Math.imul(frame + 1, 0x85ebca6b) ^ Math.imul(k + 1, 0xc2b2ae35)) >>> 0);
    return rng.fill(new Float32Array(this.geometry.latentLen));
  }

  /** Noise for (frame, step) as a tensor: step 0 is the initial latent, step k ≥ 1 re-noises to t_k. */
  async at(frame: number, k: number, io: FrameIo): Promise<ort.Tensor> {
    if (this.mode === 'fresh') return this.ops.upload(this.noiseData(frame, k), this.latentDims, io);
    if (!this.fixedNoise) {
      const rng = new GaussianRng(this.seed);
      const len = this.geometry.latentLen;
      this.fixedNoise = [];
      for (let s = 0; s < this.steps; s++) this.fixedNoise.push(await this.ops.upload(rng.fill(new Float32Array(len)), this.latentDims, io));
    }
    return this.fixedNoise[k];
  }

  /** The [n,…] noise that re-noises item k (of frame frames[k]) to step k+1 (the last item's part is unused). */
  async batch(frames: number[], io: FrameIo): Promise<ort.Tensor> {
    const n = this.steps;
    const len = this.geometry.latentLen;
    const dims = [n, ...this.latentDims.slice(1)];
    if (this.mode === 'fixed' && this.fixedNoiseBatch) return this.fixedNoiseBatch;
    const data = new Float32Array(n * len);
    if (this.mode === 'fixed') {
      const rng = new GaussianRng(this.seed);
      const per = Array.from({ length: n }, () => rng.fill(new Float32Array(len)));
      for (let k = 0; k < n - 1; k++) data.set(per[k + 1], k * len);
      this.fixedNoiseBatch = await this.ops.upload(data, dims, io);
      return this.fixedNoiseBatch;
    }
    for (let k = 0; k < n - 1; k++) data.set(this.noiseData(frames[k], k + 1), k * len);
    return this.ops.upload(data, dims, io);
  }

  /** Re-noise coefficients that take a clean estimate to step k's input. */
  coef(k: number): [number, number] {
    const c = this.scheduler.coefficients[k];
    return [c.sqrtAlphaCumprod, c.sqrtOneMinusAlphaCumprod];
  }

  /** Frees a latent (or a noise tensor) unless it is one of the stream's fixed noise tensors. */
  releaseLatent(t: ort.Tensor): void {
    if (!this.fixedNoise?.includes(t) && t !== this.fixedNoiseBatch) this.ops.release(t);
  }

  /** The fixed noise tensors (kept through a failed frame's clean-up). */
  get tensors(): ort.Tensor[] {
    return [...(this.fixedNoise ?? []), ...(this.fixedNoiseBatch ? [this.fixedNoiseBatch] : [])];
  }

  /** Frees the fixed noise. */
  dispose(): void {
    for (const t of this.fixedNoise ?? []) this.ops.release(t);
    this.ops.release(this.fixedNoiseBatch);
    this.fixedNoise = null;
    this.fixedNoiseBatch = null;
  }
}
