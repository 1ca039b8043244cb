// npm test: alone — Chromium with frame-rate checks.
/**
 * The web app in headless Chromium against the real server: Chromium's fake camera plays a
 * generated 640×480 test-pattern .y4m; the app connects with the passthrough renderer; frames
 * read back from the page's output <video> must be 512×512, carry the pattern's ids, advance
 * over time, and match the sent frames cropped and scaled the 'cover' way. Also: errors from
 * the server and a denied camera are shown in the page, and Disconnect deletes the session.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { XplClient } from '../../client/sdk/index.js';
import { allocI420, type I420Frame } from '../../server/media/frame.ts';
import { CHROMIUM_MISSING, findChromium, grabId, grabLuma, launchChromium } from '../support/browser.ts';
import { drawPattern, readPatternId } from '../support/pattern.ts';
import { coverScale, lumaMad } from '../support/scale.ts';
import { serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { writePatternY4m } from '../support/y4m.ts';
import { waitUntil } from '../support/wait.ts';

const SRC_W = 640;
const SRC_H = 480;
const FPS = 30;
/** Frames in the fake camera's file; Chromium plays it in a loop, so ids wrap at this. */
const LOOP = 150;

const chromiumPath = serverExists() ? findChromium() : null;
const skip = !serverExists()
  ? 'server/main.ts not present'
  : !chromiumPath
    ? CHROMIUM_MISSING
    : false;

let dir = '';
let server: ServerHandle | undefined;
let browser: Browser | undefined;

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'xpl-e2e-'));
  const y4m = join(dir, 'pattern.y4m');
  await writePatternY4m(y4m, { width: SRC_W, height: SRC_H, fps: FPS, frames: LOOP });
  server = await startServer();
  browser = await launchChromium(chromiumPath!, { camera: y4m });
});

after(async () => {
  await browser?.close();
  const code = await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (server) assert.equal(code, 0, 'server exits 0 on SIGTERM');
});

function expected(id: number): I420Frame {
  const f = allocI420(SRC_W, SRC_H);
  drawPattern(f, ((id % LOOP) + LOOP) % LOOP);
  return coverScale(f, 512, 512);
}

async function openApp(): Promise<Page> {
  const page = await browser!.newPage();
  page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
  await page.goto(`${server!.url}/`);
  return page;
}

async function sessionCount(): Promise<number> {
  const res = await fetch(`${server!.url}/v1/sessions`);
  return ((await res.json()) as { sessions: unknown[] }).sessions.length;
}

