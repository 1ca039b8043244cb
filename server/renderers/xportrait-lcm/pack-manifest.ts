/**
 * A pack's manifest.json: its types, parsing and structural checks, and the stages' I/O checked
 * against what the runtime feeds for the manifest's geometry (no ONNX yet: pack-graphs.ts checks
 * the graphs).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LCM_MAX_WINDOW } from '../../config.ts';
import { XplError } from '../../errors.ts';
import { lcmConfigFromManifest, SchedulerConfigError, type LcmConfig } from '../../schedulers/lcm.ts';

export const STAGE_NAMES = ['reference', 'control', 'denoise', 'denoise_window', 'vae_encode', 'vae_decode', 'taesd_decode'] as const;
export type StageName = (typeof STAGE_NAMES)[number];
const REQUIRED: StageName[] = ['reference', 'control', 'denoise', 'vae_encode'];

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

/**
 * Every problem with a pack is an XplError('bad_pack') whose message names the pack folder, the
 * stage/file/tensor at fault and what was expected, e.g.
 *   bad_pack: /p/tiny: stage "denoise" input "cache_in": manifest shape [batch,4,49152] ≠ graph [batch,4,1000]
 */
export function badPack(dir: string, msg: string, cause?: unknown): XplError {
  return new XplError('bad_pack', `${dir}: ${msg}`, { cause, details: { pack: dir } });
}

export const fmtShape = (s: ReadonlyArray<number | string>): string => `[${s.join(',')}]`;

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function parseTensorSpecs(dir: string, stage: string, kind: string, v: unknown): TensorSpec[] {
  if (!Array.isArray(v) || v.length === 0) throw badPack(dir, `manifest: stages.${stage}.${kind} must be a non-empty list`);
  return v.map((t, i) => {
    if (!isObj(t) || typeof t.name !== 'string' || typeof t.dtype !== 'string' || !Array.isArray(t.shape)) {
      throw badPack(dir, `manifest: stages.${stage}.${kind}[${i}] must be {name, dtype, shape}`);
    }
    for (const d of t.shape) {
      if (!(typeof d === 'string' || (Number.isInteger(d) && (d as number) > 0))) throw badPack(dir, `manifest: stages.${stage}.${kind}[${i}] (${t.name}) has a bad dim ${JSON.stringify(d)}`);
    }
    return { name: t.name, dtype: t.dtype, shape: t.shape as Array<number | string> };
  });
}

