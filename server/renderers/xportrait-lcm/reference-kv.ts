/**
 * The portraits' reference K/V of one stream: computed per step timestep of its schedule (and, with
 * stream batch, batched over the n timesteps), the one installed for the stream, and the ones not
 * yet released (kept through a failed frame's clean-up).
 */
import type * as ort from 'onnxruntime-node';
import { XplError } from '../../errors.ts';
import type { LcmScheduler } from '../../schedulers/lcm.ts';
import type { PackGeometry } from './pack-manifest.ts';
import type { StageRunner } from './stage-runner.ts';
import type { TensorOps } from './tensor-ops.ts';

/** A portrait's reference K/V for one step schedule (device tensors with WebGPU), and its latent when init = portrait. */
export interface RefKv {
  timesteps: number[];
  perStep: ort.Tensor[];
  batched: ort.Tensor | null;
  latent: ort.Tensor | null;
}

export class PortraitKv {
  /** The installed portrait's K/V per step ([] when none), batched over the steps (stream batch), and latent (init = portrait). */
  perStep: ort.Tensor[] = [];
  batched: ort.Tensor | null = null;
  latent: ort.Tensor | null = null;
  /** Every portrait reference computed here and not yet released (kept through a failed frame's clean-up). */
  private readonly refs = new Set<RefKv>();
  private readonly latentDims: number[];

  /** `keepLatent`: init = portrait (the portrait's latent stays with its K/V). */
  constructor(
    private readonly ops: TensorOps,
    private readonly stages: StageRunner,
    geometry: PackGeometry,
    private readonly scheduler: LcmScheduler,
    private readonly steps: number,
    private readonly streamBatch: boolean,
    private readonly keepLatent: boolean,
  ) {
    this.latentDims = [1, geometry.latentChannels, geometry.latentSize, geometry.latentSize];
  }

  /** Runs `reference` for a portrait latent (see LcmPipeline.computeReference). */
  async compute(refLatent: Float32Array): Promise<RefKv> {
    const n = this.steps;
    const ts = this.scheduler.timesteps;
    const io = this.stages.io;
    const lat = await this.ops.upload(refLatent, this.latentDims, io);
    const perStep: ort.Tensor[] = [];
    for (let k = 0; k < n; k++) perStep.push((await this.stages.run('reference', { ref_latent: lat, timestep: this.stages.timestepTensor([ts[k]]) })).ref_kv);
    let batched: ort.Tensor | null = null;
    if (this.streamBatch) {
      const rep = await this.ops.concat(new Array(n).fill(lat), io);
      batched = (await this.stages.run('reference', { ref_latent: rep, timestep: this.stages.timestepTensor(ts) })).ref_kv;
      this.ops.release(rep);
    }
    if (!this.keepLatent) this.ops.release(lat);
    const ref = { timesteps: [...ts], perStep, batched, latent: this.keepLatent ? lat : null };
    this.refs.add(ref);
    return ref;
  }

  /** Installs a portrait's K/V (checked against this stream's step schedule). */
  use(ref: RefKv): void {
    const ts = this.scheduler.timesteps;
    if (ref.timesteps.length !== this.steps || ref.timesteps.some((t, i) => t !== ts[i]) || (this.streamBatch && !ref.batched)) {
      throw new XplError('internal', 'xportrait-lcm: reference K/V computed for another step schedule');
    }
    if (this.keepLatent && !ref.latent) throw new XplError('internal', 'xportrait-lcm: reference computed without its latent (init = portrait)');
    this.perStep = ref.perStep;
    this.batched = ref.batched;
    this.latent = ref.latent;
  }

  /** Frees a portrait's K/V (device memory), uninstalling it if installed. */
  release(ref: RefKv): void {
    if (this.perStep === ref.perStep) {
      this.perStep = [];
      this.batched = null;
      this.latent = null;
    }
    for (const t of ref.perStep) this.ops.release(t);
    this.ops.release(ref.batched);
    this.ops.release(ref.latent);
    this.refs.delete(ref);
  }

  /** The tensors of every reference not yet released. */
  get tensors(): ort.Tensor[] {
    const all: ort.Tensor[] = [];
    for (const r of this.refs) all.push(...r.perStep, ...(r.batched ? [r.batched] : []), ...(r.latent ? [r.latent] : []));
    return all;
  }
}
