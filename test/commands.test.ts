/**
 * The commands README.md and examples/README.md show, run exactly as written (only the
 * environment differs: free ports through PORT / XPL_URL, and node_modules/.bin on PATH, where a
 * Deno user has their `deno`). Covered elsewhere: `npm test` (this run), `npm run loadtest`
 * (test/faults/tools.test.ts), the Chromium side of the browser example (test/e2e/interop.test.ts).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig, type Config } from '../server/config.ts';
import { createLogger } from '../server/log.ts';
import { startServer, type RunningServer } from '../server/server.ts';
import { REPO_ROOT, freePort } from './support/server.ts';
import { waitUntil } from './support/wait.ts';

const PATH = `${join(REPO_ROOT, 'node_modules/.bin')}:${process.env.PATH}`;

interface Running {
  child: ChildProcess;
  out(): string;
  /** Types into the command's standard input (a pseudo-terminal's, under `script`). */
  type(text: string): void;
  exited: Promise<number | null>;
  /** Ctrl+C: SIGINT to the command's whole process group, as a terminal sends it. */
  interrupt(): Promise<number | null>;
}

/**
 * Ctrl+C on `npm start` / `deno task start`: the server shuts down cleanly (it logs "bye"). The
 * wrapper reports the interrupt its own way (npm exits 130; deno task dies of the signal).
 */
async function stoppedCleanly(r: Running, what: string): Promise<void> {
  const code = await r.interrupt();
  assert.ok(code === 0 || code === 130 || code === null, `${what} exited ${code}:\n${r.out().slice(-1500)}`);
  assert.match(r.out(), /bye/, `${what}: the server shut down cleanly:\n${r.out().slice(-1500)}`);
}

/** Runs one command line with bash in its own process group. */
function start(command: string, env: Record<string, string> = {}): Running {
  const child = spawn('bash', ['-c', command], { cwd: REPO_ROOT, env: { ...process.env, PATH, ...env }, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d.toString()));
  child.stderr!.on('data', (d) => (out += d.toString()));
  // 'close', not 'exit': it waits for every process that holds the output (a wrapper's server too).
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  running.add(child);
  void exited.then(() => running.delete(child));
  return {
    child,
    out: () => out,
    type: (text) => child.stdin!.write(text),
    exited,
    async interrupt() {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGINT');
      return exited;
    },
  };
}
const running = new Set<ChildProcess>();
after(() => {
  for (const c of running) if (c.exitCode === null) process.kill(-c.pid!, 'SIGKILL');
});

async function run(command: string, env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; out: string }> {
  const r = start(command, env);
  const timer = setTimeout(() => r.child.exitCode === null && process.kill(-r.child.pid!, 'SIGKILL'), timeoutMs);
  const code = await r.exited;
  clearTimeout(timer);
  return { code, out: r.out() };
}

async function healthy(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
    return r.ok;
  } catch {
    return false;
  }
}

/** The shell commands of a Markdown file's ```sh blocks, one per line, comments stripped. */
function shellCommands(file: string): string[] {
  const text = readFileSync(join(REPO_ROOT, file), 'utf8');
  const out: string[] = [];
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of block[1].split('\n')) {
      const cmd = line.replace(/\s+#.*$/, '').trim();
      if (cmd) out.push(cmd);
    }
  }
  return out;
}

test('README: its commands are the ones this file runs', () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  assert.deepEqual(shellCommands('README.md'), ['npm install', 'npm start', ...DIFFUSION_COMMANDS, 'npm test']);
  assert.match(readme, /`npm start -- --help`/);
  assert.match(readme, /`deno task start` \(or `npx deno task start`\)/);
});

test('README: npm install is quiet (no npm warnings but a newer-Node engine note and .npmrc\'s key)', { timeout: 120_000 }, async () => {
  const { code, out } = await run('npm install');
  assert.equal(code, 0, out);
  const major = Number(process.versions.node.split('.')[0]);
  // werift declares node >=22; on older Node npm says so, truthfully. npm 11 names .npmrc's
  // onnxruntime-node-install key, which it does not know but onnxruntime-node's install step reads
  // (under npm 10, which ignores allowScripts, it is what keeps that step from downloading GPU
  // libraries): those lines are the only ones allowed. The same key may also come from the
  // environment (npm_config_onnxruntime_node_install, as CI machines set it): npm then says "env".
  const known = (l: string) => (/EBADENGINE/.test(l) && major < 22) || /Unknown (project|env) config "onnxruntime-node-install"/.test(l);
  const warnings = out.split('\n').filter((l) => l.startsWith('npm warn') && !known(l));
  assert.deepEqual(warnings, []);
});

