/**
 * Where the pipeline's tensors live between graph runs, and the few operations it needs on them
 * besides the pack's stages. Two implementations with one interface, so the pipeline reads the
 * same on every execution provider:
 *
 *  - HostOps (cpu, cuda): tensors are host memory; concat/split/renoise are typed-array code.
 *    On cpu nothing crosses a bus; on cuda every run uploads its inputs and downloads its outputs
 *    (the Node binding has no IO binding), which the pipeline's StageRunner.run() counts.
 *  - DeviceOps (webgpu): tensors stay GPU buffers; every operation is a glue graph (glue.ts) on
 *    the same device. The only host↔device traffic is what upload()/read() move, plus the small
 *    host inputs of the stages (timesteps, renoise coefficients).
 */
import * as ort from 'onnxruntime-node';
import { fromHalfArray, toHalfArray } from './half.ts';
import type { GlueSessions } from './glue.ts';
import type { StageName } from './pack-manifest.ts';

/** Per-frame accounting of one pipeline (see pipeline.ts). */
export interface FrameIo {
  /** Bytes moved host → device and device → host in this frame (0 on the CPU EP: host is the device). */
  h2dBytes: number;
  d2hBytes: number;
  /** Of those, the frame's own pixels: driving crop + patch canvas up, decoded image down. */
  frameH2dBytes: number;
  frameD2hBytes: number;
  /** Bytes of host tensors this code created as inputs and read back as outputs (on any EP). */
  hostInputBytes: number;
  hostOutputBytes: number;
  /** Milliseconds per stage; `host`: typed-array work, `glue`: device glue graphs, `worker`: the torch worker's whole batched frame. */
  ms: Partial<Record<StageName | 'host' | 'glue' | 'worker', number>>;
  /** Runs of the pack's stages (glue graphs not included). */
  runs: number;
}

export function emptyIo(): FrameIo {
  return { h2dBytes: 0, d2hBytes: 0, frameH2dBytes: 0, frameD2hBytes: 0, hostInputBytes: 0, hostOutputBytes: 0, ms: {}, runs: 0 };
}

const BYTES: Record<string, number> = { float32: 4, float16: 2, int64: 8 };

export function tensorBytes(t: ort.Tensor): number {
  return t.size * (BYTES[t.type] ?? 4);
}

export const onDevice = (t: ort.Tensor): boolean => t.location !== 'cpu' && t.location !== 'cpu-pinned';

export interface TensorOps {
  /** True when tensors stay on a device between runs (WebGPU). */
  readonly device: boolean;
  /** Host floats → a tensor the graphs accept; uploaded once on a device. `frame` marks the frame's pixels. */
  upload(data: Float32Array, dims: number[], io: FrameIo, frame?: boolean): Promise<ort.Tensor>;
  /** A zero tensor (made on the device, nothing uploaded). */
  zeros(dims: number[], io: FrameIo): Promise<ort.Tensor>;
  /** a[i]·x[i] + b[i]·z[i] for each batch item i (the LCM re-noise; a=1, b=0 passes an item through). */
  renoise(x: ort.Tensor, z: ort.Tensor, a: number[], b: number[], io: FrameIo): Promise<ort.Tensor>;
  /** Concatenation over axis 0. */
  concat(parts: ort.Tensor[], io: FrameIo): Promise<ort.Tensor>;
  /** Split over axis 0 into `n` equal parts. */
  split(t: ort.Tensor, n: number, io: FrameIo): Promise<ort.Tensor[]>;
  /** A host float32 copy; counted in `io` unless null (inspection). */
  read(t: ort.Tensor, io: FrameIo | null, frame?: boolean): Promise<Float32Array>;
  /** Takes ownership of a stage output (device tensors are counted in `live`). */
  adopt(t: ort.Tensor): ort.Tensor;
  /** Frees a tensor this stream no longer needs (device memory; no-op on the host). */
  release(t: ort.Tensor | null | undefined): void;
  /** Frees every owned device tensor not in `keep` (recovery after a failed frame). */
  releaseAllExcept(keep: ReadonlySet<ort.Tensor>): void;
  /** Device tensors owned and not released (0 on the host). */
  readonly live: number;
}

