/**
 * Shared packs. ORT sessions cannot cross worker threads, so this cache shares within one thread:
 * in the server that thread is the shared pack worker (pack-worker.ts), which serves every
 * session's stream; in tests and the benchmark it is their own (see docs/MODELS.md).
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { disposePack, loadPack, type LoadedPack, type LoadOptions } from './pack.ts';

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
