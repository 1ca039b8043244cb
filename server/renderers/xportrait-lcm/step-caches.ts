/**
 * One stream's rolling temporal caches, one per step: a [1, W, F] cache and [1, W] mask per step
 * (zeros until the step first runs), joined into one [n, W, F] cache and [n, W] mask when stream
 * batch is full (on the device with WebGPU). Classifier-free guidance keeps a second set for its
 * unconditional branch.
 */
import type * as ort from 'onnxruntime-node';
import type { PackGeometry } from './pack-manifest.ts';
import type { FrameIo, TensorOps } from './tensor-ops.ts';

export class StepCaches {
  /** Per-step caches while the stream fills; joined into one [n, W, F] tensor when stream batch is full. */
  private cache: ort.Tensor[] = [];
  private mask: ort.Tensor[] = [];
  private cacheB: ort.Tensor | null = null;
  private maskB: ort.Tensor | null = null;

  constructor(
    private readonly ops: TensorOps,
    private readonly geometry: PackGeometry,
    private readonly steps: number,
  ) {}

  /** Step k's cache and mask, zero tensors until the step first runs. */
  async step(k: number, io: FrameIo): Promise<[ort.Tensor, ort.Tensor]> {
    if (!this.cache[k]) {
      const g = this.geometry;
      this.cache[k] = await this.ops.zeros([1, g.slots, g.framePayload], io);
      this.mask[k] = await this.ops.zeros([1, g.slots], io);
    }
    return [this.cache[k], this.mask[k]];
  }

  /** Step k's new cache and mask (a run's outputs); the previous ones are freed. */
  replace(k: number, cache: ort.Tensor, mask: ort.Tensor): void {
    this.ops.release(this.cache[k]);
    this.ops.release(this.mask[k]);
    this.cache[k] = cache;
    this.mask[k] = mask;
  }

  /** The joined cache and mask; null until join(). */
  get joined(): [ort.Tensor, ort.Tensor] | null {
    return this.cacheB ? [this.cacheB, this.maskB!] : null;
  }

  /** Per-step caches → one [n, W, F] cache (once, when the pipeline first fills; on the device with WebGPU). */
  async join(io: FrameIo): Promise<void> {
    const caches: ort.Tensor[] = [];
    const masks: ort.Tensor[] = [];
    for (let k = 0; k < this.steps; k++) {
      const [c, m] = await this.step(k, io);
      caches.push(c);
      masks.push(m);
    }
    this.cacheB = await this.ops.concat(caches, io);
    this.maskB = await this.ops.concat(masks, io);
    for (const t of [...caches, ...masks]) this.ops.release(t);
    this.cache = [];
    this.mask = [];
  }

  /** The joined cache and mask a batched run returned; the previous ones are freed. */
  replaceJoined(cache: ort.Tensor, mask: ort.Tensor): void {
    this.ops.release(this.cacheB);
    this.ops.release(this.maskB);
    this.cacheB = cache;
    this.maskB = mask;
  }

  /** Frees every cache and mask. */
  release(): void {
    for (const t of [...this.cache, ...this.mask, this.cacheB, this.maskB]) this.ops.release(t);
  }

  /** Forgets every cache and mask (their tensors already freed). */
  forget(): void {
    this.cache = [];
    this.mask = [];
    this.cacheB = null;
    this.maskB = null;
  }

  /** Host copy of step k's cache and mask (downloads on WebGPU; not counted in the frame's I/O). */
  async inspect(k: number, io: FrameIo): Promise<{ cache: Float32Array; mask: Float32Array }> {
    const g = this.geometry;
    const per = g.slots * g.framePayload;
    if (this.cacheB) {
      const c = await this.ops.read(this.cacheB, null);
      const m = await this.ops.read(this.maskB!, null);
      return { cache: c.slice(k * per, (k + 1) * per), mask: m.slice(k * g.slots, (k + 1) * g.slots) };
    }
    const [c, m] = await this.step(k, io);
    return { cache: await this.ops.read(c, null), mask: await this.ops.read(m, null) };
  }
}