function addMs(io: FrameIo, key: 'host' | 'glue', t0: number): void {
  io.ms[key] = (io.ms[key] ?? 0) + performance.now() - t0;
}

export class HostOps implements TensorOps {
  readonly device = false;
  readonly live = 0;

  /** `bus`: the EP copies host tensors to a device on each run (cuda), so frame pixels are counted as moved. */
  constructor(
    private readonly half: boolean,
    private readonly bus: boolean,
  ) {}

  private make(data: Float32Array | Uint16Array, dims: number[]): ort.Tensor {
    return data instanceof Uint16Array ? new ort.Tensor('float16', data, dims) : new ort.Tensor('float32', data, dims);
  }

  private floats(t: ort.Tensor): Float32Array {
    return this.half ? fromHalfArray(t.data as Uint16Array) : (t.data as Float32Array);
  }

  async upload(data: Float32Array, dims: number[], io: FrameIo, frame = false): Promise<ort.Tensor> {
    const bytes = data.length * (this.half ? 2 : 4);
    io.hostInputBytes += bytes;
    if (frame && this.bus) io.frameH2dBytes += bytes;
    // a copy: the tensor can outlive the call (stream-batch items wait n−1 frames) while the
    // caller refills its buffer with the next frame
    return this.make(this.half ? toHalfArray(data) : Float32Array.from(data), dims);
  }

  async zeros(dims: number[], io: FrameIo): Promise<ort.Tensor> {
    const n = dims.reduce((a, b) => a * b, 1);
    io.hostInputBytes += n * (this.half ? 2 : 4);
    return this.make(this.half ? new Uint16Array(n) : new Float32Array(n), dims);
  }

  async renoise(x: ort.Tensor, z: ort.Tensor, a: number[], b: number[], io: FrameIo): Promise<ort.Tensor> {
    const t0 = performance.now();
    const xs = this.floats(x);
    const zs = this.floats(z);
    const out = new Float32Array(xs.length);
    const per = xs.length / a.length;
    for (let i = 0; i < a.length; i++) {
      const ai = a[i];
      const bi = b[i];
      for (let j = i * per, end = j + per; j < end; j++) out[j] = ai * xs[j] + bi * zs[j];
    }
    io.hostInputBytes += out.length * (this.half ? 2 : 4);
    addMs(io, 'host', t0);
    return this.make(this.half ? toHalfArray(out) : out, x.dims as number[]);
  }

  async concat(parts: ort.Tensor[], io: FrameIo): Promise<ort.Tensor> {
    const t0 = performance.now();
    const total = parts.reduce((s, p) => s + p.size, 0);
    const out = this.half ? new Uint16Array(total) : new Float32Array(total);
    let off = 0;
    for (const p of parts) {
      (out as Float32Array).set(p.data as Float32Array, off);
      off += p.size;
    }
    io.hostInputBytes += total * (this.half ? 2 : 4);
    addMs(io, 'host', t0);
    const dims = [parts.reduce((s, p) => s + Number(p.dims[0]), 0), ...parts[0].dims.slice(1)];
    return this.make(out, dims);
  }

  async split(t: ort.Tensor, n: number): Promise<ort.Tensor[]> {
    const per = t.size / n;
    const data = t.data as Float32Array | Uint16Array;
    const dims = [Number(t.dims[0]) / n, ...t.dims.slice(1)];
    return Array.from({ length: n }, (_, i) => this.make(data.subarray(i * per, (i + 1) * per), dims));
  }

  async read(t: ort.Tensor, io: FrameIo | null): Promise<Float32Array> {
    if (io) io.hostOutputBytes += tensorBytes(t);
    // a copy the caller owns (fromHalfArray already makes one)
    return this.half ? fromHalfArray(t.data as Uint16Array) : Float32Array.from(t.data as Float32Array);
  }

  adopt(t: ort.Tensor): ort.Tensor {
    return t;
  }