/** Reads manifest.json and checks its structure (no ONNX yet). */
export function readManifest(dirIn: string): { manifest: Manifest; geometry: PackGeometry; scheduler: LcmConfig } {
  const dir = resolve(dirIn);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw badPack(dir, 'pack folder not found');
  const mpath = join(dir, 'manifest.json');
  if (!existsSync(mpath)) throw badPack(dir, 'manifest.json missing');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(mpath, 'utf8'));
  } catch (err) {
    throw badPack(dir, `manifest.json is not valid JSON: ${(err as Error).message}`, err);
  }
  if (!isObj(raw)) throw badPack(dir, 'manifest.json must hold a JSON object');
  if (raw.format !== 'xportrait-pack') throw badPack(dir, `manifest: format must be "xportrait-pack", got ${JSON.stringify(raw.format)}`);
  if (raw.format_version !== 1) throw badPack(dir, `manifest: format_version ${JSON.stringify(raw.format_version)} not supported (this runtime reads 1)`);
  if (!isObj(raw.stages)) throw badPack(dir, 'manifest: stages missing');
  const stages: Partial<Record<StageName, StageSpec>> = {};
  for (const [name, s] of Object.entries(raw.stages)) {
    if (!(STAGE_NAMES as readonly string[]).includes(name)) throw badPack(dir, `manifest: unknown stage "${name}" (known: ${STAGE_NAMES.join(', ')})`);
    if (!isObj(s) || !isObj(s.files)) throw badPack(dir, `manifest: stages.${name}.files missing`);
    const files: Partial<Record<Precision, string>> = {};
    for (const [p, f] of Object.entries(s.files)) {
      if ((p === 'fp32' || p === 'fp16') && typeof f === 'string') files[p] = f;
    }
    stages[name as StageName] = { files, inputs: parseTensorSpecs(dir, name, 'inputs', s.inputs), outputs: parseTensorSpecs(dir, name, 'outputs', s.outputs) };
  }
  for (const r of REQUIRED) if (!stages[r]) throw badPack(dir, `manifest: required stage "${r}" missing`);
  if (!stages.vae_decode && !stages.taesd_decode) throw badPack(dir, 'manifest: required stage "vae_decode" (or "taesd_decode") missing');
  let scheduler: LcmConfig;
  try {
    scheduler = lcmConfigFromManifest(raw.scheduler);
  } catch (err) {
    if (err instanceof SchedulerConfigError) throw badPack(dir, `manifest: ${err.message}`, err);
    throw err;
  }
  const g = raw.geometry;
  if (!isObj(g)) throw badPack(dir, 'manifest: geometry missing');
  for (const k of ['image_size', 'latent_size', 'latent_channels']) {
    if (!Number.isInteger(g[k]) || (g[k] as number) <= 0) throw badPack(dir, `manifest: geometry.${k} must be a positive integer`);
  }
  const tc = raw.temporal_cache;
  if (!isObj(tc)) throw badPack(dir, 'manifest: temporal_cache missing');
  for (const k of ['sink_frames', 'ring_frames', 'slots', 'frame_payload']) {
    if (!Number.isInteger(tc[k]) || (tc[k] as number) < 0) throw badPack(dir, `manifest: temporal_cache.${k} must be a non-negative integer`);
  }
  if ((tc.sink_frames as number) + (tc.ring_frames as number) !== tc.slots) throw badPack(dir, `manifest: temporal_cache.slots ${tc.slots} ≠ sink_frames + ring_frames`);
  if ((tc.slots as number) + 1 > LCM_MAX_WINDOW) {
    throw badPack(dir, `manifest: temporal window of ${(tc.slots as number) + 1} positions (${tc.slots} cached frames + the current one) exceeds the ${LCM_MAX_WINDOW} the motion modules were trained on; re-export with sink + ring + 1 ≤ ${LCM_MAX_WINDOW}`);
  }
  const lay = raw.layouts;
  if (!isObj(lay)) throw badPack(dir, 'manifest: layouts missing');
  const widths: Record<string, number> = {};
  for (const k of ['ref_kv', 'ctrl_res', 'cache_frame']) {
    const l = lay[k];
    if (!Array.isArray(l) || l.length === 0) throw badPack(dir, `manifest: layouts.${k} missing`);
    let off = 0;
    for (const e of l) {
      if (!isObj(e) || e.offset !== off || !Number.isInteger(e.size) || !Array.isArray(e.shape) || (e.shape as number[]).reduce((a, b) => a * b, 1) !== e.size) {
        throw badPack(dir, `manifest: layouts.${k} entry ${JSON.stringify(isObj(e) ? e.name : e)} is not contiguous or its size ≠ product of its shape`);
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
  if (widths.cache_frame !== geometry.framePayload) throw badPack(dir, `manifest: layouts.cache_frame adds up to ${widths.cache_frame}, temporal_cache.frame_payload is ${geometry.framePayload}`);
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
        if (!t) throw badPack(dir, `manifest: stage "${name}" lacks ${kind === 'inputs' ? 'input' : 'output'} "${tn}"`);
        if (t.dtype !== dtype) throw badPack(dir, `manifest: stage "${name}" ${kind.slice(0, -1)} "${tn}" has dtype ${t.dtype}, the runtime needs ${dtype}`);
        const full = ['batch', ...shape];
        const lead = (d: number | string): boolean => (name === 'denoise_window' ? typeof d === 'number' : typeof d === 'string');
        const ok = t.shape.length === full.length && t.shape.every((d, i) => (i === 0 ? lead(d) : d === full[i]));
        if (!ok) throw badPack(dir, `manifest: stage "${name}" ${kind.slice(0, -1)} "${tn}" has shape ${fmtShape(t.shape)}, the geometry implies ${fmtShape(full)}`);
      }
    }
  }
}
