/**
 * X-Portrait model packs: manifest parsing, validation against the ONNX graphs, onnxruntime
 * sessions on the chosen execution provider (with a logged CPU fallback), warm-up, and a
 * per-thread cache of loaded packs (keyed by folder + EP + precision, reference-counted).
 *
 * Every problem with a pack is an XplError('bad_pack') whose message names the pack folder, the
 * stage/file/tensor at fault and what was expected, e.g.
 *   bad_pack: /p/tiny: stage "denoise" input "cache_in": manifest shape [batch,4,49152] ≠ graph [batch,4,1000]
 */
import { existsSync, readFileSync, realpathSync, statSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { LCM_MAX_WINDOW } from '../../config.ts';
import { XplError } from '../../errors.ts';
import { lcmConfigFromManifest, SchedulerConfigError, type LcmConfig } from '../../schedulers/lcm.ts';
import { GlueSessions } from './glue.ts';

// ORT's process-wide logger warns, for every WebGPU session, that shape ops were placed on the CPU
// (ORT does that on purpose); session-level severity does not reach that message. Failures still
// surface as exceptions.
ort.env.logLevel = 'error';

export const STAGE_NAMES = ['reference', 'control', 'denoise', 'denoise_window', 'vae_encode', 'vae_decode', 'taesd_decode'] as const;
export type StageName = (typeof STAGE_NAMES)[number];
const REQUIRED: StageName[] = ['reference', 'control', 'denoise', 'vae_encode'];

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';
export type Precision = 'fp32' | 'fp16';

export interface TensorSpec {
  name: string;
  dtype: string;
  shape: Array<number | string>;
}

export interface StageSpec {
  files: Partial<Record<Precision, string>>;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface LayoutEntry {
  name: string;
  shape: number[];
  offset: number;
  size: number;
}

export interface Manifest {
  format: string;
  format_version: number;
  name: string;
  model: string;
  geometry: { image_size: number; latent_size: number; latent_channels: number; [k: string]: unknown };
  stages: Partial<Record<StageName, StageSpec>>;
  scheduler: Record<string, unknown>;
  temporal_cache: { sink_frames: number; ring_frames: number; slots: number; frame_payload: number; bytes_per_step_fp32?: number; [k: string]: unknown };
  layouts: { ref_kv: LayoutEntry[]; ctrl_res: LayoutEntry[]; cache_frame: LayoutEntry[] };
  provenance?: unknown;
}

/** Geometry the runtime needs, derived from (and checked against) the manifest. */
export interface PackGeometry {
  imageSize: number;
  latentSize: number;
  latentChannels: number;
  /** Floats per batch item. */
  latentLen: number;
  imageLen: number;
  refKvLen: number;
  ctrlResLen: number;
  slots: number;
  sink: number;
  ring: number;
  framePayload: number;
}

export interface LoadedPack {
  readonly dir: string;
  readonly manifest: Manifest;
  readonly geometry: PackGeometry;
  readonly scheduler: LcmConfig;
  readonly sessions: Partial<Record<StageName, ort.InferenceSession>>;
  /** The EP actually used, and the one asked for (differs after a fallback; `fallbackReason` says why). */
  readonly ep: ExecutionProvider;
  readonly requestedEp: ExecutionProvider;
  readonly fallbackReason?: string;
  readonly precision: Precision;
  readonly decoder: 'vae_decode' | 'taesd_decode';
  /** Keeps cache_out (and the reference K/V) on the device between calls: only with WebGPU. */
  readonly deviceResident: boolean;
  /** The device glue graphs (upload, download, concat, split, renoise) when deviceResident. */
  readonly glue: GlueSessions | null;
  /** The denoise graph takes `uncond` (packs from this exporter): classifier-free guidance can run. */
  readonly uncond: boolean;
  /** Frames of the pack's bidirectional warm-up window (`denoise_window`, exporter --warmup); 0 = none. */
  readonly windowFrames: number;
  readonly loadMs: number;
  readonly warmupMs: number;
  /** Bytes of the graphs (+ external data) this pack loaded, and RSS growth while loading. */
  readonly fileBytes: number;
  readonly rssDeltaBytes: number;
}

export interface LoadOptions {
  ep?: ExecutionProvider;
  precision?: Precision;
  /** Which decoder to use; default TAESD when the pack has it. */
  decoder?: 'vae' | 'taesd';
  /** Intra-op threads per ORT session (default 1: sessions are per loop worker). */
  threads?: number;
  warmup?: boolean;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
}

function bad(dir: string, msg: string, cause?: unknown): XplError {
  return new XplError('bad_pack', `${dir}: ${msg}`, { cause, details: { pack: dir } });
}

const fmtShape = (s: ReadonlyArray<number | string>): string => `[${s.join(',')}]`;

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function parseTensorSpecs(dir: string, stage: string, kind: string, v: unknown): TensorSpec[] {
  if (!Array.isArray(v) || v.length === 0) throw bad(dir, `manifest: stages.${stage}.${kind} must be a non-empty list`);
  return v.map((t, i) => {
    if (!isObj(t) || typeof t.name !== 'string' || typeof t.dtype !== 'string' || !Array.isArray(t.shape)) {
      throw bad(dir, `manifest: stages.${stage}.${kind}[${i}] must be {name, dtype, shape}`);
    }
    for (const d of t.shape) {
      if (!(typeof d === 'string' || (Number.isInteger(d) && (d as number) > 0))) throw bad(dir, `manifest: stages.${stage}.${kind}[${i}] (${t.name}) has a bad dim ${JSON.stringify(d)}`);
    }
    return { name: t.name, dtype: t.dtype, shape: t.shape as Array<number | string> };
  });
}

/** Reads manifest.json and checks its structure (no ONNX yet). */
export function readManifest(dirIn: string): { manifest: Manifest; geometry: PackGeometry; scheduler: LcmConfig } {
  const dir = resolve(dirIn);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw bad(dir, 'pack folder not found');
  const mpath = join(dir, 'manifest.json');
  if (!existsSync(mpath)) throw bad(dir, 'manifest.json missing');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(mpath, 'utf8'));
  } catch (err) {
    throw bad(dir, `manifest.json is not valid JSON: ${(err as Error).message}`, err);
  }
  if (!isObj(raw)) throw bad(dir, 'manifest.json must hold a JSON object');
  if (raw.format !== 'xportrait-pack') throw bad(dir, `manifest: format must be "xportrait-pack", got ${JSON.stringify(raw.format)}`);
  if (raw.format_version !== 1) throw bad(dir, `manifest: format_version ${JSON.stringify(raw.format_version)} not supported (this runtime reads 1)`);
  if (!isObj(raw.stages)) throw bad(dir, 'manifest: stages missing');
  const stages: Partial<Record<StageName, StageSpec>> = {};
  for (const [name, s] of Object.entries(raw.stages)) {
    if (!(STAGE_NAMES as readonly string[]).includes(name)) throw bad(dir, `manifest: unknown stage "${name}" (known: ${STAGE_NAMES.join(', ')})`);
    if (!isObj(s) || !isObj(s.files)) throw bad(dir, `manifest: stages.${name}.files missing`);
    const files: Partial<Record<Precision, string>> = {};
    for (const [p, f] of Object.entries(s.files)) {
      if ((p === 'fp32' || p === 'fp16') && typeof f === 'string') files[p] = f;
    }
    stages[name as StageName] = { files, inputs: parseTensorSpecs(dir, name, 'inputs', s.inputs), outputs: parseTensorSpecs(dir, name, 'outputs', s.outputs) };
  }
  for (const r of REQUIRED) if (!stages[r]) throw bad(dir, `manifest: required stage "${r}" missing`);
  if (!stages.vae_decode && !stages.taesd_decode) throw bad(dir, 'manifest: required stage "vae_decode" (or "taesd_decode") missing');
  let scheduler: LcmConfig;
  try {
    scheduler = lcmConfigFromManifest(raw.scheduler);
  } catch (err) {
    if (err instanceof SchedulerConfigError) throw bad(dir, `manifest: ${err.message}`, err);
    throw err;
  }
  const g = raw.geometry;
  if (!isObj(g)) throw bad(dir, 'manifest: geometry missing');
  for (const k of ['image_size', 'latent_size', 'latent_channels']) {
    if (!Number.isInteger(g[k]) || (g[k] as number) <= 0) throw bad(dir, `manifest: geometry.${k} must be a positive integer`);
  }
  const tc = raw.temporal_cache;
  if (!isObj(tc)) throw bad(dir, 'manifest: temporal_cache missing');
  for (const k of ['sink_frames', 'ring_frames', 'slots', 'frame_payload']) {
    if (!Number.isInteger(tc[k]) || (tc[k] as number) < 0) throw bad(dir, `manifest: temporal_cache.${k} must be a non-negative integer`);
  }
  if ((tc.sink_frames as number) + (tc.ring_frames as number) !== tc.slots) throw bad(dir, `manifest: temporal_cache.slots ${tc.slots} ≠ sink_frames + ring_frames`);
  if ((tc.slots as number) + 1 > LCM_MAX_WINDOW) {
    throw bad(dir, `manifest: temporal window of ${(tc.slots as number) + 1} positions (${tc.slots} cached frames + the current one) exceeds the ${LCM_MAX_WINDOW} the motion modules were trained on; re-export with sink + ring + 1 ≤ ${LCM_MAX_WINDOW}`);
  }
  const lay = raw.layouts;
  if (!isObj(lay)) throw bad(dir, 'manifest: layouts missing');
  const widths: Record<string, number> = {};
  for (const k of ['ref_kv', 'ctrl_res', 'cache_frame']) {
    const l = lay[k];
    if (!Array.isArray(l) || l.length === 0) throw bad(dir, `manifest: layouts.${k} missing`);
    let off = 0;
    for (const e of l) {
      if (!isObj(e) || e.offset !== off || !Number.isInteger(e.size) || !Array.isArray(e.shape) || (e.shape as number[]).reduce((a, b) => a * b, 1) !== e.size) {
        throw bad(dir, `manifest: layouts.${k} entry ${JSON.stringify(isObj(e) ? e.name : e)} is not contiguous or its size ≠ product of its shape`);
      }
      off += e.size as number;
    }
    widths[k] = off;
  }
  const manifest = raw as unknown as Manifest;
  const geometry: PackGeometry = {
    imageSize: g.image_size as number,
    latentSize: g.latent_size as number,
    latentChannels: g.latent_channels as number,
    latentLen: (g.latent_channels as number) * (g.latent_size as number) ** 2,
    imageLen: 3 * (g.image_size as number) ** 2,
    refKvLen: widths.ref_kv,
    ctrlResLen: widths.ctrl_res,
    slots: tc.slots as number,
    sink: tc.sink_frames as number,
    ring: tc.ring_frames as number,
    framePayload: tc.frame_payload as number,
  };
  if (widths.cache_frame !== geometry.framePayload) throw bad(dir, `manifest: layouts.cache_frame adds up to ${widths.cache_frame}, temporal_cache.frame_payload is ${geometry.framePayload}`);
  checkStageShapes(dir, stages, geometry);
  return { manifest, geometry, scheduler };
}

