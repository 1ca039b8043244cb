/**
 * Tiny ONNX graphs that move and combine tensors on the execution provider's device, built in
 * memory at first use. onnxruntime-node has no IO binding and cannot read a WebGPU tensor back
 * safely (`Tensor.getData()` on a gpu-buffer output aborts the process in 1.30), so every
 * host↔device transfer and every bit of arithmetic between the pack's stages is one of these
 * graphs, run on the same EP as the pack:
 *
 *   zeros     ConstantOfShape — a zero tensor made on the device (empty temporal caches)
 *   copy      Identity — with a device output it uploads a host tensor, with a host output it
 *             downloads a device tensor
 *   concat    Concat over axis 0 of n tensors (stream-batch items, per-step caches)
 *   split     Split over axis 0 into n batch-1 tensors
 *   renoise   y = a·x + b·z per batch item (a, b: float32 [B,1,1,1]); fp16 graphs compute in fp32
 *             (Cast in and out) so the LCM coefficients keep their precision
 *
 * Every dim is symbolic, so one session per (graph, rank, arity) serves any geometry.
 */
import * as ort from 'onnxruntime-node';
import { gateOnnxRuntime } from '../../workers/native-gate.ts';
import { AttrType, encodeModel, TensorDataType, type OnnxNode, type OnnxValueInfo } from '../../../models/face/onnx-proto.ts';

// A worker thread must not be stopped inside an onnxruntime call (see native-gate.ts).
gateOnnxRuntime(ort.InferenceSession);

export type GlueDtype = 'float32' | 'float16';

const ELEM: Record<GlueDtype, number> = { float32: TensorDataType.FLOAT, float16: TensorDataType.FLOAT16 };
const OPSET = 17;

function value(name: string, elemType: number, rank: number, prefix = name): OnnxValueInfo {
  return { name, type: { tensorType: { elemType, shape: { dim: Array.from({ length: rank }, (_, i) => ({ dimParam: `${prefix}_d${i}` })) } } } };
}

function node(opType: string, input: string[], output: string[], attribute: OnnxNode['attribute'] = []): OnnxNode {
  return { name: `${opType}_${output[0]}`, opType, input, output, attribute };
}

function model(name: string, nodes: OnnxNode[], input: OnnxValueInfo[], output: OnnxValueInfo[]): Uint8Array {
  return encodeModel({ name, node: nodes, initializer: [], input, output }, { opset: OPSET, producer: 'xportrait-live glue', producerVersion: '1' });
}

export function copyGraph(dtype: GlueDtype, rank: number): Uint8Array {
  const e = ELEM[dtype];
  return model('copy', [node('Identity', ['x'], ['y'])], [value('x', e, rank)], [value('y', e, rank, 'x')]);
}

export function zerosGraph(dtype: GlueDtype, rank: number): Uint8Array {
  const e = ELEM[dtype];
  const zero = { name: 'zero', dims: [1], dataType: e, rawData: new Uint8Array(dtype === 'float16' ? 2 : 4) };
  const shape: OnnxValueInfo = { name: 'shape', type: { tensorType: { elemType: TensorDataType.INT64, shape: { dim: [{ dimValue: rank }] } } } };
  return model('zeros', [node('ConstantOfShape', ['shape'], ['y'], [{ name: 'value', type: AttrType.TENSOR, t: zero }])], [shape], [value('y', e, rank)]);
}

export function concatGraph(dtype: GlueDtype, rank: number, n: number): Uint8Array {
  const e = ELEM[dtype];
  const ins = Array.from({ length: n }, (_, i) => `x${i}`);
  return model(`concat${n}`, [node('Concat', ins, ['y'], [{ name: 'axis', type: AttrType.INT, i: 0 }])], ins.map((x) => value(x, e, rank)), [value('y', e, rank)]);
}

export function splitGraph(dtype: GlueDtype, rank: number, n: number): Uint8Array {
  const e = ELEM[dtype];
  const outs = Array.from({ length: n }, (_, i) => `y${i}`);
  // opset 17: no `split` input → equal parts, as many as there are outputs
  return model(`split${n}`, [node('Split', ['x'], outs, [{ name: 'axis', type: AttrType.INT, i: 0 }])], [value('x', e, rank)], outs.map((y) => value(y, e, rank)));
}