test('README: npm start is friendly on a terminal (where, what, how to stop; Ctrl+C exits 0) and logs JSON otherwise', { timeout: 90_000 }, async () => {
  const [ttyPort, pipePort] = [await freePort(), await freePort()];
  const hasScript = existsSync('/usr/bin/script');
  // `script` gives the command a terminal, as a person's shell would.
  const tty = hasScript ? start(`script -qfec 'npm start' /dev/null`, { PORT: String(ttyPort) }) : undefined;
  const piped = start('npm start', { PORT: String(pipePort) });
  await waitUntil(() => (!tty || /stop\s+Ctrl\+C/.test(tty.out())) && /"msg":"listening"/.test(piped.out()), 60_000, 'both servers up');
  if (tty) {
    assert.match(tty.out(), new RegExp(`open\\s+http://127\\.0\\.0\\.1:${ttyPort}/`));
    assert.match(tty.out(), /renderer\s+mesh-warp, output 512x512/);
    assert.doesNotMatch(tty.out(), /"level":/, 'no JSON on a terminal');
    tty.type('\x03'); // Ctrl+C, through the terminal
    const code = await tty.exited;
    assert.ok(code === 0 || code === 130, `exit ${code}`);
    assert.match(tty.out(), /shutting down\s+signal=SIGINT[\s\S]*bye/, `Ctrl+C shuts the server down cleanly:\n${tty.out()}`);
  }
  const line = piped.out().split('\n').find((l) => l.includes('"listening"'))!;
  assert.equal(JSON.parse(line).url, `http://127.0.0.1:${pipePort}`);
  await stoppedCleanly(piped, 'npm start');
});

test('README: npm start -- --help lists the options', { timeout: 60_000 }, async () => {
  const { code, out } = await run('npm start -- --help');
  assert.equal(code, 0);
  for (const flag of ['--port', '--api-key', '--ice-server', '--announced-ip', '--rtc-ports', '--tls-cert', '--cors-origin', '--allowed-host', '--metrics-token', '--log-format']) assert.match(out, new RegExp(flag));
});

test('README: deno task start and npx deno task start serve the app', { timeout: 150_000 }, async () => {
  const bin = realpathSync(join(REPO_ROOT, 'node_modules/.bin/deno'));
  assert.ok(
    bin.endsWith('.cjs'),
    `node_modules/.bin/deno is the Deno binary (${bin}): deno task would run it as a script. This node_modules predates package.json's allowScripts (deno: false); run \`npm rebuild deno --ignore-scripts\` once.`,
  );
  const [p1, p2] = [await freePort(), await freePort()];
  const plain = start('deno task start', { PORT: String(p1) });
  const viaNpx = start('npx deno task start', { PORT: String(p2) });
  await waitUntil(async () => (await healthy(`http://127.0.0.1:${p1}`)) && (await healthy(`http://127.0.0.1:${p2}`)), 120_000, 'both Deno servers healthy').catch((err) => {
    throw new Error(`${err.message}\ndeno task start:\n${plain.out().slice(-1500)}\nnpx deno task start:\n${viaNpx.out().slice(-1500)}`);
  });
  const app = await fetch(`http://127.0.0.1:${p1}/`);
  assert.match(await app.text(), /<title>xportrait-live<\/title>/);
  await stoppedCleanly(plain, 'deno task start');
  await stoppedCleanly(viaNpx, 'npx deno task start');
});

/** README's diffusion renderer examples, in its order; the test below runs each as written. */
const DIFFUSION_COMMANDS = [
  'npm run export:tiny',
  'npm start -- --renderer xportrait-lcm --pack packs/tiny',
  'npm start -- --renderer xportrait-lcm --engine torch --weights tiny --device cpu',
  'npm start -- --renderer xportrait-lcm --engine torch --weights random',
];

/** Python's own answer to "is there a CUDA device?", from the interpreter the torch engine uses. */
function hasCuda(): boolean {
  const py = process.env.XPL_PYTHON ?? '/usr/bin/python3';
  const r = spawnSync(py, ['-c', 'import torch; print(torch.cuda.is_available())'], { encoding: 'utf8' });
  return r.stdout.trim() === 'True';
}

