// npm test: alone — Chromium with frame-rate checks.
/**
 * The OBS view page (/view/ID?token=…) in headless Chromium: a libwebrtc pattern peer drives a
 * passthrough session on a server with an API key; the page, given only a viewer token, plays the
 * session's output over WHEP. Frames read back from its <video> must carry the pattern ids the
 * peer sends, advancing over time; the page's own viewer shows up in the session's viewer count.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { CHROMIUM_MISSING, findChromium, grabId, grabLuma, launchChromium } from '../support/browser.ts';
import { readPatternId } from '../support/pattern.ts';
import { serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { closeAllPeers, startPeer } from '../support/wrtc-peer.ts';
import { waitUntil } from '../support/wait.ts';

const KEY = 'view-test-key-0123456789';
const chromiumPath = findChromium();
const skip = !serverExists() ? 'server/main.ts not present' : !chromiumPath ? CHROMIUM_MISSING : false;

let server: ServerHandle | undefined;
let browser: Browser | undefined;

before(async () => {
  if (skip) return;
  server = await startServer({ args: ['--renderer', 'passthrough', '--api-key', KEY] });
  browser = await launchChromium(chromiumPath!);
});

after(async () => {
  await browser?.close();
  await closeAllPeers();
  const code = await server?.stop();
  if (server) assert.equal(code, 0);
});


test('the OBS view page plays a session’s live output with a viewer token only', { skip, timeout: 120_000 }, async (t) => {
  const peer = await startPeer({ baseUrl: server!.url, apiKey: KEY, query: { renderer: 'passthrough' } });
  const id = peer.sessionUrl.split('/').pop()!;
  const page = await browser!.newPage();
  try {
    await peer.waitFor((s) => s.decoded >= 10, 30_000);
    const res = await fetch(`${server!.url}/v1/sessions/${id}/tokens`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` } });
    const { viewUrl } = (await res.json()) as { viewUrl: string };
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(`${server!.url}${viewUrl}&bg=00ff00`);
    await page.waitForSelector('body[data-state="playing"]', { timeout: 30_000 });
    await page.waitForFunction(`document.querySelector('[data-testid="view-video"]').videoWidth > 0`, null, { timeout: 30_000 });
    assert.equal(await page.evaluate(`getComputedStyle(document.body).backgroundColor`), 'rgb(0, 255, 0)', 'bg from the query');
    const info = (await (await fetch(peer.sessionUrl, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as { viewers: number };
    assert.equal(info.viewers, 1, 'the page is one WHEP viewer');

    await waitUntil(async () => (await grabId(page, '[data-testid="view-video"]')) !== null, 15_000, 'an id readable in the view page');
    const ids: Array<number | null> = [];
    for (let i = 0; i < 12; i++) {
      const f = await grabLuma(page, '[data-testid="view-video"]');
      assert.ok(f, 'the video has a frame');
      assert.equal(`${f.width}x${f.height}`, '512x512');
      ids.push(readPatternId(f));
      await page.waitForTimeout(150);
    }
    t.diagnostic(`ids read from the view page: ${ids.join(' ')}`);
    const got = ids.filter((x): x is number => x !== null);
    assert.ok(got.length >= 9, `${got.length}/12 frames carry a readable id`);
    const sent = peer.stats().sent;
    assert.ok(got.every((x) => x < sent && x > sent - 600), 'ids are recent frames of this session’s sender');
    assert.ok(new Set(got).size >= got.length * 0.7, 'the picture is live (ids change)');
    let forward = 0;
    for (let i = 1; i < got.length; i++) if (got[i] > got[i - 1]) forward++;
    assert.ok(forward >= (got.length - 1) * 0.8, 'ids advance');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await peer.close();
  }
});

test('the view page refuses a token of another session', { skip, timeout: 60_000 }, async () => {
  const a = await startPeer({ baseUrl: server!.url, apiKey: KEY, query: { renderer: 'passthrough' } });
  const b = await startPeer({ baseUrl: server!.url, apiKey: KEY, query: { renderer: 'passthrough' } });
  try {
    const idA = a.sessionUrl.split('/').pop()!;
    const idB = b.sessionUrl.split('/').pop()!;
    const res = await fetch(`${server!.url}/v1/sessions/${idA}/tokens`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` } });
    const { token } = (await res.json()) as { token: string };
    const page = await browser!.newPage();
    try {
      const r = await page.goto(`${server!.url}/view/${idB}?token=${encodeURIComponent(token)}`);
      assert.equal(r?.status(), 403);
    } finally {
      await page.close();
    }
  } finally {
    await a.close();
    await b.close();
  }
});