/** The I/O every stage must have (names, dtypes, per-item shapes from the geometry). */
function expectedIo(g: PackGeometry): Record<StageName, { inputs: Record<string, [string, number[]]>; outputs: Record<string, [string, number[]]> }> {
  const L = [g.latentChannels, g.latentSize, g.latentSize];
  const I = [3, g.imageSize, g.imageSize];
  return {
    reference: { inputs: { ref_latent: ['float32', L], timestep: ['int64', []] }, outputs: { ref_kv: ['float32', [g.refKvLen]] } },
    control: { inputs: { latent: ['float32', L], timestep: ['int64', []], driving: ['float32', I], local: ['float32', I] }, outputs: { ctrl_res: ['float32', [g.ctrlResLen]] } },
    denoise: {
      inputs: { latent: ['float32', L], timestep: ['int64', []], ref_kv: ['float32', [g.refKvLen]], ctrl_res: ['float32', [g.ctrlResLen]], cache_in: ['float32', [g.slots, g.framePayload]], cache_mask: ['float32', [g.slots]] },
      outputs: { eps: ['float32', L], denoised: ['float32', L], cache_out: ['float32', [g.slots, g.framePayload]], cache_mask_out: ['float32', [g.slots]] },
    },
    // batch = the window's frames (a fixed number); the cache comes out for one stream
    denoise_window: {
      inputs: { latent: ['float32', L], timestep: ['int64', []], ref_kv: ['float32', [g.refKvLen]], ctrl_res: ['float32', [g.ctrlResLen]] },
      outputs: { eps: ['float32', L], denoised: ['float32', L], cache_out: ['float32', [g.slots, g.framePayload]], cache_mask_out: ['float32', [g.slots]] },
    },
    vae_encode: { inputs: { image: ['float32', I] }, outputs: { latent: ['float32', L] } },
    vae_decode: { inputs: { latent: ['float32', L] }, outputs: { image: ['float32', I] } },
    taesd_decode: { inputs: { latent: ['float32', L] }, outputs: { image: ['float32', I] } },
  };
}