test('the app streams the camera through passthrough and shows it back at 512×512', { skip, timeout: 120_000 }, async (t) => {
  const page = await openApp();
  try {
    // The preview shows the fake camera at the file's size.
    await page.waitForFunction(`document.querySelector('[data-testid="preview-video"]').videoWidth === ${SRC_W}`, null, { timeout: 10_000 });
    await page.selectOption('[data-testid="renderer"]', 'passthrough');
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="connected"]', { timeout: 30_000 });
    await page.waitForFunction(`document.querySelector('[data-testid="output-video"]').videoWidth > 0`, null, { timeout: 30_000 });
    assert.equal(await page.textContent('[data-testid="connect"]'), 'Disconnect');
    assert.equal(await page.isVisible('[data-testid="error"]'), false, 'no error shown');

    // Sample once the encoder has settled: the first frames after a keyframe are blurry at low
    // bitrate, too blurry for their ids.
    await waitUntil(async () => (await grabId(page, '[data-testid="output-video"]')) !== null, 15_000, 'an id readable in the output video');
    const samples: Array<{ at: number; frame: I420Frame; id: number | null }> = [];
    for (let i = 0; i < 16; i++) {
      const frame = await grabLuma(page, '[data-testid="output-video"]');
      assert.ok(frame, 'the output video has a frame');
      samples.push({ at: performance.now(), frame, id: readPatternId(frame) });
      await page.waitForTimeout(150);
    }
    t.diagnostic(`ids read from the page: ${samples.map((s) => s.id).join(' ')}`);

    for (const s of samples) assert.equal(`${s.frame.width}x${s.frame.height}`, '512x512', 'output video is 512×512');
    const decoded = samples.filter((s) => s.id !== null) as Array<{ at: number; frame: I420Frame; id: number }>;
    assert.ok(decoded.length >= samples.length * 0.75, `${decoded.length}/${samples.length} samples carry a readable id`);
    for (const s of decoded) assert.ok(s.id < LOOP, `id ${s.id} is one the fake camera plays (0..${LOOP - 1})`);

    // Ids advance with time: each step forward (modulo the loop) and roughly at the camera rate.
    let forward = 0;
    for (let i = 1; i < decoded.length; i++) {
      const step = (decoded[i].id - decoded[i - 1].id + LOOP) % LOOP;
      if (step > 0 && step < LOOP / 2) forward++;
    }
    assert.ok(forward >= (decoded.length - 1) * 0.8, `${forward}/${decoded.length - 1} consecutive samples move forward`);
    assert.ok(new Set(decoded.map((s) => s.id)).size >= decoded.length * 0.8, 'samples show different frames');

    // Pixels match the sent frame of that id (cover-cropped and scaled), not its neighbours.
    const mads: string[] = [];
    for (const s of decoded) {
      const own = lumaMad(s.frame, expected(s.id));
      const other = Math.min(lumaMad(s.frame, expected(s.id + 5)), lumaMad(s.frame, expected(s.id - 5)));
      mads.push(`${own.toFixed(1)}/${other.toFixed(1)}`);
      assert.ok(own < 12, `frame ${s.id}: luma MAD ${own.toFixed(1)} against the sent pattern`);
      assert.ok(own * 2 < other, `frame ${s.id}: MAD ${own.toFixed(1)} vs ${other.toFixed(1)} for neighbours`);
    }
    t.diagnostic(`luma MAD own/neighbour: ${mads.join(' ')}`);

    // The stats overlay reports what is being received.
    await page.waitForFunction(`document.querySelector('[data-testid="stat-resolution"]').textContent === '512×512'`, null, { timeout: 5000 });
    const fps = Number(await page.textContent('[data-testid="stat-fps"]'));
    assert.ok(fps > 5, `overlay fps ${fps}`);
    assert.match((await page.textContent('[data-testid="stat-bitrate-in"]')) ?? '', /bit\/s$/);
    assert.match((await page.textContent('[data-testid="stat-latency"]')) ?? '', /^\d+ ms/);
    t.diagnostic(`overlay: ${(await page.textContent('[data-testid="stats"]'))?.replace(/\s+/g, ' ')}`);

    assert.equal(await sessionCount(), 1);
    // The app asks Chromium for two temporal layers (L1T2), which lets a busy server skip frames.
    const listed = (await (await fetch(`${server!.url}/v1/sessions`)).json()) as { sessions: Array<{ id: string; stats: { temporalLayers: number } }> };
    assert.equal(listed.sessions[0].stats.temporalLayers, 2, 'the server sees two temporal layers');
    // Capped at 15 fps, the server decodes only what it renders: the base layer of the 30 fps stream.
    const ctl = new XplClient({ baseUrl: server!.url, WebSocket: WebSocket as never }).control({ format: 'json' });
    try {
      const id = listed.sessions[0].id;
      await ctl.setOutput(id, { maxFps: 15 });
      // Windows of 2 s until Chromium sends clearly more than the cap (it lowers its own rate at times).
      let window: { received: number; decoded: number; out: number } | undefined;
      for (let i = 0; i < 6 && !window; i++) {
        const a = (await ctl.getSession(id)).stats;
        // A measurement window: nothing to await but the time itself.
        await delay(2000);
        const b = (await ctl.getSession(id)).stats;
        const w = { received: b.framesReceived - a.framesReceived, decoded: b.framesIn - a.framesIn, out: b.framesOut - a.framesOut };
        t.diagnostic(`at maxFps 15, 2 s: ${w.received} frames received, ${w.decoded} decoded, ${w.out} out`);
        if (w.received - w.out >= 10) window = w;
      }
      assert.ok(window, 'Chromium sent more frames than the cap lets out in one of six windows of 2 s');
      assert.ok(window.out <= 38, `${window.out} frames out in 2 s at maxFps 15`);
      // Of the frames that did not go out, most were never decoded (decoding every frame and dropping after would skip none).
      const skipped = window.received - window.decoded;
      assert.ok(skipped >= 0.6 * (window.received - window.out), `${skipped} of the ${window.received - window.out} frames that did not go out were not decoded`);
      await ctl.setOutput(id, { maxFps: 30 });
    } finally {
      ctl.close();
    }
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="idle"]');
    const deadline = Date.now() + 5000;
    while ((await sessionCount()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await sessionCount(), 0, 'Disconnect deleted the session');
  } finally {
    await page.close();
  }
});

test('a server error is shown with its code and message', { skip, timeout: 60_000 }, async () => {
  const page = await openApp();
  try {
    await page.route('**/v1/sessions**', (route) =>
      route.fulfill({
        status: 503,
        contentType: 'application/json',
        body: JSON.stringify({ error: { code: 'too_many_sessions', message: 'the server is at its session limit' } }),
      }),
    );
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="error"]', { timeout: 20_000 });
    const text = (await page.textContent('[data-testid="error"]')) ?? '';
    assert.match(text, /HTTP 503/);
    assert.match(text, /the server is at its session limit/);
    assert.match(text, /too_many_sessions/);
    assert.equal(await page.isVisible('[data-testid="error"]'), true);
    assert.equal(await page.textContent('[data-testid="connect"]'), 'Connect', 'can try again');
  } finally {
    await page.close();
  }
});

test('an unknown renderer from the real server is reported, not swallowed', { skip, timeout: 60_000 }, async () => {
  const page = await openApp();
  try {
    // Add an option the server does not know, as an outdated page would send.
    await page.evaluate(`document.querySelector('[data-testid="renderer"]').add(new Option('bogus', 'bogus'))`);
    await page.selectOption('[data-testid="renderer"]', 'bogus');
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="error"]', { timeout: 20_000 });
    const text = (await page.textContent('[data-testid="error"]')) ?? '';
    assert.match(text, /HTTP 400/);
    assert.match(text, /renderer/);
    assert.equal(await sessionCount(), 0);
  } finally {
    await page.close();
  }
});

test('a denied camera is explained', { skip, timeout: 60_000 }, async () => {
  const page = await browser!.newPage();
  try {
    await page.addInitScript(`navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));`);
    await page.goto(`${server!.url}/`);
    await page.waitForSelector('[data-testid="error"]:not([hidden])', { timeout: 10_000 });
    assert.match((await page.textContent('[data-testid="error"]')) ?? '', /Camera access was denied/);
    await page.click('[data-testid="connect"]');
    await page.waitForSelector('body[data-state="error"]', { timeout: 10_000 });
    assert.match((await page.textContent('[data-testid="error"]')) ?? '', /Camera access was denied/);
    assert.equal(await sessionCount(), 0, 'no session was started');
  } finally {
    await page.close();
  }
});