export function renoiseGraph(dtype: GlueDtype, rank: number): Uint8Array {
  const e = ELEM[dtype];
  const f32 = TensorDataType.FLOAT;
  const nodes: OnnxNode[] = [];
  let x = 'x';
  let z = 'z';
  if (dtype === 'float16') {
    nodes.push(node('Cast', ['x'], ['xf'], [{ name: 'to', type: AttrType.INT, i: f32 }]), node('Cast', ['z'], ['zf'], [{ name: 'to', type: AttrType.INT, i: f32 }]));
    x = 'xf';
    z = 'zf';
  }
  nodes.push(node('Mul', ['a', x], ['ax']), node('Mul', ['b', z], ['bz']));
  if (dtype === 'float16') nodes.push(node('Add', ['ax', 'bz'], ['yf']), node('Cast', ['yf'], ['y'], [{ name: 'to', type: AttrType.INT, i: TensorDataType.FLOAT16 }]));
  else nodes.push(node('Add', ['ax', 'bz'], ['y']));
  return model('renoise', nodes, [value('x', e, rank), value('z', e, rank, 'x'), value('a', f32, rank), value('b', f32, rank, 'a')], [value('y', e, rank, 'x')]);
}

/** Where a glue session leaves its outputs. */
export type Placement = 'device' | 'host';

/**
 * The glue sessions of one loaded pack (one EP, one float type), created on first use and shared
 * by every pipeline on that pack. Released with the pack.
 */
export class GlueSessions {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(
    readonly ep: 'webgpu',
    readonly dtype: GlueDtype,
  ) {}

  private get(key: string, outputs: string[], placement: Placement, build: () => Uint8Array): Promise<ort.InferenceSession> {
    const k = `${key}|${placement}`;
    let s = this.sessions.get(k);
    if (!s) {
      s = ort.InferenceSession.create(build(), {
        executionProviders: [this.ep],
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
        preferredOutputLocation: Object.fromEntries(outputs.map((o) => [o, placement === 'device' ? 'gpu-buffer' : 'cpu'])),
      });
      this.sessions.set(k, s);
      s.catch(() => this.sessions.delete(k));
    }
    return s;
  }

  copy(rank: number, placement: Placement): Promise<ort.InferenceSession> {
    return this.get(`copy${rank}`, ['y'], placement, () => copyGraph(this.dtype, rank));
  }

  zeros(rank: number): Promise<ort.InferenceSession> {
    return this.get(`zeros${rank}`, ['y'], 'device', () => zerosGraph(this.dtype, rank));
  }

  concat(rank: number, n: number): Promise<ort.InferenceSession> {
    return this.get(`concat${rank}x${n}`, ['y'], 'device', () => concatGraph(this.dtype, rank, n));
  }

  split(rank: number, n: number): Promise<ort.InferenceSession> {
    return this.get(`split${rank}x${n}`, Array.from({ length: n }, (_, i) => `y${i}`), 'device', () => splitGraph(this.dtype, rank, n));
  }

  renoise(rank: number): Promise<ort.InferenceSession> {
    return this.get(`renoise${rank}`, ['y'], 'device', () => renoiseGraph(this.dtype, rank));
  }

  /**
   * Runs each kind of glue graph once on a 2-item tensor and checks the numbers, so a device that
   * cannot run them is found at load (and the pack falls back to cpu) instead of at the first frame.
   */
  async selfTest(): Promise<void> {
    const half = this.dtype === 'float16';
    const host = (v: number[]): ort.Tensor =>
      half ? new ort.Tensor('float16', Uint16Array.from(v, (x) => (x === 1 ? 0x3c00 : x === 2 ? 0x4000 : 0)), [v.length, 1]) : new ort.Tensor('float32', Float32Array.from(v), [v.length, 1]);
    const up = (await (await this.copy(2, 'device')).run({ x: host([1, 2]) })).y;
    const parts = await (await this.split(2, 2)).run({ x: up });
    const joined = (await (await this.concat(2, 2)).run({ x0: parts.y1, x1: parts.y0 })).y;
    const coef = (v: number[]): ort.Tensor => new ort.Tensor('float32', Float32Array.from(v), [2, 1]);
    const mixed = (await (await this.renoise(2)).run({ x: joined, z: up, a: coef([1, 0]), b: coef([0, 1]) })).y;
    const zero = (await (await this.zeros(2)).run({ shape: new ort.Tensor('int64', BigInt64Array.from([2n, 1n]), [2]) })).y;
    const sum = (await (await this.renoise(2)).run({ x: mixed, z: zero, a: coef([1, 1]), b: coef([1, 1]) })).y;
    const back = (await (await this.copy(2, 'host')).run({ x: sum })).y;
    for (const t of [up, parts.y0, parts.y1, joined, mixed, zero, sum]) t.dispose();
    const got = Array.from(back.data as Float32Array | Uint16Array);
    const want = half ? [0x4000, 0x4000] : [2, 2];
    if (got[0] !== want[0] || got[1] !== want[1]) throw new Error(`glue self-test on ${this.ep}: got [${got}], want [${want}]`);
  }

  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s.catch(() => null))?.release().catch(() => {});
  }
}