/** Manifest I/O vs what the runtime feeds (so a pack for another geometry fails here, not mid-stream). */
function checkStageShapes(dir: string, stages: Partial<Record<StageName, StageSpec>>, g: PackGeometry): void {
  const want = expectedIo(g);
  for (const [name, spec] of Object.entries(stages) as Array<[StageName, StageSpec]>) {
    for (const kind of ['inputs', 'outputs'] as const) {
      const w = want[name][kind];
      for (const [tn, [dtype, shape]] of Object.entries(w)) {
        const t = spec[kind].find((x) => x.name === tn);
        if (!t) throw bad(dir, `manifest: stage "${name}" lacks ${kind === 'inputs' ? 'input' : 'output'} "${tn}"`);
        if (t.dtype !== dtype) throw bad(dir, `manifest: stage "${name}" ${kind.slice(0, -1)} "${tn}" has dtype ${t.dtype}, the runtime needs ${dtype}`);
        const full = ['batch', ...shape];
        const lead = (d: number | string): boolean => (name === 'denoise_window' ? typeof d === 'number' : typeof d === 'string');
        const ok = t.shape.length === full.length && t.shape.every((d, i) => (i === 0 ? lead(d) : d === full[i]));
        if (!ok) throw bad(dir, `manifest: stage "${name}" ${kind.slice(0, -1)} "${tn}" has shape ${fmtShape(t.shape)}, the geometry implies ${fmtShape(full)}`);
      }
    }
  }
}

