import assert from 'node:assert/strict';
import { test } from 'node:test';
import { helpText, loadConfig } from '../../server/config.ts';
import { XplError } from '../../server/errors.ts';

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const r = loadConfig(argv, env);
  assert.equal(r.help, false);
  return (r as Extract<typeof r, { help: false }>).config;
};

test('defaults follow the design: loopback, port 8080, mesh-warp, 512x512, 30 fps', () => {
  const c = load([]);
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 8080);
  assert.equal(c.renderer, 'mesh-warp');
  assert.deepEqual(c.output, { width: 512, height: 512 });
  assert.equal(c.maxFps, 30);
  assert.equal(c.apiKey, undefined);
});

test('flags override environment, environment overrides defaults', () => {
  const c = load(['--port', '9001'], { PORT: '9000', XPL_RENDERER: 'passthrough', XPL_ICE_ADDRESSES: '127.0.0.1, 10.0.0.1' });
  assert.equal(c.port, 9001);
  assert.equal(c.renderer, 'passthrough');
  assert.deepEqual(c.iceAddresses, ['127.0.0.1', '10.0.0.1']);
  assert.deepEqual(load(['--ice-address', 'a', '--ice-address', 'b']).iceAddresses, ['a', 'b']);
});

test('--help is recognised and the help text lists every flag', () => {
  assert.deepEqual(loadConfig(['--help'], {}), { help: true });
  const text = helpText();
  for (const flag of ['--port', '--host', '--renderer', '--pack', '--api-key', '--output', '--max-fps', '--max-sessions', '--help']) {
    assert.match(text, new RegExp(flag.replace(/-/g, '\\-')));
  }
});

function rejects(argv: string[], pattern: RegExp, env: NodeJS.ProcessEnv = {}) {
  assert.throws(
    () => loadConfig(argv, env),
    (err: unknown) => err instanceof XplError && err.code === 'bad_config' && pattern.test(err.message),
  );
}

test('invalid values are rejected with the flag named', () => {
  rejects(['--port', '70000'], /--port/);
  rejects(['--renderer', 'magic'], /--renderer/);
  rejects(['--output', '511x512'], /--output: width and height must be even/);
  rejects(['--output', 'big'], /WIDTHxHEIGHT/);
  rejects(['--api-key', 'short'], /--api-key: an API key must have at least 16 characters/);
  rejects(['--max-fps', '0'], /--max-fps/);
});

test('unknown flags are rejected instead of ignored', () => {
  rejects(['--prot', '1'], /Unknown option '--prot'/);
});

test('a non-loopback host needs an API key or an explicit --allow-remote', () => {
  rejects(['--host', '0.0.0.0'], /refusing to listen on 0\.0\.0\.0 without an API key/);
  assert.equal(load(['--host', '0.0.0.0', '--api-key', 'k'.repeat(16)]).host, '0.0.0.0');
  assert.equal(load(['--host', '0.0.0.0', '--allow-remote']).allowRemote, true);
});

test('xportrait-lcm without a pack is a configuration error', () => {
  rejects(['--renderer', 'xportrait-lcm'], /--pack DIR/);
});

test('--render-timeout: 5 s by default, seconds from flag or XPL_RENDER_TIMEOUT, out of range refused', () => {
  assert.equal(load([]).renderTimeout, 5);
  assert.equal(load(['--render-timeout', '30']).renderTimeout, 30);
  assert.equal(load([], { XPL_RENDER_TIMEOUT: '12.5' }).renderTimeout, 12.5);
  assert.throws(() => loadConfig(['--render-timeout', '0'], {}), (e: unknown) => e instanceof XplError && e.code === 'bad_config' && /render-timeout|renderTimeout/.test(e.message));
  assert.throws(() => loadConfig(['--render-timeout', 'soon'], {}), (e: unknown) => e instanceof XplError && e.code === 'bad_config');
});

test('the loop settings: codec, warm workers, CPU budget', () => {
  const c = load([]);
  assert.equal(c.codec, 'auto');
  assert.equal(c.ffmpeg, undefined);
  assert.equal(c.warmWorkers, 1);
  assert.equal(c.maxLoad, 0.9);
  const d = load(['--codec', 'wasm', '--warm-workers', '0', '--max-load', '1.5'], { XPL_FFMPEG: '/usr/bin/ffmpeg' });
  assert.deepEqual([d.codec, d.warmWorkers, d.maxLoad, d.ffmpeg], ['wasm', 0, 1.5, '/usr/bin/ffmpeg']);
  rejects(['--codec', 'h264'], /--codec/);
  rejects(['--warm-workers', '-1'], /--warm-workers/);
  rejects(['--max-load', '0'], /--max-load/);
  for (const flag of ['--codec', '--ffmpeg', '--warm-workers', '--max-load']) assert.match(helpText(), new RegExp(flag));
});

test('an output size is checked by the same rule everywhere: config, control socket, session', async () => {
  const { checkOutput } = await import('../../server/schemas.ts');
  const { requestSchemas } = await import('../../server/control/schema.ts');
  rejects(['--output', '66x1922'], /--output: width and height must be 64\.\.1920/);
  assert.throws(() => checkOutput({ width: 63, height: 64, maxFps: 30 }), (e: unknown) => e instanceof XplError && e.code === 'bad_request' && /width: width and height must be 64\.\.1920/.test(e.message));
  assert.throws(() => checkOutput({ width: 66, height: 65, maxFps: 30 }), /height: width and height must be even/);
  assert.throws(() => checkOutput({ width: 66, height: 64, maxFps: 61 }), /maxFps/);
  const r = requestSchemas['session.setOutput'].safeParse({ id: 1, op: 'session.setOutput', session: 's', width: 65 });
  assert.equal(r.success, false);
  assert.match(r.error!.issues[0].message, /width and height must be even/);
});
