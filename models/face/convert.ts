/**
 * Converts the face models shipped by @vladmandic/human (TFJS graph models) to ONNX files in the
 * model cache (default `<repo>/.cache/models/`, or `$XPL_MODEL_CACHE`).
 *
 * Idempotent: each `<name>.onnx` has a sidecar `<name>.onnx.json` holding a hash of the source
 * (model.json + weight shards) and of this converter's own code; a model whose sidecar matches is
 * skipped. Files are written to a temporary name and renamed, so a crash never leaves a half file.
 *
 *   tsx models/face/convert.ts [--force] [--quiet] [--out DIR] [name...]
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeModel } from './onnx-proto.ts';
import { tfGraphToOnnx } from './tf2onnx.ts';
import { loadTfGraphModel } from './tfjs-graph.ts';

export const FACE_MODELS = ['blazeface', 'facemesh', 'iris', 'faceres'] as const;
export type FaceModelName = (typeof FACE_MODELS)[number];

export const OPSET = 17;
const CONVERTER_VERSION = '1';
const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(HERE, '..', '..');

export function modelCacheDir(): string {
  return process.env.XPL_MODEL_CACHE ? resolve(process.env.XPL_MODEL_CACHE) : join(REPO_ROOT, '.cache', 'models');
}

/** Folder of the TFJS models inside @vladmandic/human. */
export function humanModelsDir(): string {
  const req = createRequire(import.meta.url);
  try {
    return join(dirname(req.resolve('@vladmandic/human')), '..', 'models');
  } catch {
    return join(REPO_ROOT, 'node_modules', '@vladmandic', 'human', 'models');
  }
}

export function onnxPath(name: FaceModelName, cacheDir = modelCacheDir()): string {
  return join(cacheDir, `${name}.onnx`);
}

export interface ConvertedModel {
  name: FaceModelName;
  path: string;
  skipped: boolean;
  ms: number;
  inputs: Array<{ name: string; shape: Array<number | string> }>;
  outputs: string[];
}

export interface ConvertOptions {
  names?: readonly FaceModelName[];
  cacheDir?: string;
  sourceDir?: string;
  force?: boolean;
  log?: (line: string) => void;
}

function converterHash(): string {
  const h = createHash('sha256');
  h.update(CONVERTER_VERSION);
  for (const f of ['convert.ts', 'tf2onnx.ts', 'tfjs-graph.ts', 'onnx-proto.ts']) {
    try {
      h.update(readFileSync(join(HERE, f)));
    } catch {
      /* bundled: the version string alone */
    }
  }
  return h.digest('hex').slice(0, 16);
}

function sourceHash(modelJsonPath: string): string {
  const h = createHash('sha256');
  const json = readFileSync(modelJsonPath);
  h.update(json);
  const parsed = JSON.parse(json.toString('utf8'));
  for (const g of parsed.weightsManifest ?? []) for (const p of g.paths) h.update(readFileSync(join(dirname(modelJsonPath), p)));
  return h.digest('hex');
}

/** Converts (or skips, when up to date) the requested models. */
export async function convertFaceModels(opts: ConvertOptions = {}): Promise<ConvertedModel[]> {
  const names = opts.names ?? FACE_MODELS;
  const cacheDir = opts.cacheDir ?? modelCacheDir();
  const srcDir = opts.sourceDir ?? humanModelsDir();
  const log = opts.log ?? (() => {});
  mkdirSync(cacheDir, { recursive: true });
  const conv = converterHash();
  const results: ConvertedModel[] = [];
  for (const [k, name] of names.entries()) {
    const t0 = performance.now();
    const src = join(srcDir, `${name}.json`);
    if (!existsSync(src)) throw new Error(`face model source not found: ${src} (is @vladmandic/human installed?)`);
    const out = onnxPath(name, cacheDir);
    const sidecar = `${out}.json`;
    const srcHash = sourceHash(src);
    if (!opts.force && existsSync(out) && existsSync(sidecar)) {
      try {
        const meta = JSON.parse(readFileSync(sidecar, 'utf8'));
        if (meta.sourceHash === srcHash && meta.converterHash === conv) {
          log(`[${k + 1}/${names.length}] ${name}: up to date`);
          results.push({ name, path: out, skipped: true, ms: performance.now() - t0, inputs: meta.inputs, outputs: meta.outputs });
          continue;
        }
      } catch {
        /* unreadable sidecar: convert again */
      }
    }
    log(`[${k + 1}/${names.length}] ${name}: reading ${src}`);
    const model = loadTfGraphModel(src);
    log(`[${k + 1}/${names.length}] ${name}: converting ${model.nodes.length} TF nodes, ${model.weights.size} weights`);
    const res = tfGraphToOnnx(model, name);
    const bytes = encodeModel(res.graph, {
      opset: OPSET,
      producer: 'xportrait-live models/face/convert.ts',
      producerVersion: CONVERTER_VERSION,
      metadata: { source: `@vladmandic/human/models/${name}.json`, sourceHash: srcHash },
    });
    const tmp = `${out}.tmp-${process.pid}`;
    writeFileSync(tmp, bytes);
    renameSync(tmp, out);
    const meta = {
      name,
      sourceHash: srcHash,
      converterHash: conv,
      opset: OPSET,
      inputs: res.inputs,
      outputs: res.outputs,
      onnxOps: res.opCounts,
      bytes: bytes.byteLength,
      convertedAt: new Date().toISOString(),
    };
    writeFileSync(`${sidecar}.tmp-${process.pid}`, JSON.stringify(meta, null, 2));
    renameSync(`${sidecar}.tmp-${process.pid}`, sidecar);
    const ms = performance.now() - t0;
    log(`[${k + 1}/${names.length}] ${name}: wrote ${out} (${(bytes.byteLength / 1e6).toFixed(2)} MB, ${res.graph.node.length} ONNX nodes) in ${ms.toFixed(0)} ms`);
    results.push({ name, path: out, skipped: false, ms, inputs: res.inputs, outputs: res.outputs });
  }
  return results;
}

let ensured: Promise<ConvertedModel[]> | null = null;
/** Converts lazily once per process (used by the runtime at first start). */
export function ensureFaceModels(log?: (line: string) => void): Promise<ConvertedModel[]> {
  ensured ??= convertFaceModels({ log }).catch((e) => {
    ensured = null;
    throw e;
  });
  return ensured;
}

const isMain = (() => {
  try {
    return process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();

if (isMain) {
  const args = process.argv.slice(2);
  const force = args.includes('--force');
  const quiet = args.includes('--quiet');
  const outIdx = args.indexOf('--out');
  const cacheDir = outIdx >= 0 ? args[outIdx + 1] : undefined;
  const names = args.filter((a, i) => !a.startsWith('--') && (outIdx < 0 || i !== outIdx + 1)) as FaceModelName[];
  for (const n of names) if (!(FACE_MODELS as readonly string[]).includes(n)) {
    console.error(`unknown model ${n}; known: ${FACE_MODELS.join(', ')}`);
    process.exit(2);
  }
  const t0 = performance.now();
  convertFaceModels({ names: names.length ? names : undefined, cacheDir, force, log: quiet ? undefined : (l) => console.log(l) })
    .then((r) => {
      if (!quiet) console.log(`face models ready in ${cacheDir ?? modelCacheDir()} (${r.filter((x) => !x.skipped).length} converted, ${r.filter((x) => x.skipped).length} up to date) in ${(performance.now() - t0).toFixed(0)} ms`);
    })
    .catch((e) => {
      console.error(`face model conversion failed: ${e instanceof Error ? e.message : e}`);
      process.exit(1);
    });
}