const ORT_TYPE_FP16: Record<string, string> = { float32: 'float16' };

/** Manifest I/O vs the graph's declared I/O (names, order, dtype, shape). */
export function checkGraphIo(dir: string, stage: StageName, spec: StageSpec, session: ort.InferenceSession, precision: Precision): void {
  const file = spec.files[precision]!;
  for (const kind of ['inputs', 'outputs'] as const) {
    const names = kind === 'inputs' ? session.inputNames : session.outputNames;
    const meta = kind === 'inputs' ? session.inputMetadata : session.outputMetadata;
    const wantNames = spec[kind].map((t) => t.name);
    for (const n of wantNames) if (!names.includes(n)) throw bad(dir, `stage "${stage}" (${file}): graph has no ${kind.slice(0, -1)} "${n}" (graph ${kind}: ${names.join(', ')})`);
    for (const n of names) if (!wantNames.includes(n)) throw bad(dir, `stage "${stage}" (${file}): graph ${kind.slice(0, -1)} "${n}" is not in the manifest`);
    for (const t of spec[kind]) {
      const m = meta[names.indexOf(t.name)];
      if (!m || !m.isTensor) throw bad(dir, `stage "${stage}" (${file}): ${t.name} is not a tensor`);
      const wantType = precision === 'fp16' ? ORT_TYPE_FP16[t.dtype] ?? t.dtype : t.dtype;
      if (m.type !== wantType) throw bad(dir, `stage "${stage}" ${kind.slice(0, -1)} "${t.name}": manifest dtype ${wantType} ≠ graph ${m.type} (${file})`);
      // A symbolic graph dim where the manifest has a number (the exporter leaves some output
      // dims symbolic, e.g. "Concatref_kv_dim_1") cannot be checked here: the warm-up run checks
      // the actual output shape. A numeric graph dim must equal the manifest's.
      const gs = m.shape;
      const same = gs.length === t.shape.length && gs.every((d, i) => (typeof t.shape[i] === 'string' ? typeof d === 'string' || d === -1 : typeof d === 'string' || d === -1 || d === t.shape[i]));
      if (!same) throw bad(dir, `stage "${stage}" ${kind.slice(0, -1)} "${t.name}": manifest shape ${fmtShape(t.shape)} ≠ graph ${fmtShape(gs)} (${file})`);
    }
  }
}

function epOptions(ep: ExecutionProvider, threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [ep === 'cpu' ? 'cpu' : ep],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
}

