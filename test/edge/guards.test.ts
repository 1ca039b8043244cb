/**
 * Guards for callers that have not proved who they are:
 * - control socket, server with a key: 1,000 unauthenticated sockets from many addresses → at most
 *   64 admitted (8 per address), the rest refused with 503/429; a keyed socket works throughout;
 *   the admitted ones are closed at the 5 s auth deadline; an unauthenticated socket may not send
 *   more than 4 KiB, an authenticated one may; the server is healthy after.
 * - keyless server: the Host allow-list (DNS rebinding) on HTTP and on the socket upgrade,
 *   --allowed-host, and cross-origin sockets only from --cors-origin.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { loadConfig, type Config } from '../../server/config.ts';
import { MAX_PENDING_AUTH, MAX_PENDING_AUTH_PER_ADDRESS } from '../../server/control/limits.ts';
import { createLogger } from '../../server/log.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { waitUntil } from '../support/wait.ts';

const KEY = 'guards-test-key-0123456789';
let keyed: RunningServer;
let keyless: RunningServer;

async function start(args: string[]): Promise<RunningServer> {
  const parsed = loadConfig(['--port', '0', '--renderer', 'passthrough', ...args], {});
  return startServer((parsed as { config: Config }).config, createLogger('warn'));
}

before(async () => {
  keyed = await start(['--api-key', KEY]);
  keyless = await start(['--allowed-host', 'avatar.example.test', '--cors-origin', 'https://app.example.test']);
});
after(async () => {
  await keyed?.close();
  await keyless?.close();
});

type Opened = { ws: WebSocket; closed: Promise<number> };

/** Opens a control socket; resolves with it, or with the HTTP status of a refused upgrade. */
function open(url: string, opts: { localAddress?: string; headers?: Record<string, string> } = {}): Promise<Opened | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    ws.once('open', () => resolve({ ws, closed }));
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.once('error', (e) => reject(e));
  });
}

test('1,000 unauthenticated control sockets: capped at 64 (8 per address), refused beyond, closed at the deadline; keyed sockets unaffected', { timeout: 60_000 }, async () => {
  const url = keyed.url.replace(/^http/, 'ws') + '/v1/control';
  // Nine from one address: the ninth hits the per-address cap.
  const results: Array<Opened | number> = [];
  for (let i = 0; i < 9; i++) results.push(await open(url, { localAddress: '127.0.2.1' }));
  assert.equal(MAX_PENDING_AUTH_PER_ADDRESS, 8);
  assert.deepEqual(results.map((r) => (typeof r === 'number' ? r : 'open')), [...Array(8).fill('open'), 429]);
  // 991 more from 20 other loopback addresses (127.0.1.1 …): the server-wide cap stops them at 64 in all.
  for (let batch = 0; batch < 10; batch++) {
    const n = batch === 9 ? 91 : 100;
    results.push(...(await Promise.all(Array.from({ length: n }, (_, i) => open(url, { localAddress: `127.0.1.${1 + ((batch * 100 + i) % 20)}` })))));
  }
  const admitted = results.filter((r): r is Opened => typeof r !== 'number');
  const refused = results.filter((r): r is number => typeof r === 'number');
  assert.equal(results.length, 1000);
  assert.equal(admitted.length, MAX_PENDING_AUTH, 'the server-wide cap of sockets waiting to authenticate (64)');
  assert.ok(refused.every((s) => s === 503 || s === 429), `refusals ${[...new Set(refused)]}`);
  // A client with the key at upgrade is not pre-auth: it is admitted and served.
  const authed = await open(url, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.ok(typeof authed !== 'number');
  const reply = new Promise<any>((r) => authed.ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    if (m.id === 1) r(m);
  }));
  authed.ws.send(JSON.stringify({ id: 1, op: 'session.list' }));
  assert.equal((await reply).ok, true);
  // Deadline: every admitted socket is closed with 1008 within the 5 s auth window.
  const codes = await Promise.all(admitted.map((a) => a.closed));
  assert.ok(codes.every((c) => c === 1008), `close codes ${[...new Set(codes)]}`);
  await waitUntil(async () => (await open(url, { localAddress: '127.0.1.1' })) !== 503, 5000, 'a slot free again');
  authed.ws.close();
  assert.equal((await fetch(`${keyed.url}/healthz`)).status, 200);
});

test('an unauthenticated socket may send at most 4 KiB; after auth the full limit applies', async () => {
  const url = keyed.url.replace(/^http/, 'ws') + '/v1/control';
  const big = JSON.stringify({ id: 'big', op: 'ping', pad: 'x'.repeat(64 * 1024) });
  const pre = await open(url);
  assert.ok(typeof pre !== 'number');
  pre.ws.send(big);
  assert.equal(await pre.closed, 1009, 'Max payload size exceeded before auth');

  const s = await open(url);
  assert.ok(typeof s !== 'number');
  const msgs: any[] = [];
  s.ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
  s.ws.send(JSON.stringify({ id: 'a', op: 'auth', key: KEY }));
  await waitUntil(() => msgs.some((m) => m.id === 'a'), 5000, 'auth reply');
  s.ws.send(big);
  await waitUntil(() => msgs.some((m) => m.id === 'big'), 5000, 'reply to the big message');
  assert.equal(msgs.find((m) => m.id === 'big').error.code, 'bad_request', 'read and validated (unknown field), not refused for size');
  s.ws.close();
});

/** A GET with an arbitrary Host header (fetch does not let one set it). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = request(url, { headers: { Host: host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    r.on('error', reject);
    r.end();
  });
}

test('keyless server: Host allow-list on HTTP and socket upgrades; cross-origin sockets only from --cors-origin', async () => {
  const port = new URL(keyless.url).port;
  assert.equal(await getWithHost(`${keyless.url}/v1/sessions`, `rebind.attacker.example:${port}`), 403, 'a DNS-rebinding name');
  assert.equal(await getWithHost(`${keyless.url}/`, `rebind.attacker.example:${port}`), 403, 'the web app too');
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `192.0.2.7:${port}`, `avatar.example.test:${port}`]) {
    assert.equal(await getWithHost(`${keyless.url}/v1/sessions`, host), 200, host);
  }
  const ws = keyless.url.replace(/^http/, 'ws') + '/v1/control';
  assert.equal(await open(ws, { headers: { Host: 'rebind.attacker.example' } }), 403);
  assert.equal(await open(ws, { headers: { Origin: 'https://evil.example.test' } }), 403, 'a page on another origin');
  const allowed = await open(ws, { headers: { Origin: 'https://app.example.test' } });
  assert.ok(typeof allowed !== 'number', 'the allowed origin');
  allowed.ws.close();
  // The keyed server needs no allow-list: its key is the protection.
  assert.equal(await getWithHost(`${keyed.url}/healthz`, 'any.name.example'), 200);
});
