/**
 * The Chromium load generator (loadtest/browser-cli.ts, `npm run loadtest:browser`): one short run
 * against a server with an API key, its arguments checked, a refused session reported. The run's
 * figures must hang together: latencies from RTP timestamps (a frame arrives before it is
 * presented), the sender's scalability mode seen by the server, the sessions gone afterwards.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { allocI420 } from '../../server/media/frame.ts';
import { writeY4m } from '../../server/media/y4m.ts';
import { CHROMIUM_MISSING, findChromium } from '../support/browser.ts';
import { drawPattern } from '../support/pattern.ts';
import { REPO_ROOT, serverExists, startServer, type ServerHandle } from '../support/server.ts';

const KEY = 'browser-load-key-0123456789';
const chromiumPath = findChromium();
const skip = !serverExists() ? 'server/main.ts not present' : !chromiumPath ? CHROMIUM_MISSING : false;

let server: ServerHandle | undefined;
let dir = '';

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'xpl-browser-load-test-'));
  const frame = allocI420(320, 240);
  await writeY4m(join(dir, 'camera.y4m'), { width: 320, height: 240, fps: 30 }, 60, (i) => {
    drawPattern(frame, i);
    return frame;
  });
  server = await startServer({ args: ['--renderer', 'passthrough', '--api-key', KEY] });
});

after(async () => {
  const code = await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (server) assert.equal(code, 0);
});

/** Runs the CLI; resolves with its exit code and output whatever the code. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'loadtest/browser-cli.ts', ...args], { cwd: REPO_ROOT, timeout: 100_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

const sessionsLeft = async (): Promise<unknown[]> => ((await (await fetch(`${server!.url}/v1/sessions`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as { sessions: unknown[] }).sessions;

test('a Chromium session measured from RTP timestamps: figures that hang together, the sessions closed after', { skip, timeout: 120_000 }, async (t) => {
  const json = join(dir, 'run.json');
  const r = await cli(['--url', server!.url, '--api-key', KEY, '--renderer', 'passthrough', '--sessions', '1', '--duration', '3', '--warmup', '2', '--camera', join(dir, 'camera.y4m'), '--json', json, '--quiet']);
  t.diagnostic(r.stdout);
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(await readFile(json, 'utf8'));
  assert.equal(result.options.mode, 'L1T2', 'the default mode is the web app’s');
  assert.equal(result.sessions.length, 1);
  const s = result.sessions[0];
  assert.ok(s.fps > 5, `out fps ${s.fps}`);
  assert.ok(s.g2g.count > 10 && s.g2g.p50 > 0 && s.g2g.p50 <= s.g2g.p95, `glass-to-glass ${JSON.stringify(s.g2g)}`);
  assert.ok(s.arrival.count > 10 && s.arrival.p50 > 0 && s.arrival.p50 < s.g2g.p50, `a frame arrives before it is presented: arrival ${JSON.stringify(s.arrival)}, g2g ${JSON.stringify(s.g2g)}`);
  assert.equal(s.server.temporalLayers, 2, 'the server saw the L1T2 sender’s two temporal layers');
  assert.ok(s.server.framesDecoded > 0 && s.server.framesDecoded <= s.server.framesReceived, JSON.stringify(s.server));
  assert.ok(s.chromium.targetBps > 0 && s.chromium.pacerMs >= 0, JSON.stringify(s.chromium));
  assert.match(r.stdout, /worst glass-to-glass p95: \d+ ms/);
  assert.deepEqual(await sessionsLeft(), [], 'the run deleted its session');
});

test('bad arguments: exit 2 with the reason and the usage', { skip, timeout: 60_000 }, async () => {
  for (const [args, reason] of [
    [['--url', server!.url, '--mode', 'L2T3'], /--mode: expected one of L1T1, L1T2, L1T3, got L2T3/],
    [['--url', server!.url, '--camera', join(dir, 'missing.y4m')], /--camera: no such file/],
    [['--sessions', '1'], /give either --url URL or --spawn/],
    [['--url', server!.url, '--sessions', '0'], /--sessions: expected a number in 1\.\.32, got 0/],
  ] as const) {
    const r = await cli([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, reason);
    assert.match(r.stderr, /Usage: node --import tsx loadtest\/browser-cli\.ts/);
  }
});

test('a session the server refuses: exit 1 naming the status, nothing left behind, the server healthy', { skip, timeout: 60_000 }, async () => {
  const r = await cli(['--url', server!.url, '--api-key', 'not-the-key-0123456789', '--renderer', 'passthrough', '--duration', '1', '--warmup', '0', '--camera', join(dir, 'camera.y4m'), '--quiet']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /load test failed: .*POST \/v1\/sessions answered 401/);
  assert.deepEqual(await sessionsLeft(), []);
  assert.equal((await fetch(`${server!.url}/healthz`)).status, 200);
});
