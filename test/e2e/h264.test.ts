// npm test: alone — Chromium with frame-rate checks.
/**
 * H.264 end to end with Chromium's own encoder and decoder: a page on the server's origin opens
 * the fake camera (a test pattern with frame ids) and microphone, offers H.264 only with Opus
 * (codec preference forced: what OBS and ffmpeg's WHIP output send), and gets the passthrough
 * output back in H.264 on the same transceiver, since it offered no VP8, with its audio. The
 * frames that come back carry the ids and advance; the server says both directions are H.264 and
 * relays the audio. A WHEP viewer of that session must take H.264 too.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM_MISSING, findChromium, grabId, launchChromium } from '../support/browser.ts';
import { serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { waitUntil } from '../support/wait.ts';
import { writePatternY4m } from '../support/y4m.ts';

const chromiumPath = serverExists() ? findChromium() : null;
const skip = !serverExists() ? 'server/main.ts not present' : !chromiumPath ? CHROMIUM_MISSING : false;

let dir = '';
let server: ServerHandle | undefined;
let browser: Browser | undefined;

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'xpl-h264-'));
  const y4m = join(dir, 'pattern.y4m');
  await writePatternY4m(y4m, { width: 640, height: 480, fps: 30, frames: 150 });
  server = await startServer({ args: ['--renderer', 'passthrough'] });
  browser = await launchChromium(chromiumPath!, { camera: y4m });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** In the page: publish the camera with H.264 only, sendrecv; the output plays in <video id=out>. */
const publishH264 = `(async () => {
  document.body.innerHTML = '<video id="out" autoplay muted playsinline></video>';
  const { iceGathered } = await import('/sdk/index.js');
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  const pc = new RTCPeerConnection();
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendrecv', streams: [stream] });
  const t = pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendrecv', streams: [stream] });
  const h264 = RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => /h264/i.test(c.mimeType) || /rtx/i.test(c.mimeType));
  t.setCodecPreferences(h264);
  pc.addEventListener('track', (e) => { document.getElementById('out').srcObject = e.streams[0] || new MediaStream([e.track]); });
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, 2000);
  const offered = /a=rtpmap:\\d+ VP8\\//.test(pc.localDescription.sdp);
  const res = await fetch('/v1/sessions?renderer=passthrough', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  if (res.status !== 201) return { status: res.status, body: await res.text() };
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  window.pc = pc;
  return { status: 201, location: res.headers.get('location'), offeredVp8: offered };
})()`;

interface Listed {
  stats: { inWidth: number };
  audio: { packetsIn: number; packetsOut: number };
}

async function sessionVideo(): Promise<Listed[]> {
  return ((await (await fetch(`${server!.url}/v1/sessions`)).json()) as { sessions: Listed[] }).sessions;
}

test('Chromium publishing H.264 only with Opus gets its frames back in H.264, and its voice, through the server', { skip, timeout: 120_000 }, async (t) => {
  const page: Page = await browser!.newPage();
  try {
    await page.goto(`${server!.url}/view/none`);
    const r = (await page.evaluate(publishH264)) as { status: number; body?: string; location?: string; offeredVp8?: boolean };
    assert.equal(r.status, 201, r.body);
    assert.equal(r.offeredVp8, false, 'the offer had no VP8');
    await page.waitForFunction(`document.getElementById('out').videoWidth === 512`, null, { timeout: 30_000 });
    const ids: number[] = [];
    await waitUntil(
      async () => {
        const id = await grabId(page, '#out');
        if (id !== null && ids.at(-1) !== id) ids.push(id);
        return ids.length >= 8;
      },
      30_000,
      'eight distinct pattern ids from the H.264 output',
    );
    t.diagnostic(`ids: ${ids.join(' ')}`);
    const forward = ids.slice(1).filter((id, i) => (id - ids[i] + 150) % 150 < 75).length;
    assert.ok(forward >= ids.length - 2, 'the ids move forward');
    // Both directions are H.264, as the receiver's stats and the session's codec say.
    const codecs = (await page.evaluate(`(async () => {
      const out = [];
      (await window.pc.getStats()).forEach((s) => { if (s.type === 'codec') out.push(s.mimeType); });
      return out;
    })()`)) as string[];
    const video = codecs.filter((c) => /^video\//i.test(c));
    assert.ok(video.length > 0 && video.every((c) => /h264/i.test(c)), `codecs in use: ${codecs.join(', ')}`);
    assert.ok(codecs.some((c) => /opus/i.test(c)), 'Opus both ways');
    const sessions = await sessionVideo();
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0].stats.inWidth, 640);
    await waitUntil(async () => (await sessionVideo())[0].audio.packetsOut > 0, 10_000, 'the caller\'s audio relayed back');
    // A WHEP viewer of this session must take H.264 too: a VP8-only viewer offer is refused.
    const id = r.location!.split('/').pop()!;
    const vp8Only = (await page.evaluate(`(async () => {
      const pc = new RTCPeerConnection();
      const t = pc.addTransceiver('video', { direction: 'recvonly' });
      t.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => /vp8/i.test(c.mimeType)));
      await pc.setLocalDescription(await pc.createOffer());
      const res = await fetch('/v1/sessions/${id}/whep', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      pc.close();
      return { status: res.status, body: await res.text() };
    })()`)) as { status: number; body: string };
    assert.equal(vp8Only.status, 400);
    assert.match(vp8Only.body, /unsupported_codec.*H\.264/);
    const del = await fetch(`${server!.url}${r.location}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
  } finally {
    await page.evaluate(`window.pc && window.pc.close()`).catch(() => {});
    await page.close();
  }
});
