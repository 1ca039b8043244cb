// npm test: alone — admission control learns a session's cost from the CPU it sees.
/**
 * Session lifecycle and bad input over real HTTP and real WebRTC (libwebrtc peers): every bad
 * request gets a precise error, nothing leaks, and the server stays healthy afterwards.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer, type ServerHandle } from '../support/server.ts';
import { startPeer } from '../support/wrtc-peer.ts';
import { metricValue, waitUntil } from '../support/wait.ts';

let srv: ServerHandle;

before(async () => {
  srv = await startServer({ args: ['--renderer', 'passthrough', '--ice-timeout', '2', '--max-sessions', '2'] });
});
after(async () => {
  assert.equal(await srv.stop(), 0, 'SIGTERM shuts the server down cleanly with exit code 0');
});

async function healthy(): Promise<void> {
  const r = await fetch(`${srv.url}/healthz`);
  assert.equal(r.status, 200);
  const h = await r.json();
  // 'degraded' only with its reasons (a loaded test machine can lag the event loop), never an error.
  assert.equal(h.status, h.reasons ? 'degraded' : 'ok', JSON.stringify(h));
}

async function postOffer(body: string, type = 'application/sdp', query = ''): Promise<{ status: number; json: any }> {
  const r = await fetch(`${srv.url}/v1/sessions${query}`, { method: 'POST', headers: { 'content-type': type }, body });
  return { status: r.status, json: await r.json().catch(() => null) };
}

async function sessionCount(): Promise<number> {
  return (await (await fetch(`${srv.url}/v1/sessions`)).json()).sessions.length;
}

test('malformed SDP → 400 bad_sdp with a message; the server stays healthy', async () => {
  for (const body of ['', 'hello', 'v=0\r\nnot sdp at all\r\n', '\u0000\u0001\u0002', 'v=0\r\nm=video x\r\n']) {
    const r = await postOffer(body);
    assert.equal(r.status, 400, `body ${JSON.stringify(body)}`);
    assert.equal(r.json.error.code, 'bad_sdp');
    assert.ok(r.json.error.message.length > 10);
  }
  await healthy();
  assert.equal(await sessionCount(), 0, 'no half-created session is left behind');
});

test('an offer with no video, or the wrong content type, is refused clearly', async () => {
  const audioOnly = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=rtpmap:111 opus/48000/2', 'a=sendrecv', ''].join('\r\n');
  const r = await postOffer(audioOnly);
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'no_video');
  const t = await postOffer(audioOnly, 'text/plain');
  assert.equal(t.status, 415);
  assert.equal(t.json.error.code, 'unsupported_media_type');
  const big = await postOffer('v=0\r\n' + 'a=x:' + 'y'.repeat(70_000) + '\r\n');
  assert.equal(big.status, 413);
  await healthy();
});

test('unknown renderer → 400, unknown portrait → 404, unknown session → 404 on GET, PATCH and DELETE', async () => {
  const r = await postOffer('v=0\r\n', 'application/sdp', '?renderer=nope');
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'renderer_unavailable');
  const p = await postOffer('v=0\r\n', 'application/sdp', '?portrait=nope');
  assert.equal(p.status, 404);
  assert.match(p.json.error.message, /no portrait nope/);
  for (const method of ['GET', 'DELETE', 'PATCH']) {
    const res = await fetch(`${srv.url}/v1/sessions/does-not-exist`, { method, headers: { 'content-type': 'application/trickle-ice-sdpfrag' }, body: method === 'PATCH' ? 'a=candidate:1 1 udp 1 127.0.0.1 9 typ host' : undefined });
    assert.equal(res.status, 404, method);
    assert.equal((await res.json()).error.code, 'not_found');
  }
  await healthy();
});

test('DELETE ends a live session and frees it; a second DELETE is 404', async () => {
  const peer = await startPeer({ baseUrl: srv.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 });
  try {
    await peer.waitFor((s) => s.received >= 3, 20_000);
    const list = (await (await fetch(`${srv.url}/v1/sessions`)).json()).sessions;
    assert.equal(list.length, 1);
    const id = list[0].id;
    const info = await (await fetch(`${srv.url}/v1/sessions/${id}`)).json();
    assert.equal(info.renderer, 'passthrough');
    assert.ok(info.stats.framesOut >= 3, 'stats count the frames sent back');
    assert.equal(info.stats.inWidth, 320);
    const first = await fetch(`${srv.url}/v1/sessions/${id}`, { method: 'DELETE' });
    assert.equal(first.status, 204);
    const second = await fetch(`${srv.url}/v1/sessions/${id}`, { method: 'DELETE' });
    assert.equal(second.status, 404);
    assert.equal(await sessionCount(), 0);
  } finally {
    await peer.close({ vanish: true });
  }
  await healthy();
});

test('a client that vanishes without DELETE is freed once it has sent nothing for --ice-timeout (long before the 30 s of ICE consent)', async () => {
  const peer = await startPeer({ baseUrl: srv.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 });
  await peer.waitFor((s) => s.received >= 3, 20_000);
  assert.equal(await sessionCount(), 1);
  await peer.close({ vanish: true });
  await waitUntil(async () => (await sessionCount()) === 0, 15_000, 'the session to be freed within 15 s of its peer vanishing (--ice-timeout 2)');
  await healthy();
});

test('over --max-sessions → 503 with Retry-After; existing sessions are unaffected', async () => {
  const a = await startPeer({ baseUrl: srv.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 });
  const b = await startPeer({ baseUrl: srv.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 });
  try {
    await assert.rejects(
      startPeer({ baseUrl: srv.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 }),
      (err: { status?: number; body?: string }) => err.status === 503 && /too_many_sessions/.test(err.body ?? ''),
    );
    const before = a.stats().received;
    await a.waitFor((s) => s.received >= before + 5, 20_000);
  } finally {
    await a.close();
    await b.close();
  }
  assert.equal(await sessionCount(), 0);
});

test('/metrics is Prometheus text with the loop counters; /healthz reports the event-loop lag', async () => {
  const peer = await startPeer({ baseUrl: srv.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 });
  try {
    await peer.waitFor((s) => s.received >= 5, 20_000);
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    assert.ok(value('xpl_frames_out_total') >= 5, 'frames out counted');
    assert.ok(value('xpl_frames_in_total') >= value('xpl_frames_out_total'));
    assert.equal(value('xpl_sessions'), 1);
    assert.match(text, /^xpl_stage_seconds_bucket\{le="0\.05",stage="encode"\} \d+$/m);
    assert.match(text, /^# TYPE xpl_event_loop_lag_seconds gauge$/m);
    const health = await (await fetch(`${srv.url}/healthz`)).json();
    assert.equal(typeof health.eventLoopLagMs, 'number');
    // Degraded exactly when it says why (a busy test machine may make it so).
    assert.equal(health.status, health.reasons ? 'degraded' : 'ok');
    if (health.reasons) assert.ok(health.reasons.length > 0 && health.reasons.every((r: unknown) => typeof r === 'string'));
    assert.equal(typeof health.capacity.loadCores, 'number');
    assert.ok(health.capacity.budgetCores > 0);
  } finally {
    await peer.close();
  }
});

test('admission control: past the CPU budget (--max-load) a new session gets 503 with the reason; the running one keeps going', async () => {
  // A budget of 1 % of the cores: the first session is admitted (nothing is known yet), and once
  // its cost is measured nothing more fits.
  const tight = await startServer({ args: ['--renderer', 'passthrough', '--max-load', '0.01'] });
  const a = await startPeer({ baseUrl: tight.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 });
  try {
    await a.waitFor((s) => s.received >= 5, 20_000);
    await waitUntil(async () => (await (await fetch(`${tight.url}/healthz`)).json()).capacity.sessionCores > 0, 20_000, 'a measured session cost');
    const res = await fetch(`${tight.url}/v1/sessions?renderer=passthrough`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: a.pc.localDescription!.sdp });
    const body = await res.json();
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '5');
    assert.equal(body.error.code, 'too_many_sessions');
    assert.match(body.error.message, /at capacity.*--max-load/);
    const metricsText = await (await fetch(`${tight.url}/metrics`)).text();
    assert.equal(metricValue(metricsText, 'xpl_admissions_refused_total'), 1);
    const before = a.stats().received;
    await a.waitFor((s) => s.received >= before + 10, 20_000);
  } finally {
    await a.close();
    await tight.stop();
  }
});
