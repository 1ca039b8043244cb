// npm test: alone — Chromium with frame-rate checks.
/**
 * Real-client interop in headless Chromium, from another origin: the browser example's page
 * (examples/browser, served by its own `node examples/browser/serve.mjs` on another port; the
 * server allows that origin with --cors-origin) loads the SDK cross-origin and
 *  1. publishes the fake camera and microphone as a standard WHIP encoder does — audio + video
 *     sendonly, max-bundle (the offer whose answer Chromium used to refuse: "Failed to setup RTCP
 *     mux") — with a publish token;
 *  2. in a second page, plays the publisher's output with its audio over WHEP with the viewer
 *     token that came with the publish token.
 * The server sees the video and the Opus audio arrive; the player decodes frames and receives
 * audio with energy in it (Chromium's fake microphone beeps).
 * Also the web app's own microphone switch: off by default (no audio sent), on → the voice goes
 * out and comes back with the avatar.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM_MISSING, findChromium, launchChromium } from '../support/browser.ts';
import { REPO_ROOT, freePort, startServer, type ServerHandle } from '../support/server.ts';
import { waitUntil } from '../support/wait.ts';
import { writePatternY4m } from '../support/y4m.ts';

const KEY = 'interop-test-key-0123456789';
const chromiumPath = findChromium();
const skip = chromiumPath ? false : CHROMIUM_MISSING;
let server: ServerHandle;
let pages: ChildProcess | undefined;
let pagesUrl = '';
let browser: Browser | undefined;
let dir = '';

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'xpl-interop-'));
  const y4m = join(dir, 'camera.y4m');
  await writePatternY4m(y4m, { width: 320, height: 240, fps: 15, frames: 30 });
  const pagePort = await freePort();
  pagesUrl = `http://127.0.0.1:${pagePort}`;
  server = await startServer({ args: ['--renderer', 'passthrough', '--output', '256x256', '--api-key', KEY, '--cors-origin', pagesUrl] });
  pages = spawn(process.execPath, ['examples/browser/serve.mjs'], { cwd: REPO_ROOT, env: { ...process.env, PORT: String(pagePort), XPL_URL: server.url }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  pages.stdout!.on('data', (d) => (out += d.toString()));
  await waitUntil(() => out.includes('open http://'), 15_000, 'the example page server');
  browser = await launchChromium(chromiumPath!, { camera: y4m });
});
after(async () => {
  await browser?.close();
  pages?.kill('SIGINT');
  if (server) assert.equal(await server.stop(), 0);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function openExample(secret: string, errors: string[]): Promise<Page> {
  const page = await browser!.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${pagesUrl}/?server=${encodeURIComponent(server.url)}`);
  await page.fill('#key', secret);
  return page;
}

test('Chromium on another origin: WHIP publish (audio + video, sendonly, max-bundle) with a publish token, WHEP playback with audio', { skip, timeout: 120_000 }, async (t) => {
  const minted = await fetch(`${server.url}/v1/publish-tokens`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` } });
  const { token, viewerToken, publishId } = (await minted.json()) as { token: string; viewerToken: string; publishId: string };
  const errors: string[] = [];
  const publisher = await openExample(token, errors);
  const player = await openExample(viewerToken, errors);
  try {
    await publisher.click('[data-testid="publish"]');
    await publisher.waitForFunction('document.body.dataset.published || document.body.dataset.error', null, { timeout: 30_000 });
    const published = await publisher.evaluate('document.body.dataset.published');
    assert.ok(published, `published: ${await publisher.textContent('#error')}`);

    const info = async () => (await (await fetch(`${server.url}/v1/sessions/${published}`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as { sendsBack: boolean; stats: { framesIn: number }; audio: { packetsIn: number } };
    // A sendonly (WHIP encoder) session: ingest only. The audio reaches the relay, the video the decoder.
    await waitUntil(async () => {
      const i = await info();
      return i.stats.framesIn >= 10 && i.audio.packetsIn >= 50;
    }, 30_000, 'video frames and Opus packets arriving at the server');
    assert.equal((await info()).sendsBack, false);

    // The player names the publisher, not the session: it keeps working across the encoder's reconnects.
    await player.fill('#watch-id', publishId);
    await player.click('[data-testid="watch"]');
    await player.waitForFunction(
      `(() => { const s = JSON.parse(document.body.dataset.stats || '{}'); return s.framesDecoded >= 15 && s.audioPackets >= 50 && s.audioEnergy > 0; })() || document.body.dataset.error`,
      null,
      { timeout: 40_000 },
    );
    const stats = JSON.parse((await player.evaluate('document.body.dataset.stats || "{}"')) as string);
    t.diagnostic(`player: ${JSON.stringify(stats)}`);
    assert.ok(stats.framesDecoded >= 15, `the player decodes video (${await player.textContent('#error')})`);
    assert.ok(stats.audioEnergy > 0, 'the player hears the publisher’s microphone');
    assert.equal(await player.evaluate(`document.querySelector('[data-testid="player"]').videoWidth`), 256);
    assert.deepEqual(errors, []);
  } finally {
    await publisher.close();
    await player.close();
  }
});

test('the web app sends the microphone only when asked, and gets the voice back with the avatar', { skip, timeout: 90_000 }, async () => {
  const page = await browser!.newPage();
  type Info = { id: string; state: string; audio: { packetsIn: number; outputs: number }; stats: { framesIn: number } };
  const list = async () => ((await (await fetch(`${server.url}/v1/sessions`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as { sessions: Info[] }).sessions;
  let known = new Set((await list()).map((s) => s.id));
  /** The app's session: the one that appeared since the last look. */
  const sessionOf = async () => {
    const fresh = (await list()).filter((s) => !known.has(s.id));
    assert.equal(fresh.length, 1, 'one new session: the app\'s');
    return fresh[0];
  };
  try {
    await page.goto(`${server.url}/`);
    await page.click('summary');
    await page.fill('[data-testid="api-key"]', KEY);
    assert.equal(await page.isChecked('[data-testid="mic"]'), false, 'the microphone is off by default');
    assert.equal(await page.isChecked('[data-testid="echo-cancellation"]'), false, 'echo cancellation is off by default');
    await page.selectOption('[data-testid="renderer"]', 'passthrough');
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="connected"]', { timeout: 30_000 });
    // The camera's first second at the server: the microphone's packets, were they sent, would be there too.
    await waitUntil(async () => (await sessionOf()).stats.framesIn >= 30, 20_000, 'a second of the camera reaching the server');
    const first = await sessionOf();
    assert.equal(first.audio.packetsIn, 0, 'no audio without the microphone');
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="idle"]', { timeout: 10_000 });
    await waitUntil(async () => !(await list()).some((s) => s.id === first.id), 10_000, 'the first session ended');
    known = new Set((await list()).map((s) => s.id));

    await page.check('[data-testid="mic"]');
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="connected"]', { timeout: 30_000 });
    await waitUntil(async () => (await sessionOf()).audio.packetsIn >= 50, 20_000, 'the microphone reaching the server');
    assert.equal((await sessionOf()).audio.outputs, 1, 'and relayed back to the app (sendrecv)');
    await page.waitForFunction(`document.querySelector('[data-testid="output-video"]').srcObject?.getAudioTracks().length === 1`, null, { timeout: 20_000 });
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="idle"]', { timeout: 10_000 });
  } finally {
    await page.close();
  }
});
