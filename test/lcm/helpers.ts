// Shared set-up for the xportrait-lcm tests: one tiny pack per exporter version, built once into
// the OS temp dir (a lock folder keeps parallel test files from exporting it twice), plus
// corrupted copies of it.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PY, ROOT, pythonSkipReason, runPy } from '../xportrait/helpers.ts';

export { maxAbsDiff, PY } from '../xportrait/helpers.ts';

export { pythonSkipReason, runPy, ROOT };

/** Why the torch-engine tests cannot run here (they also need msgpack), or false. */
export function torchSkipReason(): string | false {
  const base = pythonSkipReason();
  if (base) return base;
  const r = runPy(['-c', 'import msgpack'], 30_000);
  return r.status === 0 ? false : `${PY} cannot import msgpack (apt-get install python3-msgpack)`;
}

function exporterHash(): string {
  const h = createHash('sha256');
  const dir = join(ROOT, 'models', 'xportrait');
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.py')).sort()) h.update(f).update(readFileSync(join(dir, f)));
  return h.digest('hex').slice(0, 12);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The tiny pack (seed 1, with a 3-frame warm-up window and test vectors); exported on first use, reused by later test files. */
export async function tinyPack(): Promise<string> {
  const dir = join(tmpdir(), `xpl-lcm-tiny-${exporterHash()}`);
  const lock = `${dir}.lock`;
  const t0 = Date.now();
  for (;;) {
    if (existsSync(join(dir, 'manifest.json'))) return dir;
    try {
      mkdirSync(lock);
    } catch {
      if (Date.now() - t0 > 660_000) throw new Error(`timed out waiting for ${lock} (remove it if stale)`);
      await sleep(500);
      continue;
    }
    try {
      if (existsSync(join(dir, 'manifest.json'))) return dir;
      const tmp = mkdtempSync(join(tmpdir(), 'xpl-lcm-build-'));
      const r = runPy(['-m', 'models.xportrait.export', '--tiny', '--seed', '1', '--warmup', '3', '--out', tmp, '--test-vectors'], 600_000);
      if (r.status !== 0) throw new Error(`export failed (${r.status}):\n${r.stderr.slice(-4000)}`);
      renameSync(tmp, dir);
      return dir;
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
}

/** A copy of `src` (without test vectors) that `mutate` may corrupt. */
export function corruptCopy(src: string, mutate: (dir: string, manifest: any) => any): string {
  const dir = mkdtempSync(join(tmpdir(), 'xpl-lcm-bad-'));
  for (const f of readdirSync(src)) if (f !== 'testvectors') cpSync(join(src, f), join(dir, f), { recursive: true });
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  const next = mutate(dir, m);
  if (next !== undefined) writeFileSync(join(dir, 'manifest.json'), typeof next === 'string' ? next : JSON.stringify(next, null, 1));
  return dir;
}

/** Deterministic pseudo-random CHW image in [-1, 1]. */
export function randomImage(len: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

