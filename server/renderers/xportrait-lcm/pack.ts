/**
 * Loading an X-Portrait model pack: its manifest (pack-manifest.ts) validated against the ONNX
 * graphs (pack-graphs.ts), onnxruntime sessions on the chosen execution provider (pack-sessions.ts)
 * with a logged CPU fallback, warm-up. A per-thread cache of loaded packs (keyed by folder + EP +
 * precision, reference-counted): pack-cache.ts.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { XplError } from '../../errors.ts';
import type { LcmConfig } from '../../schedulers/lcm.ts';
import { GlueSessions } from './glue.ts';
import { checkGraphIo, warmUp } from './pack-graphs.ts';
import { badPack, readManifest, type Manifest, type PackGeometry, type Precision, type StageName } from './pack-manifest.ts';
import { createSession, type ExecutionProvider } from './pack-sessions.ts';

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

function fileSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}

/** Loads and validates a pack and creates its sessions. Prefer `acquirePack` (pack-cache.ts: shared, ref-counted). */
export async function loadPack(dirIn: string, opts: LoadOptions = {}): Promise<LoadedPack> {
  const t0 = performance.now();
  const rss0 = process.memoryUsage().rss;
  const dir = resolve(dirIn);
  const log = opts.log ?? (() => {});
  const { manifest, geometry, scheduler } = readManifest(dir);
  const precision = opts.precision ?? 'fp32';
  const decoder: 'vae_decode' | 'taesd_decode' = opts.decoder === 'vae' ? 'vae_decode' : opts.decoder === 'taesd' ? 'taesd_decode' : manifest.stages.taesd_decode ? 'taesd_decode' : 'vae_decode';
  if (!manifest.stages[decoder]) throw badPack(dir, `manifest: decoder stage "${decoder}" requested but not in the pack`);
  const wanted: StageName[] = ['reference', 'control', 'denoise', 'vae_encode', decoder, ...(manifest.stages.denoise_window ? (['denoise_window'] as const) : [])];
  let fileBytes = 0;
  for (const st of wanted) {
    const spec = manifest.stages[st]!;
    const file = spec.files[precision];
    if (!file) throw badPack(dir, `manifest: stage "${st}" has no ${precision} file`);
    const p = join(dir, file);
    if (!existsSync(p)) throw badPack(dir, `stage "${st}": file ${file} missing`);
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
      sessions[st] = await createSession(dir, st, spec.files[precision]!, useEp, threads);
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
        throw badPack(dir, (err2 as Error).message, err2);
      }
    } else throw badPack(dir, (err as Error).message, err);
  }
  const loadMs = performance.now() - t0;
  let warmupMs = 0;
  if (opts.warmup !== false) {
    const w0 = performance.now();
    try {
      await warmUp(dir, manifest, wanted, sessions, precision);
    } catch (err) {
      if (err instanceof XplError) {
        await release();
        throw err;
      }
      await release();
      throw badPack(dir, `warm-up run failed: ${(err as Error).message}`, err);
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
