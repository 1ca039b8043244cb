/**
 * Runs one stream's pack stages and counts the frame's I/O around them: tensors that cross the bus,
 * host inputs, time per stage.
 */
import * as ort from 'onnxruntime-node';
import { XplError } from '../../errors.ts';
import type { LoadedPack } from './pack.ts';
import type { StageName } from './pack-manifest.ts';
import { emptyIo, onDevice, tensorBytes, type FrameIo, type TensorOps } from './tensor-ops.ts';

export class StageRunner {
  /** The current frame's I/O (a fresh count per push). */
  io: FrameIo = emptyIo();
  private readonly half: boolean;

  constructor(
    private readonly pack: LoadedPack,
    private readonly ops: TensorOps,
  ) {
    this.half = pack.precision === 'fp16';
  }

  async run(stage: StageName, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
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

  timestepTensor(ts: number[]): ort.Tensor {
    const t = new ort.Tensor('int64', BigInt64Array.from(ts.map((x) => BigInt(x))), [ts.length]);
    this.io.hostInputBytes += 8 * ts.length;
    return t;
  }

  /** The denoise graph's `uncond` flags (packs that have it; 1 = a CFG unconditional item). */
  uncondFeed(flags: number[]): { uncond?: ort.Tensor } {
    if (!this.pack.uncond) return {};
    this.io.hostInputBytes += flags.length * (this.half ? 2 : 4);
    const t = this.half ? new ort.Tensor('float16', Uint16Array.from(flags, (f) => (f ? 0x3c00 : 0)), [flags.length]) : new ort.Tensor('float32', Float32Array.from(flags), [flags.length]);
    return { uncond: t };
  }
}
