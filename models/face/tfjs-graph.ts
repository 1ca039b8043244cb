/**
 * Reads a TFJS graph model (model.json + binary weight shards): topology, signature and every
 * weight decoded to float32 / int32 as the weights manifest describes (plain, float16- or
 * uint8/uint16-quantized).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface TfAttr {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  type?: string;
  list?: { i?: Array<string | number>; s?: string[]; f?: number[] };
  tensor?: { dtype: string; tensorShape?: { dim?: Array<{ size: string }> } };
  shape?: { dim?: Array<{ size: string }> };
}

export interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfAttr>;
}

export interface TfWeight {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

export interface TfSignatureEntry {
  name: string;
  dtype: string;
  shape: number[];
}

export interface TfGraphModel {
  nodes: TfNode[];
  weights: Map<string, TfWeight>;
  inputs: TfSignatureEntry[];
  outputs: TfSignatureEntry[];
  /** The raw model.json plus concatenated weight bytes, for reference tools. */
  json: any;
  weightBytes: Uint8Array;
}

interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: 'float16' | 'uint8' | 'uint16'; min?: number; scale?: number; original_dtype?: string };
}

/** IEEE 754 half → single. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function decodeWeights(manifest: ManifestWeight[], buf: Uint8Array): Map<string, TfWeight> {
  const out = new Map<string, TfWeight>();
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  for (const w of manifest) {
    const n = sizeOf(w.shape);
    const q = w.quantization;
    const targetDtype = (q?.original_dtype ?? w.dtype) as string;
    if (targetDtype !== 'float32' && targetDtype !== 'int32') throw new Error(`weight ${w.name}: unsupported dtype ${targetDtype}`);
    const data = targetDtype === 'float32' ? new Float32Array(n) : new Int32Array(n);
    if (!q) {
      for (let i = 0; i < n; i++) data[i] = w.dtype === 'float32' ? dv.getFloat32(off + 4 * i, true) : dv.getInt32(off + 4 * i, true);
      off += 4 * n;
    } else if (q.dtype === 'float16') {
      for (let i = 0; i < n; i++) data[i] = halfToFloat(dv.getUint16(off + 2 * i, true));
      off += 2 * n;
    } else if (q.dtype === 'uint8' || q.dtype === 'uint16') {
      const bytes = q.dtype === 'uint8' ? 1 : 2;
      const min = q.min ?? 0;
      const scale = q.scale ?? 1;
      for (let i = 0; i < n; i++) {
        const v = bytes === 1 ? dv.getUint8(off + i) : dv.getUint16(off + 2 * i, true);
        data[i] = min + scale * v;
      }
      off += bytes * n;
    } else {
      throw new Error(`weight ${w.name}: unsupported quantization ${JSON.stringify(q)}`);
    }
    out.set(w.name, { name: w.name, shape: w.shape, dtype: targetDtype, data });
  }
  if (off !== buf.byteLength) throw new Error(`weights manifest covers ${off} bytes, shards hold ${buf.byteLength}`);
  return out;
}

function parseSig(entries: Record<string, any> | undefined): TfSignatureEntry[] {
  if (!entries) return [];
  return Object.values(entries).map((e: any) => ({
    name: String(e.name),
    dtype: String(e.dtype),
    shape: (e.tensorShape?.dim ?? []).map((d: any) => Number(d.size)),
  }));
}

export function loadTfGraphModel(modelJsonPath: string): TfGraphModel {
  const json = JSON.parse(readFileSync(modelJsonPath, 'utf8'));
  if (json.format && json.format !== 'graph-model') throw new Error(`${modelJsonPath}: not a graph model (${json.format})`);
  const dir = dirname(modelJsonPath);
  const manifest: ManifestWeight[] = [];
  const shards: Uint8Array[] = [];
  for (const group of json.weightsManifest ?? []) {
    for (const p of group.paths) shards.push(new Uint8Array(readFileSync(join(dir, p))));
    manifest.push(...group.weights);
  }
  const total = shards.reduce((a, s) => a + s.byteLength, 0);
  const weightBytes = new Uint8Array(total);
  let o = 0;
  for (const s of shards) {
    weightBytes.set(s, o);
    o += s.byteLength;
  }
  const weights = decodeWeights(manifest, weightBytes);
  const sig = json.signature ?? json.userDefinedMetadata?.signature;
  const nodes: TfNode[] = json.modelTopology.node;
  if (json.modelTopology.library?.function?.length) throw new Error(`${modelJsonPath}: graph functions (control flow) are not supported`);
  let inputs = parseSig(sig?.inputs);
  let outputs = parseSig(sig?.outputs);
  if (!inputs.length) {
    inputs = nodes.filter((n) => n.op === 'Placeholder').map((n) => ({ name: n.name, dtype: 'DT_FLOAT', shape: (n.attr?.shape?.shape?.dim ?? []).map((d: any) => Number(d.size)) }));
  }
  if (!outputs.length) {
    const used = new Set(nodes.flatMap((n) => (n.input ?? []).map((i) => i.replace(/^\^/, '').split(':')[0])));
    outputs = nodes.filter((n) => !used.has(n.name) && n.op !== 'Const').map((n) => ({ name: n.name, dtype: 'DT_FLOAT', shape: [] }));
  }
  return { nodes, weights, inputs, outputs, json, weightBytes };
}
