/**
 * TFJS graph (NHWC) → ONNX graph (opset 17, NCHW inside).
 *
 * Activations are carried in NCHW so Conv/MaxPool map directly; the graph input gets one
 * Transpose (NHWC → NCHW) and anything layout-sensitive that is not a convolution (Reshape,
 * Softmax, non-spatial reductions, graph outputs) first goes back to NHWC, so the ONNX model has
 * exactly the TFJS model's input and output shapes. Constants that broadcast against an NCHW
 * activation are re-laid out at conversion time.
 *
 * Supported ops are the ones BlazeFace, FaceMesh, Iris and FaceRes use; any other op fails loudly.
 */
import { AttrType, TensorDataType, type OnnxAttribute, type OnnxGraph, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from './onnx-proto.ts';
import type { TfAttr, TfGraphModel, TfNode, TfWeight } from './tfjs-graph.ts';

type Layout = 'nchw' | 'plain';

interface Value {
  /** ONNX value name. */
  name: string;
  layout: Layout;
  /** Constant payload when the TF tensor is a Const (materialised as an initializer on use). */
  constant?: TfWeight;
}

const NHWC_TO_NCHW = [0, 3, 1, 2];
const NCHW_TO_NHWC = [0, 2, 3, 1];
/** Position in NCHW of NHWC axis a. */
const NHWC_AXIS_IN_NCHW = [0, 2, 3, 1];

function b64(s: string | undefined): string {
  return s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8');
}

function ints(a: TfAttr | undefined): number[] {
  return (a?.list?.i ?? []).map(Number);
}

function sanitize(name: string): string {
  return name.replace(/:0$/, '');
}

export interface ConvertResult {
  graph: OnnxGraph;
  inputs: Array<{ name: string; shape: Array<number | string> }>;
  outputs: string[];
  opCounts: Record<string, number>;
}

export function tfGraphToOnnx(model: TfGraphModel, graphName: string): ConvertResult {
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  const values = new Map<string, Value>();
  const initDone = new Set<string>();
  const opCounts: Record<string, number> = {};
  let uid = 0;
  const fresh = (base: string): string => `${base}__${uid++}`;

  const addNode = (opType: string, input: string[], output: string[], attribute: OnnxAttribute[] = [], name?: string): void => {
    nodes.push({ name: name ?? fresh(opType), opType, input, output, attribute });
    opCounts[opType] = (opCounts[opType] ?? 0) + 1;
  };
  const aInts = (name: string, v: number[]): OnnxAttribute => ({ name, type: AttrType.INTS, ints: v });
  const aInt = (name: string, v: number): OnnxAttribute => ({ name, type: AttrType.INT, i: v });
  const aStr = (name: string, v: string): OnnxAttribute => ({ name, type: AttrType.STRING, s: new TextEncoder().encode(v) });

  const addFloatInit = (name: string, dims: number[], data: Float32Array): string => {
    initializers.push({ name, dims, dataType: TensorDataType.FLOAT, rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) });
    return name;
  };
  const addInt64Init = (name: string, dims: number[], data: number[]): string => {
    const arr = new BigInt64Array(data.map((x) => BigInt(x)));
    initializers.push({ name, dims, dataType: TensorDataType.INT64, rawData: new Uint8Array(arr.buffer) });
    return name;
  };
  const addInt32Init = (name: string, dims: number[], data: Int32Array): string => {
    initializers.push({ name, dims, dataType: TensorDataType.INT32, rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) });
    return name;
  };

  const constOf = (ref: string): TfWeight => {
    const v = get(ref);
    if (!v.constant) throw new Error(`${ref}: expected a constant`);
    return v.constant;
  };

  /** Name of the tensor as-is (constant materialised in its TF layout). */
  const materialise = (v: Value): string => {
    if (v.constant && !initDone.has(v.name)) {
      initDone.add(v.name);
      const c = v.constant;
      if (c.dtype === 'float32') addFloatInit(v.name, c.shape, c.data as Float32Array);
      else addInt32Init(v.name, c.shape, c.data as Int32Array);
    }
    return v.name;
  };

  const get = (ref: string): Value => {
    const clean = ref.replace(/^\^/, '');
    const [nodeName, idx] = clean.split(':');
    if (idx && idx !== '0') throw new Error(`multi-output reference ${ref} not supported`);
    const v = values.get(nodeName);
    if (!v) throw new Error(`unknown tensor ${ref}`);
    return v;
  };

  const toNhwc = (v: Value): string => {
    if (v.layout !== 'nchw') return materialise(v);
    const out = fresh(`${v.name}_nhwc`);
    addNode('Transpose', [v.name], [out], [aInts('perm', NCHW_TO_NHWC)]);
    return out;
  };

  /** A float constant that broadcasts against an NHWC tensor, re-laid out to broadcast against NCHW. */
  const constForNchw = (c: TfWeight, tag: string): string => {
    const rank4 = [...Array(Math.max(0, 4 - c.shape.length)).fill(1), ...c.shape];
    if (rank4.length !== 4) throw new Error(`constant ${c.name} of rank ${c.shape.length} cannot broadcast against a 4-D activation`);
    const [n, h, w, ch] = rank4;
    const src = c.data as Float32Array;
    const dst = new Float32Array(src.length);
    // NHWC index → NCHW index
    for (let a = 0; a < n; a++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
          for (let k = 0; k < ch; k++) dst[((a * ch + k) * h + y) * w + x] = src[((a * h + y) * w + x) * ch + k];
    let dims = [n, ch, h, w];
    // drop leading 1s so scalars/vectors stay small (broadcasting is right-aligned)
    while (dims.length > 1 && dims[0] === 1) dims = dims.slice(1);
    return addFloatInit(fresh(`${c.name}_nchw_${tag}`), dims, dst);
  };

  const convWeights = (filter: TfWeight, depthwise: boolean): { name: string; group: number; outCh: number } => {
    const [kh, kw, cin, cm] = filter.shape;
    const src = filter.data as Float32Array;
    if (!depthwise) {
      // HWIO → OIHW
      const dst = new Float32Array(src.length);
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++)
          for (let i = 0; i < cin; i++)
            for (let o = 0; o < cm; o++) dst[((o * cin + i) * kh + y) * kw + x] = src[((y * kw + x) * cin + i) * cm + o];
      return { name: addFloatInit(fresh(`${filter.name}_oihw`), [cm, cin, kh, kw], dst), group: 1, outCh: cm };
    }
    // depthwise [kh, kw, in, mult] → [in*mult, 1, kh, kw]; TF output channel = i*mult + m
    const dst = new Float32Array(src.length);
    for (let y = 0; y < kh; y++)
      for (let x = 0; x < kw; x++)
        for (let i = 0; i < cin; i++)
          for (let m = 0; m < cm; m++) dst[((i * cm + m) * kh + y) * kw + x] = src[((y * kw + x) * cin + i) * cm + m];
    return { name: addFloatInit(fresh(`${filter.name}_dw`), [cin * cm, 1, kh, kw], dst), group: cin, outCh: cin * cm };
  };

  const spatialAttrs = (n: TfNode, kernel: [number, number] | null): OnnxAttribute[] => {
    const fmt = b64(n.attr?.data_format?.s) || 'NHWC';
    if (fmt !== 'NHWC') throw new Error(`${n.name}: data_format ${fmt} not supported`);
    const strides = ints(n.attr?.strides);
    const attrs: OnnxAttribute[] = [aInts('strides', strides.length === 4 ? [strides[1], strides[2]] : [1, 1])];
    const dil = ints(n.attr?.dilations);
    if (kernel === null && dil.length === 4) attrs.push(aInts('dilations', [dil[1], dil[2]]));
    const padding = b64(n.attr?.padding?.s);
    if (padding === 'SAME') attrs.push(aStr('auto_pad', 'SAME_UPPER'));
    else if (padding === 'VALID') attrs.push(aStr('auto_pad', 'VALID'));
    else if (padding === 'EXPLICIT') {
      const p = ints(n.attr?.explicit_paddings); // [n0,n1,h0,h1,w0,w1,c0,c1]
      attrs.push(aInts('pads', [p[2], p[4], p[3], p[5]]));
    } else throw new Error(`${n.name}: padding ${padding} not supported`);
    if (kernel) attrs.push(aInts('kernel_shape', kernel));
    return attrs;
  };

  const activation = (kind: string, input: string, out: string, n: TfNode, extra?: TfWeight): void => {
    switch (kind) {
      case 'Relu':
        addNode('Relu', [input], [out]);
        return;
      case 'Relu6':
        addNode('Clip', [input, addFloatInit(fresh('zero'), [], new Float32Array([0])), addFloatInit(fresh('six'), [], new Float32Array([6]))], [out]);
        return;
      case 'Prelu':
        if (!extra) throw new Error(`${n.name}: Prelu without alpha`);
        addNode('PRelu', [input, constForNchw(extra, 'alpha')], [out]);
        return;
      case 'Sigmoid':
        addNode('Sigmoid', [input], [out]);
        return;
      case 'Tanh':
        addNode('Tanh', [input], [out]);
        return;
      default:
        throw new Error(`${n.name}: fused activation ${kind} not supported`);
    }
  };

  for (const n of model.nodes) {
    const inputs = (n.input ?? []).filter((i) => !i.startsWith('^'));
    const outName = sanitize(n.name);
    switch (n.op) {
      case 'Const': {
        const w = model.weights.get(n.name);
        if (!w) throw new Error(`constant ${n.name} has no weight data`);
        values.set(n.name, { name: outName, layout: 'plain', constant: w });
        break;
      }
      case 'Placeholder': {
        const sig = model.inputs.find((i) => sanitize(i.name) === n.name);
        const dims = (sig?.shape ?? (n.attr?.shape?.shape?.dim ?? []).map((d) => Number(d.size))) as number[];
        if (dims.length !== 4) throw new Error(`${n.name}: only 4-D NHWC image inputs are supported`);
        const t = fresh(`${outName}_nchw`);
        addNode('Transpose', [outName], [t], [aInts('perm', NHWC_TO_NCHW)]);
        values.set(n.name, { name: t, layout: 'nchw' });
        break;
      }
      case 'Conv2D':
      case '_FusedConv2D':
      case 'DepthwiseConv2dNative':
      case 'FusedDepthwiseConv2dNative': {
        const x = get(inputs[0]);
        if (x.layout !== 'nchw') throw new Error(`${n.name}: convolution input is not an image tensor`);
        const depthwise = n.op.includes('Depthwise');
        const filter = constOf(inputs[1]);
        const { name: wName, group } = convWeights(filter, depthwise);
        const fused = (n.attr?.fused_ops?.list?.s ?? []).map(b64);
        const convIn = [x.name, wName];
        let extraArgs = inputs.slice(2);
        if (fused[0] === 'BiasAdd') {
          const bias = constOf(extraArgs[0]);
          convIn.push(addFloatInit(fresh(`${bias.name}_b`), [bias.shape.reduce((a, b) => a * b, 1)], bias.data as Float32Array));
          extraArgs = extraArgs.slice(1);
        } else if (fused.length && fused[0] !== 'BiasAdd') {
          throw new Error(`${n.name}: fused ops ${fused.join(',')} not supported`);
        }
        const attrs = spatialAttrs(n, null);
        attrs.push(aInts('kernel_shape', [filter.shape[0], filter.shape[1]]));
        if (group > 1) attrs.push(aInt('group', group));
        const act = fused.slice(1);
        if (act.length > 1) throw new Error(`${n.name}: fused ops ${fused.join(',')} not supported`);
        if (act.length === 0) {
          addNode('Conv', convIn, [outName], attrs, outName);
        } else {
          const mid = fresh(`${outName}_conv`);
          addNode('Conv', convIn, [mid], attrs);
          activation(act[0], mid, outName, n, extraArgs[0] ? constOf(extraArgs[0]) : undefined);
        }
        values.set(n.name, { name: outName, layout: 'nchw' });
        break;
      }
      case 'MaxPool':
      case 'AvgPool': {
        const x = get(inputs[0]);
        if (x.layout !== 'nchw') throw new Error(`${n.name}: pool input is not an image tensor`);
        const k = ints(n.attr?.ksize);
        const attrs = spatialAttrs(n, [k[1], k[2]]);
        if (n.op === 'AvgPool') attrs.push(aInt('count_include_pad', 0));
        addNode(n.op === 'MaxPool' ? 'MaxPool' : 'AveragePool', [x.name], [outName], attrs, outName);
        values.set(n.name, { name: outName, layout: 'nchw' });
        break;
      }
      case 'Add':
      case 'AddV2':
      case 'Mul':
      case 'Sub':
      case 'RealDiv':
      case 'Minimum':
      case 'Maximum': {
        const onnxOp = { Add: 'Add', AddV2: 'Add', Mul: 'Mul', Sub: 'Sub', RealDiv: 'Div', Minimum: 'Min', Maximum: 'Max' }[n.op]!;
        const a = get(inputs[0]);
        const b = get(inputs[1]);
        const anyNchw = a.layout === 'nchw' || b.layout === 'nchw';
        const side = (v: Value, tag: string): string => {
          if (!anyNchw) return materialise(v);
          if (v.layout === 'nchw') return v.name;
          if (v.constant) return constForNchw(v.constant, tag);
          throw new Error(`${n.name}: cannot mix an image tensor with a non-constant plain tensor`);
        };
        addNode(onnxOp, [side(a, 'a'), side(b, 'b')], [outName], [], outName);
        values.set(n.name, { name: outName, layout: anyNchw ? 'nchw' : 'plain' });
        break;
      }
      case 'Relu':
      case 'Relu6':
      case 'Sigmoid':
      case 'Tanh': {
        const x = get(inputs[0]);
        activation(n.op, materialise(x), outName, n);
        values.set(n.name, { name: outName, layout: x.layout });
        break;
      }
      case 'Prelu': {
        const x = get(inputs[0]);
        const alpha = constOf(inputs[1]);
        if (x.layout === 'nchw') activation('Prelu', x.name, outName, n, alpha);
        else addNode('PRelu', [materialise(x), materialise(get(inputs[1]))], [outName], [], outName);
        values.set(n.name, { name: outName, layout: x.layout });
        break;
      }
      case 'Pad':
      case 'PadV2': {
        const x = get(inputs[0]);
        const p = Array.from(constOf(inputs[1]).data); // [rank, 2]
        const rank = p.length / 2;
        let pads: number[];
        if (x.layout === 'nchw') {
          const begins = NHWC_TO_NCHW.map((a) => p[2 * a]);
          const ends = NHWC_TO_NCHW.map((a) => p[2 * a + 1]);
          pads = [...begins, ...ends];
        } else {
          pads = [...Array.from({ length: rank }, (_, a) => p[2 * a]), ...Array.from({ length: rank }, (_, a) => p[2 * a + 1])];
        }
        const padIn = [materialise(x), addInt64Init(fresh(`${outName}_pads`), [pads.length], pads)];
        if (n.op === 'PadV2') padIn.push(addFloatInit(fresh(`${outName}_cv`), [], new Float32Array([(constOf(inputs[2]).data as Float32Array)[0]])));
        addNode('Pad', padIn, [outName], [aStr('mode', 'constant')], outName);
        values.set(n.name, { name: outName, layout: x.layout });
        break;
      }
      case 'Reshape': {
        const x = get(inputs[0]);
        const shape = Array.from(constOf(inputs[1]).data);
        addNode('Reshape', [toNhwc(x), addInt64Init(fresh(`${outName}_shape`), [shape.length], shape)], [outName], [], outName);
        values.set(n.name, { name: outName, layout: 'plain' });
        break;
      }
      case 'ConcatV2': {
        const parts = inputs.slice(0, -1).map(get);
        const axisRaw = Number(constOf(inputs[inputs.length - 1]).data[0]);
        const allNchw = parts.every((v) => v.layout === 'nchw');
        if (allNchw) {
          const axis = NHWC_AXIS_IN_NCHW[(axisRaw + 4) % 4];
          addNode('Concat', parts.map((v) => v.name), [outName], [aInt('axis', axis)], outName);
          values.set(n.name, { name: outName, layout: 'nchw' });
        } else {
          addNode('Concat', parts.map(toNhwc), [outName], [aInt('axis', axisRaw)], outName);
          values.set(n.name, { name: outName, layout: 'plain' });
        }
        break;
      }
      case 'Mean':
      case 'Max':
      case 'Sum': {
        const x = get(inputs[0]);
        const axes = Array.from(constOf(inputs[1]).data).map(Number);
        const keep = n.attr?.keep_dims?.b ? 1 : 0;
        const onnxOp = { Mean: 'ReduceMean', Max: 'ReduceMax', Sum: 'ReduceSum' }[n.op]!;
        if (x.layout === 'nchw' && keep) {
          addNode(onnxOp, [x.name], [outName], [aInts('axes', axes.map((a) => NHWC_AXIS_IN_NCHW[(a + 4) % 4])), aInt('keepdims', 1)], outName);
          values.set(n.name, { name: outName, layout: 'nchw' });
        } else {
          if (onnxOp === 'ReduceSum') throw new Error(`${n.name}: Sum without keep_dims not supported`);
          addNode(onnxOp, [toNhwc(x)], [outName], [aInts('axes', axes), aInt('keepdims', keep)], outName);
          values.set(n.name, { name: outName, layout: 'plain' });
        }
        break;
      }
      case 'MatMul':
      case '_FusedMatMul': {
        const a = get(inputs[0]);
        const bW = constOf(inputs[1]);
        if (a.layout !== 'plain') throw new Error(`${n.name}: MatMul on an image tensor`);
        const fused = (n.attr?.fused_ops?.list?.s ?? []).map(b64);
        const gemmIn = [a.name, materialise(get(inputs[1]))];
        if (fused[0] === 'BiasAdd') gemmIn.push(materialise(get(inputs[2])));
        else if (fused.length) throw new Error(`${n.name}: fused ops ${fused.join(',')} not supported`);
        const attrs: OnnxAttribute[] = [aInt('transA', n.attr?.transpose_a?.b ? 1 : 0), aInt('transB', n.attr?.transpose_b?.b ? 1 : 0)];
        void bW;
        const act = fused.slice(1);
        if (act.length === 0) addNode('Gemm', gemmIn, [outName], attrs, outName);
        else {
          const mid = fresh(`${outName}_gemm`);
          addNode('Gemm', gemmIn, [mid], attrs);
          activation(act[0], mid, outName, n);
        }
        values.set(n.name, { name: outName, layout: 'plain' });
        break;
      }
      case 'Softmax': {
        const x = get(inputs[0]);
        addNode('Softmax', [toNhwc(x)], [outName], [aInt('axis', -1)], outName);
        values.set(n.name, { name: outName, layout: 'plain' });
        break;
      }
      case 'Identity': {
        values.set(n.name, get(inputs[0]));
        break;
      }
      default:
        throw new Error(`${n.name}: TF op ${n.op} is not supported by this converter`);
    }
  }

  // graph outputs: back to NHWC / plain, under the TFJS signature's tensor names (without ":0")
  const outputs: string[] = [];
  const outputInfos: OnnxValueInfo[] = [];
  for (const o of model.outputs) {
    const nm = sanitize(o.name);
    const v = get(nm);
    const src = toNhwc(v);
    if (src !== nm) {
      if (nodes.some((nd) => nd.output.includes(nm))) renameValue(nodes, nm, fresh(`${nm}_pre`));
      addNode('Identity', [src], [nm]);
    }
    outputs.push(nm);
    outputInfos.push({ name: nm, type: { tensorType: { elemType: TensorDataType.FLOAT } } });
  }

  const inputInfos: OnnxValueInfo[] = [];
  const inputs: ConvertResult['inputs'] = [];
  for (const i of model.inputs) {
    const nm = sanitize(i.name);
    const shape = i.shape.map((d, k) => (d < 0 ? (k === 0 ? 'batch' : `d${k}`) : d));
    inputs.push({ name: nm, shape });
    inputInfos.push({
      name: nm,
      type: { tensorType: { elemType: TensorDataType.FLOAT, shape: { dim: shape.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
    });
  }

  // drop nodes whose outputs nobody needs (dead branches)
  const needed = new Set(outputs);
  const live: OnnxNode[] = [];
  for (let k = nodes.length - 1; k >= 0; k--) {
    const nd = nodes[k];
    if (nd.output.some((o) => needed.has(o))) {
      live.push(nd);
      for (const i of nd.input) needed.add(i);
    }
  }
  live.reverse();
  const liveInits = initializers.filter((t) => needed.has(t.name));

  return {
    graph: { name: graphName, node: live, initializer: liveInits, input: inputInfos, output: outputInfos },
    inputs,
    outputs,
    opCounts,
  };
}

/** Renames ONNX value `from` to `to` in every node. */
function renameValue(nodes: OnnxNode[], from: string, to: string): void {
  for (const nd of nodes) {
    nd.input = nd.input.map((i) => (i === from ? to : i));
    nd.output = nd.output.map((o) => (o === from ? to : o));
  }
}
