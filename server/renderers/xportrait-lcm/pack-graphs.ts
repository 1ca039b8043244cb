/**
 * A pack's ONNX graphs checked against its manifest: each session's declared I/O, and the shapes
 * the graphs actually produce in the warm-up run.
 */
import * as ort from 'onnxruntime-node';
import { badPack, fmtShape, type Manifest, type Precision, type StageName, type StageSpec } from './pack-manifest.ts';

const ORT_TYPE_FP16: Record<string, string> = { float32: 'float16' };

/** Manifest I/O vs the graph's declared I/O (names, order, dtype, shape). */
export function checkGraphIo(dir: string, stage: StageName, spec: StageSpec, session: ort.InferenceSession, precision: Precision): void {
  const file = spec.files[precision]!;
  for (const kind of ['inputs', 'outputs'] as const) {
    const names = kind === 'inputs' ? session.inputNames : session.outputNames;
    const meta = kind === 'inputs' ? session.inputMetadata : session.outputMetadata;
    const wantNames = spec[kind].map((t) => t.name);
    for (const n of wantNames) if (!names.includes(n)) throw badPack(dir, `stage "${stage}" (${file}): graph has no ${kind.slice(0, -1)} "${n}" (graph ${kind}: ${names.join(', ')})`);
    for (const n of names) if (!wantNames.includes(n)) throw badPack(dir, `stage "${stage}" (${file}): graph ${kind.slice(0, -1)} "${n}" is not in the manifest`);
    for (const t of spec[kind]) {
      const m = meta[names.indexOf(t.name)];
      if (!m || !m.isTensor) throw badPack(dir, `stage "${stage}" (${file}): ${t.name} is not a tensor`);
      const wantType = precision === 'fp16' ? ORT_TYPE_FP16[t.dtype] ?? t.dtype : t.dtype;
      if (m.type !== wantType) throw badPack(dir, `stage "${stage}" ${kind.slice(0, -1)} "${t.name}": manifest dtype ${wantType} ≠ graph ${m.type} (${file})`);
      // A symbolic graph dim where the manifest has a number (the exporter leaves some output
      // dims symbolic, e.g. "Concatref_kv_dim_1") cannot be checked here: the warm-up run checks
      // the actual output shape. A numeric graph dim must equal the manifest's.
      const gs = m.shape;
      const same = gs.length === t.shape.length && gs.every((d, i) => (typeof t.shape[i] === 'string' ? typeof d === 'string' || d === -1 : typeof d === 'string' || d === -1 || d === t.shape[i]));
      if (!same) throw badPack(dir, `stage "${stage}" ${kind.slice(0, -1)} "${t.name}": manifest shape ${fmtShape(t.shape)} ≠ graph ${fmtShape(gs)} (${file})`);
    }
  }
}

/** Zero inputs at batch 1 for a stage (warm-up). */
function zeroFeeds(spec: StageSpec, precision: Precision): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of spec.inputs) {
    const dims = t.shape.map((d) => (typeof d === 'string' ? 1 : d));
    const n = dims.reduce((a, b) => a * b, 1);
    if (t.dtype === 'int64') feeds[t.name] = new ort.Tensor('int64', new BigInt64Array(n).fill(999n), dims);
    else if (precision === 'fp16') feeds[t.name] = new ort.Tensor('float16', new Uint16Array(n), dims);
    else feeds[t.name] = new ort.Tensor('float32', new Float32Array(n), dims);
  }
  return feeds;
}

/** The warm-up: each stage run once on zero inputs at batch 1, its outputs' shapes checked against the manifest. */
export async function warmUp(dir: string, manifest: Manifest, stages: StageName[], sessions: Partial<Record<StageName, ort.InferenceSession>>, precision: Precision): Promise<void> {
  for (const st of stages) {
    const spec = manifest.stages[st]!;
    const out = await sessions[st]!.run(zeroFeeds(spec, precision));
    const freeDevice = (): void => {
      for (const t of Object.values(out)) if (t.location === 'gpu-buffer') t.dispose();
    };
    for (const o of spec.outputs) {
      const want = o.shape.map((d) => (typeof d === 'string' ? 1 : d));
      const got = out[o.name]?.dims.map(Number) ?? [];
      if (want.length !== got.length || want.some((d, i) => d !== got[i])) {
        freeDevice();
        throw badPack(dir, `stage "${st}" output "${o.name}": graph produced shape ${fmtShape(got)} at batch 1, manifest says ${fmtShape(o.shape)} (${spec.files[precision]})`);
      }
    }
    freeDevice();
  }
}
