/**
 * Auth, isolation and limits through the real server (API key set; small rate and size limits):
 * missing/wrong key on HTTP and the socket, first-message auth, viewer tokens scoped to one
 * session and expiring, oversize uploads (HTTP 413, socket too_large, socket message > maxPayload
 * → close 1009), message floods (rate_limited replies, then close 1008 far past the limit), and
 * two concurrent sessions that never exchange frames (disjoint pattern id ranges).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { allocI420 } from '../../server/media/frame.ts';
import { drawPattern } from '../support/pattern.ts';
import { serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { closeAllPeers, startPeer, type Peer } from '../support/wrtc-peer.ts';
import { startViewer, waitUntil, WhepError } from './wrtc-viewer.ts';

const skip = !serverExists() && 'server/main.ts not present';
const KEY = 'auth-test-key-0123456789';
const MAX_PORTRAIT = 40_000;
const RATE = 5;
const BURST = 10;
let server: ServerHandle;
let wsUrl: string;
let peerA: Peer;
let peerB: Peer;
let idA: string;
let idB: string;

/** ids of A: 0..999, of B: 2000..2999. */
const rangeProducer = (offset: number) => (f: ReturnType<typeof allocI420>, seq: number) => drawPattern(f, offset + (seq % 1000));

before(async () => {
  if (skip) return;
  server = await startServer({
    args: ['--renderer', 'passthrough', '--api-key', KEY, '--control-rate', String(RATE), '--control-burst', String(BURST), '--max-portrait-bytes', String(MAX_PORTRAIT)],
  });
  wsUrl = server.url.replace(/^http/, 'ws') + '/v1/control';
  peerA = await startPeer({ baseUrl: server.url, apiKey: KEY, query: { renderer: 'passthrough' }, producer: rangeProducer(0) });
  peerB = await startPeer({ baseUrl: server.url, apiKey: KEY, query: { renderer: 'passthrough' }, producer: rangeProducer(2000) });
  idA = peerA.sessionUrl.split('/').pop()!;
  idB = peerB.sessionUrl.split('/').pop()!;
});

after(async () => {
  if (skip) return;
  await closeAllPeers();
  assert.equal(await server.stop(), 0);
});

const auth = (k = KEY) => ({ Authorization: `Bearer ${k}` });

async function status(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, init);
  await res.arrayBuffer();
  return res.status;
}

async function mint(id: string, ttlSeconds = 300): Promise<string> {
  const res = await fetch(`${server.url}/v1/sessions/${id}/tokens`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify({ ttlSeconds }) });
  assert.equal(res.status, 201);
  return ((await res.json()) as { token: string }).token;
}

/** Opens a socket; resolves with it and the messages it receives (JSON), or rejects with the HTTP status of a refused upgrade. */
function openSocket(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; msgs: any[]; closed: Promise<{ code: number; reason: string }> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const msgs: any[] = [];
    ws.on('message', (d, bin) => msgs.push(bin ? d : JSON.parse(d.toString())));
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.once('open', () => resolve({ ws, msgs, closed }));
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`upgrade refused ${res.statusCode}`), { status: res.statusCode })));
    ws.once('error', (e) => reject(e));
  });
}

async function rpc(s: { ws: WebSocket; msgs: any[] }, msg: Record<string, unknown>): Promise<any> {
  s.ws.send(JSON.stringify(msg));
  let found: any;
  await waitUntil(() => (found = s.msgs.find((m) => m.id === msg.id)) !== undefined, 5000, `reply to ${msg.id}`);
  return found;
}

test('HTTP: missing or wrong key → 401; the key → 200', { skip }, async () => {
  assert.equal(await status(`${server.url}/v1/sessions`), 401);
  assert.equal(await status(`${server.url}/v1/sessions`, { headers: auth('wrong-key-wrong-key-wrong') }), 401);
  assert.equal(await status(`${server.url}/v1/sessions`, { headers: auth() }), 200);
  assert.equal(await status(`${server.url}/v1/sessions/${idA}/tokens`, { method: 'POST' }), 401, 'minting needs the key');
});

test('control socket: wrong key refused at upgrade; no key sees nothing until auth', { skip, timeout: 30_000 }, async () => {
  await assert.rejects(openSocket(wsUrl, auth('wrong-key-wrong-key-wrong')), (e: { status?: number }) => e.status === 401);
  await assert.rejects(openSocket(`${wsUrl}?key=${KEY}`), (e: { status?: number }) => e.status === 400, 'keys are not accepted in URLs, not even the right one');

  const s = await openSocket(wsUrl);
  try {
    await waitUntil(() => s.msgs.some((m) => m.event === 'hello'), 5000, 'hello');
    assert.equal(s.msgs.find((m) => m.event === 'hello').authenticated, false);
    const denied = await rpc(s, { id: 1, op: 'session.list' });
    assert.deepEqual([denied.ok, denied.error.code], [false, 'unauthorized']);
    const wrong = await rpc(s, { id: 2, op: 'auth', key: 'nope-nope-nope-nope' });
    assert.equal(wrong.error.code, 'unauthorized');
    const ok = await rpc(s, { id: 3, op: 'auth', key: KEY });
    assert.equal(ok.ok, true);
    const list = await rpc(s, { id: 4, op: 'session.list' });
    assert.deepEqual(new Set(list.result.sessions.map((x: { id: string }) => x.id)), new Set([idA, idB]));
  } finally {
    s.ws.close();
  }
  const h = await openSocket(wsUrl, auth());
  try {
    const list = await rpc(h, { id: 'q', op: 'session.list' });
    assert.equal(list.result.sessions.length, 2, 'the key in the Authorization header authenticates at upgrade');
  } finally {
    h.ws.close();
  }
});