test('README: the diffusion renderer examples export a tiny pack, serve both engines, and refuse CUDA clearly where there is none', { timeout: 600_000 }, async () => {
  const [exportTiny, onnx, torchTiny, torchRandom] = DIFFUSION_COMMANDS;
  const exported = await run(exportTiny, {}, 480_000);
  assert.equal(exported.code, 0, exported.out.slice(-1500));
  assert.ok(existsSync(join(REPO_ROOT, 'packs/tiny/manifest.json')), 'packs/tiny/manifest.json written');
  // Both servers start side by side (each start is mostly waiting on its worker's set-up).
  const servers = await Promise.all([onnx, torchTiny].map(async (command) => ({ command, port: await freePort() })));
  const running = servers.map((s) => ({ ...s, r: start(s.command, { PORT: String(s.port) }) }));
  for (const { command, port, r } of running) {
    await waitUntil(() => healthy(`http://127.0.0.1:${port}`), 120_000, `${command}: healthy`).catch((err) => {
      throw new Error(`${err.message}\n${r.out().slice(-1500)}`);
    });
    const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
    assert.equal(health.defaultRenderer, 'xportrait-lcm', JSON.stringify(health));
    if (command === torchTiny) {
      // The torch engine's worker process is up before the server listens.
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, /^xpl_lcm_torch_workers(\{[^}]*\})? 1$/m);
    }
  }
  for (const { command, r } of running) await stoppedCleanly(r, command);
  // Full size on CUDA: where this machine has no CUDA device, the server must stop at once, naming it.
  if (!hasCuda()) {
    const refused = await run(torchRandom, {}, 120_000);
    assert.equal(refused.code, 2, refused.out.slice(-1500));
    assert.match(refused.out, /CUDA/);
    assert.match(refused.out, /--device cpu/);
  }
});

let server: RunningServer;
before(async () => {
  const parsed = loadConfig(['--port', '0', '--renderer', 'passthrough', '--output', '256x256', '--log-level', 'warn'], {});
  server = await startServer((parsed as { config: Config }).config, createLogger('warn'));
});
after(async () => {
  await server?.close();
});

test('examples/README.md: every command, as written, against a live server', { timeout: 120_000 }, async (t) => {
  const commands = shellCommands('examples/README.md');
  const env = { XPL_URL: server.url };
  const publishers = commands.filter((c) => c.includes('publish.mjs'));
  const needSession = commands.filter((c) => c.includes('SESSION_ID'));
  const browser = commands.filter((c) => c.startsWith('npm start') || c.includes('examples/browser/'));
  const others = commands.filter((c) => !publishers.includes(c) && !needSession.includes(c) && !browser.includes(c));
  assert.ok(publishers.length === 2 && needSession.length === 2 && browser.length === 2 && others.length === 2, `commands: ${commands.join(' | ')}`);

  // Publishers first (Node and Deno): the watchers need a session to watch.
  const pubs = publishers.map((c) => ({ c, r: start(c, env) }));
  await waitUntil(() => pubs.every((p) => /^session \S+/m.test(p.r.out()) || p.r.child.exitCode !== null), 60_000, 'both publishers started').catch((err) => {
    throw new Error(`${err.message}\n${pubs.map((p) => `${p.c}:\n${p.r.out()}`).join('\n')}`);
  });
  const sessionId = /^session (\S+)/m.exec(pubs[0].r.out())![1];
  const results = await Promise.all([...needSession.map((c) => c.replace('SESSION_ID', sessionId)), ...others].map(async (c) => ({ c, ...(await run(c, env)) })));
  for (const p of pubs) results.push({ c: p.c, code: await p.r.exited, out: p.r.out() });
  for (const r of results) {
    t.diagnostic(`${r.c} → ${r.code}`);
    assert.equal(r.code, 0, `${r.c}\n${r.out.slice(-2000)}`);
  }
  assert.match(results.find((r) => r.c.startsWith('node examples/node/watch'))!.out, /\d+ fps 256x256, audio peak \d+/, 'video and audio come back to the watcher');
  assert.match(results.find((r) => r.c.startsWith('node examples/node/publish'))!.out, /video frames and [1-9]\d* audio chunks back/);

  // The browser example: the page server on its own origin, and the server started as it says.
  const [pagePort, serverPort] = [await freePort(), await freePort()];
  const page = start(browser.find((c) => c.includes('serve.mjs'))!, { PORT: String(pagePort), XPL_URL: `http://127.0.0.1:${serverPort}` });
  const api = start(browser.find((c) => c.startsWith('npm start'))!, { PORT: String(serverPort) });
  await waitUntil(async () => /open http:\/\/127\.0\.0\.1:\d+\//.test(page.out()) && (await healthy(`http://127.0.0.1:${serverPort}`)), 60_000, 'page server and API server');
  assert.match(page.out(), new RegExp(`open http://127\\.0\\.0\\.1:${pagePort}/\\?server=http%3A%2F%2F127\\.0\\.0\\.1%3A${serverPort}`));
  assert.match(await (await fetch(`http://127.0.0.1:${pagePort}/`)).text(), /<script type="module" src="app.js">/);
  const sdk = await fetch(`http://127.0.0.1:${serverPort}/sdk/index.js`, { headers: { Origin: 'http://127.0.0.1:8081' } });
  assert.equal(sdk.headers.get('access-control-allow-origin'), 'http://127.0.0.1:8081', 'the SDK loads cross-origin from the documented page origin');
  assert.equal(await page.interrupt(), 0);
  await stoppedCleanly(api, 'npm start -- --cors-origin …');
});
