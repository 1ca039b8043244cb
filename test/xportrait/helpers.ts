// Shared helpers for the X-Portrait exporter tests: find a Python with torch, read raw tensors,
// compare. (The tiny pack they share is test/lcm/helpers.ts's.)
import { spawnSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const PY = process.env.XPL_PYTHON ?? '/usr/bin/python3';

export function pythonSkipReason(): string | false {
  if (!existsSync(PY)) return `${PY} not found (run scripts/ensure-python.sh)`;
  const r = spawnSync(PY, ['-c', 'import torch, onnx, numpy'], { encoding: 'utf8' });
  if (r.status !== 0) {
    return `${PY} cannot import torch/onnx/numpy (apt-get install python3-torch python3-onnx python3-numpy): ${r.stderr.trim().split('\n').pop()}`;
  }
  return false;
}

export interface RunResult { status: number | null; stdout: string; stderr: string }

export function runPy(args: string[], timeoutMs = 180_000, env: Record<string, string> = {}): RunResult {
  const r = spawnSync(PY, args, {
    cwd: ROOT, encoding: 'utf8', timeout: timeoutMs,
    env: { ...process.env, PYTHONPATH: ROOT, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2', ...env },
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export interface TensorFile { file: string; dtype: 'float32' | 'int64'; shape: number[] }

export function readTensor(dir: string, t: TensorFile): Float32Array | BigInt64Array {
  const buf = readFileSync(join(dir, t.file));
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  return t.dtype === 'int64' ? new BigInt64Array(ab) : new Float32Array(ab);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

// IEEE-754 half <-> single, for feeding/reading fp16 graphs
export function toHalf(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    let e = ((x >>> 23) & 0xff) - 127 + 15;
    let m = x & 0x7fffff;
    if (e >= 31) { out[i] = sign | 0x7c00; continue; }
    if (e <= 0) {
      if (e < -10) { out[i] = sign; continue; }
      m = (m | 0x800000) >> (1 - e);
      out[i] = sign | ((m + 0x1000) >> 13);
      continue;
    }
    const r = sign | (e << 10) | (m >> 13);
    out[i] = r + ((m & 0x1fff) > 0x1000 || ((m & 0x1fff) === 0x1000 && (r & 1)) ? 1 : 0);
  }
  return out;
}

export function fromHalf(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}
