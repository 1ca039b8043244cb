// npm test: alone — times the audio against the video to ±40 ms.
/**
 * The caller's audio comes back in sync with the avatar (a live server in this process; libwebrtc
 * peers sending a white flash and a 1 kHz click together every 1.5 s, see support/av-peer.ts).
 *
 * Two sessions side by side: A as it is, B with 120 ms added to every frame between the loop
 * worker and the fan-out inside the server (video latency ≈ 125 ms instead of ≈ 5). A WHEP probe on each (support/rtp-viewer.ts)
 * times the flash's last video packet and the click's first audio packet as they leave the
 * server: their median offset must be within ±40 ms, and two thirds of the events too (on a
 * loaded machine a video frame can be late) — without the relay's delay, B's clicks arrive
 * ≈ 120–170 ms early every time (measured). The libwebrtc peers' own click − flash offsets, after
 * their jitter buffers (this stack does no A/V sync of its own, and its NetEq grows with the test
 * machine's load), are reported, not judged.
 * `audio=off` sends no audio back, `setParams({audio: true})` turns it on live, a libwebrtc
 * WHEP viewer hears it, and a loop worker restarted afterwards is set up again (the audio switch
 * is the session's, never handed to the renderer).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { loadConfig, type Config } from '../../server/config.ts';
import { createLogger } from '../../server/log.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { startAvPeer, startAvViewer, type AvPeer } from '../support/av-peer.ts';
import { startRtpViewer } from '../support/rtp-viewer.ts';
import { waitUntil } from '../support/wait.ts';

const EXTRA_VIDEO_MS = 120;
/** The first events fall while encoders and relays settle. */
const WARMUP_EVENTS = 2;
const EVENTS = 6;
let server: RunningServer;
const peers: AvPeer[] = [];

before(async () => {
  // B's added latency is made by the test, not by a CPU shortage: the frame budget would answer it
  // by lowering B's frame rate, and a flash frame the rate cap skips cannot be timed.
  const parsed = loadConfig(['--port', '0', '--renderer', 'passthrough', '--output', '256x256', '--ice-address', '127.0.0.1', '--latency-budget', '0'], {});
  server = await startServer((parsed as { config: Config }).config, createLogger('warn'));
});
after(async () => {
  await Promise.all(peers.map((p) => p.close()));
  await server?.close();
});

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');

test(`lip-sync: with ${EXTRA_VIDEO_MS} ms more video latency, the click still leaves the server with the flash (±40 ms)`, { timeout: 60_000 }, async (t) => {
  const [a, b] = await Promise.all([startAvPeer({ baseUrl: server.url, query: { renderer: 'passthrough' } }), startAvPeer({ baseUrl: server.url, query: { renderer: 'passthrough' } })]);
  peers.push(a, b);
  const sessionB = server.sessions.get(b.sessionId);
  // The loop worker's handle is a private part of the session; its encoded frames are held here, for this test only.
  const host = (sessionB as unknown as { host: { onMessage: (m: { t: string }) => void } }).host;
  const deliver = host.onMessage;
  host.onMessage = (m) => (m.t === 'out' ? void setTimeout(() => deliver(m), EXTRA_VIDEO_MS) : deliver(m));
  const [probeA, probeB] = await Promise.all([startRtpViewer(server.url, a.sessionId), startRtpViewer(server.url, b.sessionId)]);
  try {
    const need = WARMUP_EVENTS + EVENTS;
    const enough = () => [probeA, probeB, a, b].every((x) => x.offsets().length >= need);
    await waitUntil(enough, 40_000, `${need} events at every probe and peer`).catch((err) => {
      throw new Error(`${err.message}: probe A ${fmt(probeA.offsets())} / probe B ${fmt(probeB.offsets())} / peer A ${fmt(a.offsets())} / peer B ${fmt(b.offsets())}`);
    });
    const wireA = probeA.offsets().slice(WARMUP_EVENTS);
    const wireB = probeB.offsets().slice(WARMUP_EVENTS);
    const peerA = a.offsets().slice(WARMUP_EVENTS);
    const peerB = b.offsets().slice(WARMUP_EVENTS);
    const info = sessionB.info();
    t.diagnostic(`click − flash leaving the server, ms: A ${fmt(wireA)}; B (+${EXTRA_VIDEO_MS} ms video) ${fmt(wireB)}`);
    t.diagnostic(`click − flash at the libwebrtc peers (after their jitter buffers), ms: A ${fmt(peerA)}; B ${fmt(peerB)}`);
    t.diagnostic(`B: video latency p50 ${info.stats.serverLatencyMs.p50} ms, audio relay delay ${info.audio.delayMs} ms`);
    assert.ok(info.stats.serverLatencyMs.p50 >= EXTRA_VIDEO_MS, 'B really is slower');
    for (const [name, wire] of [['A', wireA], ['B', wireB]] as const) {
      assert.ok(Math.abs(median(wire)) <= 40, `${name}: median click − flash ${median(wire).toFixed(0)} ms`);
      const out = wire.filter((o) => Math.abs(o) > 40);
      assert.ok(out.length <= wire.length / 3, `${name}: events out of ±40 ms: ${fmt(out)}`);
    }
    assert.ok(probeB.clicks.length >= EVENTS, 'a WHEP viewer gets the audio');
  } finally {
    await Promise.all([probeA.close(), probeB.close()]);
  }
});

test('audio=off: no audio comes back until setParams({audio: true}) turns it on', { timeout: 40_000 }, async () => {
  const p = await startAvPeer({ baseUrl: server.url, query: { renderer: 'passthrough', audio: 'off' }, periodMs: 1000 });
  peers.push(p);
  await waitUntil(() => p.flashes.length >= 3, 20_000, 'three flashes');
  assert.equal(p.clicks.length, 0, 'no click came back');
  const s = server.sessions.get(p.sessionId);
  assert.equal(s.info().audio.packetsOut, 0);
  assert.equal(s.info().audio.enabled, false);

  const ws = new WebSocket(server.url.replace(/^http/, 'ws') + '/v1/control');
  const reply = new Promise<{ ok: boolean }>((resolve) => ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    if (m.id === 1) resolve(m);
  }));
  ws.on('open', () => ws.send(JSON.stringify({ id: 1, op: 'session.setParams', session: p.sessionId, params: { audio: true } })));
  assert.equal((await reply).ok, true);
  ws.close();
  const viewer = await startAvViewer(server.url, p.sessionId);
  try {
    const before = p.clicks.length;
    await waitUntil(() => p.clicks.length >= before + 2 && viewer.clicks.length >= 2, 15_000, 'clicks after audio was turned on, at the caller and at a WHEP viewer');
  } finally {
    await viewer.close();
  }
  // On mesh-warp (which refuses parameters it does not know), the loop worker (a private part of
  // the session) dies: its replacement is set up with the session's params again, the audio switch not among them.
  await s.setRenderer('mesh-warp');
  const host = (s as unknown as { host: { worker: { worker: { terminate(): Promise<number> } } } }).host;
  await host.worker.worker.terminate();
  const out = s.info().stats.framesOut;
  await waitUntil(() => s.isClosed || s.info().stats.framesOut >= out + 10, 20_000, 'frames after the loop worker was restarted');
  assert.equal(s.isClosed, false, 'the session survived the restart');
});