test('viewer tokens: A’s token watches A and nothing else; expired tokens are refused', { skip, timeout: 60_000 }, async () => {
  const tokA = await mint(idA);
  // A's token on A: WHEP works and shows A's ids.
  const v = await startViewer(server.url, idA, tokA);
  try {
    await v.waitFor(() => v.ids.filter((x) => x !== null).length >= 10, 20_000, 'frames for the token holder');
    assert.ok(v.ids.every((x) => x === null || x < 1000), 'A’s viewer sees A’s ids');
  } finally {
    assert.equal(await v.close(), 204, 'the token may DELETE its own viewer');
  }
  // ... but not B, nor any other route.
  await assert.rejects(startViewer(server.url, idB, tokA), (e: WhepError) => e.status === 403 && /another session/.test(e.body));
  assert.equal(await status(`${server.url}/v1/sessions`, { headers: auth(tokA) }), 403);
  assert.equal(await status(`${server.url}/v1/sessions/${idA}`, { headers: auth(tokA) }), 403);
  assert.equal(await status(`${server.url}/v1/sessions/${idA}`, { method: 'DELETE', headers: auth(tokA) }), 403);
  assert.equal(await status(`${server.url}/v1/sessions/${idA}/tokens`, { method: 'POST', headers: auth(tokA) }), 403);
  // The view page checks the token against its session.
  assert.equal(await status(`${server.url}/view/${idA}?token=${encodeURIComponent(tokA)}`), 200);
  assert.equal(await status(`${server.url}/view/${idB}?token=${encodeURIComponent(tokA)}`), 403);
  assert.equal(await status(`${server.url}/view/${idA}`), 401);
  // A tampered token is refused.
  const tampered = tokA.slice(0, -2) + (tokA.endsWith('AA') ? 'BB' : 'AA');
  await assert.rejects(startViewer(server.url, idA, tampered), (e: WhepError) => e.status === 401);
  // Expired.
  const short = await mint(idA, 1);
  await new Promise((r) => setTimeout(r, 2100));
  await assert.rejects(startViewer(server.url, idA, short), (e: WhepError) => e.status === 401 && /expired/.test(e.body));
  assert.equal(await status(`${server.url}/view/${idA}?token=${encodeURIComponent(short)}`), 401);
});

test('two concurrent sessions never exchange frames', { skip, timeout: 60_000 }, async (t) => {
  const markA = peerA.received.length;
  const markB = peerB.received.length;
  await peerA.waitFor(() => peerA.received.length >= markA + 60, 30_000);
  await peerB.waitFor(() => peerB.received.length >= markB + 60, 30_000);
  const idsA = peerA.received.map((r) => r.id).filter((x): x is number => x !== null);
  const idsB = peerB.received.map((r) => r.id).filter((x): x is number => x !== null);
  t.diagnostic(`A: ${idsA.length} frames, ids ${Math.min(...idsA)}..${Math.max(...idsA)}; B: ${idsB.length}, ${Math.min(...idsB)}..${Math.max(...idsB)}`);
  assert.ok(idsA.length >= 60 && idsB.length >= 60);
  assert.ok(idsA.every((x) => x < 1000), 'A only ever receives A’s ids');
  assert.ok(idsB.every((x) => x >= 2000 && x < 3000), 'B only ever receives B’s ids');
});

test('limits: oversize uploads, oversize messages, message floods', { skip, timeout: 60_000 }, async () => {
  const big = new Uint8Array(MAX_PORTRAIT + 1000);
  const res = await fetch(`${server.url}/v1/portraits`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'image/jpeg' }, body: big });
  assert.equal(res.status, 413);
  assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'too_large');

  const s = await openSocket(wsUrl, auth());
  const up = await rpc(s, { id: 'big', op: 'portrait.upload', data: Buffer.from(big).toString('base64') });
  assert.equal(up.error.code, 'too_large', 'a portrait over the limit inside an allowed message');
  // A message over maxPayload (≈ 4/3 of the portrait limit + 64 KiB) closes with 1009.
  s.ws.send(JSON.stringify({ id: 'huge', op: 'ping', pad: 'x'.repeat(300_000) }));
  const closed = await s.closed;
  assert.equal(closed.code, 1009);

  // Flood: over the bucket → rate_limited replies, the socket stays open.
  const f = await openSocket(wsUrl, auth());
  for (let i = 0; i < BURST + 10; i++) f.ws.send(JSON.stringify({ id: i, op: 'ping' }));
  await waitUntil(() => f.msgs.filter((m) => m.id !== undefined).length >= BURST + 10, 5000, 'flood replies');
  const limited = f.msgs.filter((m) => m.ok === false && m.error.code === 'rate_limited');
  assert.ok(limited.length >= 8, `${limited.length} rate_limited replies`);
  assert.ok(limited[0].error.details.retryAfterMs > 0);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await rpc(f, { id: 'after', op: 'ping' })).ok, true, 'the socket works again after the flood');
  // Far beyond the limit: closed with 1008.
  for (let i = 0; i < BURST * 8; i++) f.ws.send(JSON.stringify({ id: `x${i}`, op: 'ping' }));
  const fc = await f.closed;
  assert.equal(fc.code, 1008);
  assert.match(fc.reason, /rate/);
});
