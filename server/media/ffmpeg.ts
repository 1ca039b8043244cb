/**
 * The native codec: an ffmpeg executable, run as small child processes fed through pipes.
 *
 * Why a process and not a library: the codecs that ship through npm for Linux are libvpx compiled
 * to WebAssembly (one thread, no SIMD: the wasm VP8 encoder costs ~4× native at 512²) or a static
 * ffmpeg executable (the npm package @ffmpeg-installer/ffmpeg, which carries libvpx, libx264 and
 * the H.264 decoder). A process per codec keeps a crash or a hang of the codec away from the
 * server, and the pipes cost about a millisecond per 512² frame. Which executable is used is
 * decided once, at start: `--ffmpeg PATH` if given, else the npm package's, and it must pass a
 * probe (it runs and has the VP8 encoder and decoder), else the server falls back to the wasm
 * codec and logs why.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type NativeCodec = { available: true; path: string; version: string } | { available: false; reason: string };

/** The npm package's executable for this platform, or null when the package or its platform binary is missing. */
export function bundledFfmpeg(): string | null {
  try {
    return (createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path: string }).path;
  } catch {
    return null;
  }
}

/** What a usable executable must offer (names as `ffmpeg -encoders` / `-decoders` print them). */
const NEEDED = { encoders: ['libvpx'], decoders: ['vp8'] };

/** Runs the executable once to see that it works and has what the codecs need. Never throws. */
export async function probeFfmpeg(path: string | null): Promise<NativeCodec> {
  if (!path) return { available: false, reason: 'no ffmpeg executable: the npm package @ffmpeg-installer/ffmpeg has no binary for this platform (pass --ffmpeg PATH to use another)' };
  try {
    const opts = { timeout: 10_000, maxBuffer: 4 * 1024 * 1024 };
    const version = (await run(path, ['-hide_banner', '-version'], opts)).stdout.split('\n')[0].trim();
    const encoders = (await run(path, ['-hide_banner', '-encoders'], opts)).stdout;
    const decoders = (await run(path, ['-hide_banner', '-decoders'], opts)).stdout;
    const has = (list: string, name: string) => new RegExp(`^\\s*V\\S*\\s+${name}\\s`, 'm').test(list);
    const missing = [...NEEDED.encoders.filter((n) => !has(encoders, n)).map((n) => `encoder ${n}`), ...NEEDED.decoders.filter((n) => !has(decoders, n)).map((n) => `decoder ${n}`)];
    if (missing.length) return { available: false, reason: `${path} lacks ${missing.join(', ')}` };
    return { available: true, path, version };
  } catch (err) {
    return { available: false, reason: `${path} does not run: ${(err as Error).message.split('\n')[0]}` };
  }
}