async function createSession(dir: string, stage: StageName, file: string, ep: ExecutionProvider, threads: number, deviceOutputs: string[]): Promise<ort.InferenceSession> {
  const opts = epOptions(ep, threads);
  if (deviceOutputs.length) opts.preferredOutputLocation = Object.fromEntries(deviceOutputs.map((n) => [n, 'gpu-buffer' as const]));
  try {
    return await ort.InferenceSession.create(join(dir, file), opts);
  } catch (err) {
    const e = new Error(`stage "${stage}": onnxruntime could not load ${file} on ${ep}: ${(err as Error).message}`, { cause: err });
    (e as Error & { epFailure?: boolean }).epFailure = ep !== 'cpu';
    throw e;
  }
}

function fileSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
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

/**
 * Outputs kept on the device with WebGPU: the temporal cache, the denoised latent (re-noised and
 * decoded on the device), the reference K/V, the control residuals (consumed by denoise).
 */
const DEVICE_OUTPUTS: Partial<Record<StageName, string[]>> = { denoise: ['denoised', 'eps', 'cache_out', 'cache_mask_out'], denoise_window: ['denoised', 'eps', 'cache_out', 'cache_mask_out'], reference: ['ref_kv'], control: ['ctrl_res'] };

/** Loads and validates a pack and creates its sessions. Prefer `acquirePack` (shared, ref-counted). */
export async function loadPack(dirIn: string, opts: LoadOptions = {}): Promise<LoadedPack> {
  const t0 = performance.now();
  const rss0 = process.memoryUsage().rss;
  const dir = resolve(dirIn);
  const log = opts.log ?? (() => {});
  const { manifest, geometry, scheduler } = readManifest(dir);
  const precision = opts.precision ?? 'fp32';
  const decoder: 'vae_decode' | 'taesd_decode' = opts.decoder === 'vae' ? 'vae_decode' : opts.decoder === 'taesd' ? 'taesd_decode' : manifest.stages.taesd_decode ? 'taesd_decode' : 'vae_decode';
  if (!manifest.stages[decoder]) throw bad(dir, `manifest: decoder stage "${decoder}" requested but not in the pack`);
  const wanted: StageName[] = ['reference', 'control', 'denoise', 'vae_encode', decoder, ...(manifest.stages.denoise_window ? (['denoise_window'] as const) : [])];
  let fileBytes = 0;
  for (const st of wanted) {
    const spec = manifest.stages[st]!;
    const file = spec.files[precision];
    if (!file) throw bad(dir, `manifest: stage "${st}" has no ${precision} file`);
    const p = join(dir, file);
    if (!existsSync(p)) throw bad(dir, `stage "${st}": file ${file} missing`);
    fileBytes += fileSize(p);
    // external weights (big graphs): NAME.onnx.data next to it
    for (const f of readdirSync(dir)) if (f.startsWith(file) && f !== file) fileBytes += fileSize(join(dir, f));
  }
  const requestedEp = opts.ep ?? 'cpu';
  let ep = requestedEp;
  let fallbackReason: string | undefined;
  const threads = opts.threads ?? 1;
  const sessions: Partial<Record<StageName, ort.InferenceSession>> = {};
  let glue: GlueSessions | null = null;
  const open = async (useEp: ExecutionProvider): Promise<void> => {
    for (const st of wanted) {
      const spec = manifest.stages[st]!;
      const dev = useEp === 'webgpu' ? DEVICE_OUTPUTS[st] ?? [] : [];
      sessions[st] = await createSession(dir, st, spec.files[precision]!, useEp, threads, dev);
      checkGraphIo(dir, st, spec, sessions[st]!, precision);
    }
    if (useEp === 'webgpu') {
      glue = new GlueSessions('webgpu', precision === 'fp16' ? 'float16' : 'float32');
      try {
        await glue.selfTest();
      } catch (err) {
        const e = new Error(`device glue graphs failed on webgpu: ${(err as Error).message}`, { cause: err });
        (e as Error & { epFailure?: boolean }).epFailure = true;
        throw e;
      }
    }
  };
  const release = async (): Promise<void> => {
    await glue?.release();
    glue = null;
    for (const k of Object.keys(sessions) as StageName[]) {
      await sessions[k]?.release().catch(() => {});
      delete sessions[k];
    }
  };
  try {
    await open(ep);
  } catch (err) {
    await release();
    if (err instanceof XplError) throw err;
    if ((err as { epFailure?: boolean }).epFailure) {
      fallbackReason = (err as Error).message;
      log(`xportrait-lcm: ${requestedEp} execution provider unavailable, falling back to cpu`, { reason: fallbackReason });
      ep = 'cpu';
      try {
        await open('cpu');
      } catch (err2) {
        await release();
        if (err2 instanceof XplError) throw err2;
        throw bad(dir, (err2 as Error).message, err2);
      }
    } else throw bad(dir, (err as Error).message, err);
  }
  const loadMs = performance.now() - t0;
  let warmupMs = 0;
  if (opts.warmup !== false) {
    const w0 = performance.now();
    try {
      for (const st of wanted) {
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
            throw bad(dir, `stage "${st}" output "${o.name}": graph produced shape ${fmtShape(got)} at batch 1, manifest says ${fmtShape(o.shape)} (${spec.files[precision]})`);
          }
        }
        freeDevice();
      }
    } catch (err) {
      if (err instanceof XplError) {
        await release();
        throw err;
      }
      await release();
      throw bad(dir, `warm-up run failed: ${(err as Error).message}`, err);
    }
    warmupMs = performance.now() - w0;
  }
  loadCount++;
  return {
    dir,
    manifest,
    geometry,
    scheduler,
    sessions,
    ep,
    requestedEp,
    fallbackReason,
    precision,
    decoder,
    deviceResident: ep === 'webgpu',
    glue,
    uncond: !!manifest.stages.denoise?.inputs.some((t) => t.name === 'uncond'),
    windowFrames: manifest.stages.denoise_window ? Number(manifest.temporal_cache.window_frames) : 0,
    loadMs,
    warmupMs,
    fileBytes,
    rssDeltaBytes: Math.max(0, process.memoryUsage().rss - rss0),
  };
}

