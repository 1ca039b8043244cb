// npm test: alone — the README's examples count frames and stats events in windows of seconds.
/**
 * The commands README.md and examples/README.md show, run exactly as written (only the
 * environment differs: free ports through PORT / XPL_URL, and node_modules/.bin on PATH, where a
 * Deno user has their `deno`). Covered elsewhere: `npm test` (this run), `npm run loadtest`
 * (test/faults/tools.test.ts), the Chromium side of the browser example (test/e2e/interop.test.ts),
 * the diffusion renderer's commands (test/readme-diffusion.test.ts).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig, type Config } from '../server/config.ts';
import { createLogger } from '../server/log.ts';
import { startServer, type RunningServer } from '../server/server.ts';
import { DIFFUSION_COMMANDS, healthy, killLeftovers, run, shellCommands, start, stoppedCleanly } from './support/commands.ts';
import { REPO_ROOT, freePort } from './support/server.ts';
import { waitUntil } from './support/wait.ts';

after(killLeftovers);

test('README: its commands are the ones this file and readme-diffusion.test.ts run', () => {
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
