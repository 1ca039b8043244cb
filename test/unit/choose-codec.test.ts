/** The codec backend is chosen once at start: native when its ffmpeg passes the probe, else wasm with the reason logged; `--codec native` insists. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XplError } from '../../server/errors.ts';
import { createLogger } from '../../server/log.ts';
import { chooseCodec } from '../../server/media/choose-codec.ts';
import { bundledFfmpeg } from '../../server/media/ffmpeg.ts';

const quiet = createLogger('silent');

test('auto: the npm package’s ffmpeg is used when it passes the probe', async () => {
  const c = await chooseCodec({ codec: 'auto', ffmpeg: undefined }, quiet);
  assert.deepEqual(c, { name: 'native', ffmpegPath: bundledFfmpeg() });
});

test('auto with an unusable ffmpeg falls back to wasm and says why; native refuses to start', async () => {
  const warnings: string[] = [];
  const log = { ...quiet, warn: (o: { reason: string }, msg: string) => warnings.push(`${msg}: ${o.reason}`), debug: () => {} } as unknown as typeof quiet;
  assert.deepEqual(await chooseCodec({ codec: 'auto', ffmpeg: '/nonexistent/ffmpeg' }, log), { name: 'wasm' });
  assert.match(warnings[0], /native codec unavailable.*\/nonexistent\/ffmpeg does not run/);
  // An executable that runs but is not ffmpeg: the probe finds no VP8 codecs in its answers.
  await assert.rejects(chooseCodec({ codec: 'native', ffmpeg: '/bin/true' }, quiet), (e: unknown) => e instanceof XplError && e.code === 'bad_config' && /--codec native: \/bin\/true lacks encoder libvpx, decoder vp8/.test(e.message));
  assert.deepEqual(await chooseCodec({ codec: 'wasm', ffmpeg: undefined }, quiet), { name: 'wasm' });
});