  release(): void {}

  releaseAllExcept(): void {}
}

export class DeviceOps implements TensorOps {
  readonly device = true;
  private readonly owned = new Set<ort.Tensor>();

  constructor(
    private readonly glue: GlueSessions,
    private readonly half: boolean,
  ) {}

  get live(): number {
    return this.owned.size;
  }

  adopt(t: ort.Tensor): ort.Tensor {
    if (onDevice(t)) this.owned.add(t);
    return t;
  }

  release(t: ort.Tensor | null | undefined): void {
    if (!t || !this.owned.delete(t)) return;
    t.dispose();
  }

  releaseAllExcept(keep: ReadonlySet<ort.Tensor>): void {
    for (const t of [...this.owned]) if (!keep.has(t)) this.release(t);
  }

  private async run(s: Promise<ort.InferenceSession>, feeds: Record<string, ort.Tensor>, io: FrameIo | null): Promise<ort.InferenceSession.ReturnType> {
    const t0 = performance.now();
    const out = await (await s).run(feeds);
    if (io) addMs(io, 'glue', t0);
    return out;
  }

  async upload(data: Float32Array, dims: number[], io: FrameIo, frame = false): Promise<ort.Tensor> {
    const host = this.half ? new ort.Tensor('float16', toHalfArray(data), dims) : new ort.Tensor('float32', data, dims);
    const bytes = tensorBytes(host);
    io.hostInputBytes += bytes;
    io.h2dBytes += bytes;
    if (frame) io.frameH2dBytes += bytes;
    return this.adopt((await this.run(this.glue.copy(dims.length, 'device'), { x: host }, io)).y);
  }

  async zeros(dims: number[], io: FrameIo): Promise<ort.Tensor> {
    const shape = new ort.Tensor('int64', BigInt64Array.from(dims, (d) => BigInt(d)), [dims.length]);
    io.hostInputBytes += tensorBytes(shape);
    io.h2dBytes += tensorBytes(shape);
    return this.adopt((await this.run(this.glue.zeros(dims.length), { shape }, io)).y);
  }

  async renoise(x: ort.Tensor, z: ort.Tensor, a: number[], b: number[], io: FrameIo): Promise<ort.Tensor> {
    const cdims = [a.length, ...x.dims.slice(1).map(() => 1)];
    const at = new ort.Tensor('float32', Float32Array.from(a), cdims);
    const bt = new ort.Tensor('float32', Float32Array.from(b), cdims);
    const small = 2 * tensorBytes(at);
    io.hostInputBytes += small;
    io.h2dBytes += small;
    return this.adopt((await this.run(this.glue.renoise(x.dims.length), { x, z, a: at, b: bt }, io)).y);
  }

  async concat(parts: ort.Tensor[], io: FrameIo): Promise<ort.Tensor> {
    if (parts.some((p) => !onDevice(p))) throw new Error('DeviceOps.concat: host tensor among device tensors');
    const feeds = Object.fromEntries(parts.map((p, i) => [`x${i}`, p]));
    return this.adopt((await this.run(this.glue.concat(parts[0].dims.length, parts.length), feeds, io)).y);
  }

  async split(t: ort.Tensor, n: number, io: FrameIo): Promise<ort.Tensor[]> {
    const out = await this.run(this.glue.split(t.dims.length, n), { x: t }, io);
    return Array.from({ length: n }, (_, i) => this.adopt(out[`y${i}`]));
  }

  async read(t: ort.Tensor, io: FrameIo | null, frame = false): Promise<Float32Array> {
    let host = t;
    if (onDevice(t)) {
      host = (await this.run(this.glue.copy(t.dims.length, 'host'), { x: t }, io)).y;
      if (io) {
        io.d2hBytes += tensorBytes(host);
        if (frame) io.frameD2hBytes += tensorBytes(host);
      }
    }
    if (io) io.hostOutputBytes += tensorBytes(host);
    return this.half ? fromHalfArray(host.data as Uint16Array) : Float32Array.from(host.data as Float32Array);
  }
}
