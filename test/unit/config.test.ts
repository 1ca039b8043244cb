import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
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

test('the loop settings: codec, warm workers, CPU budget, latency budget', () => {
  const c = load([]);
  assert.equal(c.codec, 'auto');
  assert.equal(c.ffmpeg, undefined);
  assert.equal(c.warmWorkers, 1);
  assert.equal(c.maxLoad, 0.9);
  assert.equal(c.latencyBudget, 50);
  const d = load(['--codec', 'wasm', '--warm-workers', '0', '--max-load', '1.5', '--latency-budget', '0'], { XPL_FFMPEG: '/usr/bin/ffmpeg' });
  assert.deepEqual([d.codec, d.warmWorkers, d.maxLoad, d.ffmpeg, d.latencyBudget], ['wasm', 0, 1.5, '/usr/bin/ffmpeg', 0]);
  assert.equal(load([], { XPL_LATENCY_BUDGET: '120' }).latencyBudget, 120);
  rejects(['--latency-budget', '-5'], /--latency-budget/);
  rejects(['--codec', 'h264'], /--codec/);
  rejects(['--warm-workers', '-1'], /--warm-workers/);
  rejects(['--max-load', '0'], /--max-load/);
  for (const flag of ['--codec', '--ffmpeg', '--warm-workers', '--max-load', '--latency-budget']) assert.match(helpText(), new RegExp(flag));
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

test('xportrait-lcm settings live in the config’s lcm section: flags, XPL_LCM_* environment, defaults, --help', () => {
  const d = load([]).lcm;
  assert.deepEqual([d.engine, d.steps, d.streamBatch, d.skip, d.threads, d.seed, d.noise, d.cfg, d.init, d.sink, d.ring, d.warmup, d.cudaGraphs], ['onnx', 2, false, 1, 1, 1, 'fixed', 1, 'noise', 1, 3, 0, true]);
  const c = load(['--engine', 'torch', '--weights', 'tiny', '--device', 'cpu', '--lcm-steps', '4', '--lcm-stream-batch', '--lcm-no-cuda-graphs', '--lcm-cfg', '2.5', '--lcm-warmup', '3'], { XPL_LCM_STEPS: '1', XPL_LCM_SKIP: '0', XPL_LCM_NOISE: 'fresh', XPL_LCM_TIMESTEPS: 'linspace' }).lcm;
  assert.deepEqual([c.engine, c.weights, c.device, c.steps, c.streamBatch, c.cudaGraphs, c.cfg, c.warmup], ['torch', 'tiny', 'cpu', 4, true, false, 2.5, 3]);
  assert.deepEqual([c.skip, c.noise, c.timesteps], [0, 'fresh', 'linspace'], 'environment');
  assert.equal(load([], { XPL_LCM_ENGINE: 'torch', XPL_LCM_WEIGHTS: 'random' }).lcm.weights, 'random');
  const text = helpText();
  for (const flag of ['--engine', '--weights', '--lcm-lora', '--device', '--python', '--lcm-steps', '--lcm-stream-batch', '--lcm-cfg', '--lcm-init', '--lcm-warmup', '--lcm-timesteps', '--lcm-hang-timeout', 'XPL_LCM_EP']) {
    assert.match(text, new RegExp(flag.replace(/-/g, '\\-')));
  }
});

test('xportrait-lcm settings are validated at start', () => {
  rejects(['--engine', 'torch'], /--engine torch needs --weights/);
  rejects(['--renderer', 'xportrait-lcm', '--engine', 'torch', '--weights', 'tiny', '--lcm-steps', '9'], /--lcm-steps/);
  rejects(['--engine', 'torch', '--weights', 'tiny', '--device', 'gpu'], /--device: expected cpu, cuda or cuda:N/);
  rejects(['--engine', 'torch', '--weights', '/x/model.th'], /--weights FILE needs --lcm-context FILE/);
  rejects(['--engine', 'torch', '--weights', 'tiny', '--lcm-lora', 'l.safetensors'], /--lcm-lora goes with --engine torch --weights FILE/);
  rejects(['--engine', 'torch', '--weights', 'tiny', '--lcm-warmup', '6'], /--lcm-warmup 6: a warm-up window holds 2\.\.5 frames/);
  rejects(['--lcm-cfg', '3', '--lcm-stream-batch'], /--lcm-cfg with --lcm-stream-batch needs --engine torch/);
  assert.equal(load(['--lcm-cfg', '3']).lcm.cfg, 3, 'the onnx engine runs CFG with stream batch off');
  rejects(['--lcm-ep', 'tpu'], /--lcm-ep/);
  rejects(['--lcm-noise', 'pink'], /--lcm-noise/);
  assert.equal(load(['--renderer', 'xportrait-lcm', '--engine', 'torch', '--weights', 'tiny']).renderer, 'xportrait-lcm', 'the torch engine needs no pack');
});

test('the README\'s settings table gives each flag the default --help gives', () => {
  const defaults = new Map<string, string>();
  for (const line of helpText().split('\n')) {
    const m = line.match(/^\s+--([a-z0-9-]+)\b.*\(default ([^)]*)\)/);
    if (m) defaults.set(m[1], m[2]);
  }
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  // rows of one flag (with or without its variable): `| `--flag` / `XPL_FLAG` | default | what |`
  const rows = readme.split('\n').filter((l) => /^\| `--[a-z0-9-]+`( \/ `[A-Z_]+`)? \|/.test(l));
  assert.ok(rows.length >= 12, `only ${rows.length} settings rows found in the README`);
  let compared = 0;
  for (const row of rows) {
    const flag = row.match(/^\| `--([a-z0-9-]+)`/)![1];
    const given = row.split('|')[2].trim();
    if (!given && !defaults.has(flag)) continue;
    assert.equal(given, defaults.get(flag), `README: --${flag} defaults to "${given}", --help says "${defaults.get(flag)}"`);
    compared++;
  }
  assert.ok(compared >= 12, `only ${compared} defaults compared`);
});
