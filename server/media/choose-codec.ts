/**
 * Decides once, at start, which codec backend the server runs (codec.ts): `--codec native`
 * insists on ffmpeg and fails the start without it; `auto` (the default) takes it when it passes
 * its probe and otherwise falls back to wasm, saying why in the log.
 */
import type { Config } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CodecBackend } from './codec.ts';
import { bundledFfmpeg, probeFfmpeg } from './ffmpeg.ts';

export async function chooseCodec(config: Pick<Config, 'codec' | 'ffmpeg'>, log: Logger): Promise<CodecBackend> {
  if (config.codec === 'wasm') return { name: 'wasm' };
  const probe = await probeFfmpeg(config.ffmpeg ?? bundledFfmpeg());
  if (probe.available) {
    log.debug({ ffmpeg: probe.path, version: probe.version }, 'native codec');
    return { name: 'native', ffmpegPath: probe.path };
  }
  if (config.codec === 'native') throw new XplError('bad_config', `--codec native: ${probe.reason}`);
  log.warn({ reason: probe.reason }, 'native codec unavailable: using the wasm codec (about 4× the CPU per session)');
  return { name: 'wasm' };
}