let loadCount = 0;

/** Packs this thread has loaded successfully so far (the shared pack worker reports it as a metric). */
export function packLoadCount(): number {
  return loadCount;
}

export async function disposePack(p: LoadedPack): Promise<void> {
  await p.glue?.release();
  for (const s of Object.values(p.sessions)) await s?.release().catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// Shared packs. ORT sessions cannot cross worker threads, so this cache shares within one thread:
// in the server that thread is the shared pack worker (pack-worker.ts), which serves every
// session's stream; in tests and the benchmark it is their own (see docs/MODELS.md).

interface Entry {
  key: string;
  refs: number;
  pending: Promise<LoadedPack>;
}

const PACKS = new Map<string, Entry>();
const KEYS = new WeakMap<LoadedPack, string>();

export function packKey(dir: string, opts: LoadOptions): string {
  let real = resolve(dir);
  try {
    real = realpathSync(real);
  } catch {
    /* missing folder: readManifest reports it */
  }
  return `${real}|${opts.ep ?? 'cpu'}|${opts.precision ?? 'fp32'}|${opts.decoder ?? 'auto'}`;
}

/** A loaded pack shared by every caller in this thread with the same folder + EP + precision + decoder. */
export async function acquirePack(dir: string, opts: LoadOptions = {}): Promise<LoadedPack> {
  const key = packKey(dir, opts);
  let e = PACKS.get(key);
  if (!e) {
    const pending = loadPack(dir, opts);
    e = { key, refs: 0, pending };
    PACKS.set(key, e);
    pending.catch(() => {
      if (PACKS.get(key) === e) PACKS.delete(key);
    });
  }
  e.refs++;
  try {
    const p = await e.pending;
    KEYS.set(p, key);
    return p;
  } catch (err) {
    e.refs--;
    throw err;
  }
}

/** Drops one reference taken by acquirePack; the last one releases the ORT sessions. */
export async function releasePack(p: LoadedPack): Promise<void> {
  const key = KEYS.get(p);
  const e = key ? PACKS.get(key) : undefined;
  if (!key || !e) return;
  e.refs--;
  if (e.refs <= 0) {
    PACKS.delete(key);
    await disposePack(await e.pending);
  }
}

/** For tests and stats: loaded packs in this thread and their reference counts. */
export function loadedPacks(): Array<{ key: string; refs: number }> {
  return [...PACKS.values()].map((e) => ({ key: e.key, refs: e.refs }));
}
