/**
 * The bidirectional warm-up window: a stream's first N frames denoised together (the pack's
 * `denoise_window`, exported for a fixed N), after which the stream goes on streaming.
 */
import type * as ort from 'onnxruntime-node';
import { XplError } from '../../errors.ts';
import type { LcmScheduler } from '../../schedulers/lcm.ts';
import type { StreamNoise } from './noise.ts';
import type { LoadedPack } from './pack.ts';
import type { Item } from './pipeline.ts';
import type { StageRunner } from './stage-runner.ts';
import type { StepCaches } from './step-caches.ts';
import type { TensorOps } from './tensor-ops.ts';

/** Rejects a window of `frames` frames (0 = off) this pack was not exported for. */
export function checkWindow(pack: LoadedPack, frames: number): void {
  if (frames && pack.windowFrames !== frames) {
    throw new XplError('bad_config', `${pack.dir}: a warm-up window of ${frames} frames needs a pack exported with --warmup ${frames}${pack.windowFrames ? ` (this one has ${pack.windowFrames})` : ' (this one has none)'}, or --engine torch`);
  }
}

export class WarmupWindow {
  /** The warm-up window's frames, held until it is full. */
  private items: Item[] = [];

  constructor(
    readonly frames: number,
    private readonly steps: number,
    private readonly ops: TensorOps,
    private readonly stages: StageRunner,
    private readonly caches: StepCaches,
    private readonly noise: StreamNoise,
    private readonly scheduler: LcmScheduler,
  ) {}

  /** The frames held so far. */
  get held(): readonly Item[] {
    return this.items;
  }

  /** Holds one of the window's frames; true once the window is full. */
  hold(item: Item): boolean {
    this.items.push(item);
    return this.items.length === this.frames;
  }

  /** Forgets the held frames (their tensors already freed). */
  clear(): void {
    this.items = [];
  }

  /**
   * The warm-up window: its frames together at each step through `denoise_window` (every frame
   * attends to every frame), which also leaves step k's cache as streaming them would have; each
   * frame re-noised with its own noise; the last frame finishes, and the stream goes on streaming.
   */
  async run(refKv: ort.Tensor[]): Promise<{ latent: ort.Tensor; frame: number }> {
    const items = this.items;
    this.items = [];
    const io = this.stages.io;
    const K = items.length;
    let last!: ort.Tensor;
    for (let k = 0; k < this.steps; k++) {
      const tT = this.stages.timestepTensor(new Array(K).fill(this.scheduler.timesteps[k]));
      const xs = await this.ops.concat(items.map((it) => it.x), io);
      const dr = await this.ops.concat(items.map((it) => it.driving), io);
      const lo = await this.ops.concat(items.map((it) => it.local), io);
      const ctrl = await this.stages.run('control', { latent: xs, timestep: tT, driving: dr, local: lo });
      const refs = await this.ops.concat(new Array(K).fill(refKv[k]), io);
      const out = await this.stages.run('denoise_window', { latent: xs, timestep: tT, ref_kv: refs, ctrl_res: ctrl.ctrl_res });
      for (const x of [xs, dr, lo, refs, ctrl.ctrl_res, out.eps]) this.ops.release(x);
      this.caches.replace(k, out.cache_out, out.cache_mask_out);
      for (const it of items) this.noise.releaseLatent(it.x);
      const dens = await this.ops.split(out.denoised, K, io);
      this.ops.release(out.denoised);
      for (let f = 0; f < K; f++) {
        if (k === this.steps - 1) {
          if (f === K - 1) last = dens[f];
          else this.ops.release(dens[f]);
          continue;
        }
        const [a, b] = this.noise.coef(k + 1);
        const z = await this.noise.at(items[f].frame, k + 1, io);
        items[f].x = await this.ops.renoise(dens[f], z, [a], [b], io);
        this.noise.releaseLatent(z);
        this.ops.release(dens[f]);
      }
    }
    for (const it of items) {
      this.ops.release(it.driving);
      this.ops.release(it.local);
    }
    return { latent: last, frame: items[K - 1].frame };
  }
}
