/**
 * Classifier-free guidance on the onnx engine (guidance scale > 1; stream batch off): each step runs
 * the conditional item with an unconditional twin that has its own per-step caches.
 */
import type * as ort from 'onnxruntime-node';
import { XplError } from '../../errors.ts';
import type { LcmScheduler } from '../../schedulers/lcm.ts';
import type { LoadedPack } from './pack.ts';
import type { Item } from './pipeline.ts';
import type { StageRunner } from './stage-runner.ts';
import { StepCaches } from './step-caches.ts';
import type { TensorOps } from './tensor-ops.ts';

/** Rejects a guidance scale this pack and stream cannot run. */
export function checkGuidance(pack: LoadedPack, scale: number, streamBatch: boolean): void {
  if (scale > 1 && !pack.uncond) {
    throw new XplError('bad_config', `${pack.dir}: classifier-free guidance (--lcm-cfg ${scale}) needs a pack whose denoise graph takes "uncond": re-export it with this exporter, or use --engine torch`);
  }
  if (scale > 1 && streamBatch) throw new XplError('bad_config', 'classifier-free guidance with stream batch needs --engine torch (the onnx engine runs it with stream batch off)');
}

export class Guidance {
  /** The unconditional branch's own per-step caches, and its (zero) control residuals. */
  readonly uncond: StepCaches;
  private zeroCtrl: ort.Tensor | null = null;

  /** `caches`: the stream's (conditional) per-step caches. */
  constructor(
    private readonly scale: number,
    private readonly pack: LoadedPack,
    private readonly ops: TensorOps,
    private readonly stages: StageRunner,
    private readonly caches: StepCaches,
    private readonly scheduler: LcmScheduler,
    steps: number,
  ) {
    this.uncond = new StepCaches(ops, pack.geometry, steps);
  }

  /**
   * One step with classifier-free guidance, as upstream: the conditional item and its
   * unconditional twin (no reference attention, no ControlNets — zero residuals —, its own cache)
   * in one batch of 2; ε = ε_u + g·(ε_c − ε_u); the boundary condition on the guided ε, as one
   * linear combination c_skip·x + c_out·(x − √(1−ᾱ)·ε)/√ᾱ = A·x + B·ε.
   * Returns the denoised latent; the item's x is the caller's to free.
   */
  async step(k: number, it: Item, refKv: ort.Tensor): Promise<ort.Tensor> {
    const io = this.stages.io;
    const t = this.scheduler.timesteps[k];
    const ctrl = await this.stages.run('control', { latent: it.x, timestep: this.stages.timestepTensor([t]), driving: it.driving, local: it.local });
    const [cache, mask] = await this.caches.step(k, io);
    const [cacheU, maskU] = await this.uncond.step(k, io);
    this.zeroCtrl ??= await this.ops.zeros([1, this.pack.geometry.ctrlResLen], io);
    const x2 = await this.ops.concat([it.x, it.x], io);
    const ref2 = await this.ops.concat([refKv, refKv], io);
    const ctrl2 = await this.ops.concat([ctrl.ctrl_res, this.zeroCtrl], io);
    const cache2 = await this.ops.concat([cache, cacheU], io);
    const mask2 = await this.ops.concat([mask, maskU], io);
    const out = await this.stages.run('denoise', { latent: x2, timestep: this.stages.timestepTensor([t, t]), ref_kv: ref2, ctrl_res: ctrl2, cache_in: cache2, cache_mask: mask2, ...this.stages.uncondFeed([0, 1]) });
    for (const x of [x2, ref2, ctrl2, cache2, mask2, ctrl.ctrl_res, out.denoised]) this.ops.release(x);
    const [cacheC, cacheUOut] = await this.ops.split(out.cache_out, 2, io);
    const [maskC, maskUOut] = await this.ops.split(out.cache_mask_out, 2, io);
    this.caches.replace(k, cacheC, maskC);
    this.uncond.replace(k, cacheUOut, maskUOut);
    const [epsC, epsU] = await this.ops.split(out.eps, 2, io);
    for (const x of [out.cache_out, out.cache_mask_out, out.eps]) this.ops.release(x);
    const guided = await this.ops.renoise(epsC, epsU, [this.scale], [1 - this.scale], io);
    this.ops.release(epsC);
    this.ops.release(epsU);
    const c = this.scheduler.coefficients[k];
    const den = await this.ops.renoise(it.x, guided, [c.cSkip + c.cOut / c.sqrtAlphaCumprod], [(-c.cOut * c.sqrtOneMinusAlphaCumprod) / c.sqrtAlphaCumprod], io);
    this.ops.release(guided);
    return den;
  }

  /** The zero control residuals (kept through a failed frame's clean-up). */
  get tensors(): ort.Tensor[] {
    return this.zeroCtrl ? [this.zeroCtrl] : [];
  }

  dispose(): void {
    this.ops.release(this.zeroCtrl);
    this.zeroCtrl = null;
  }
}
