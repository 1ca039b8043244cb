/**
 * The HTTP edge as WHIP (RFC 9725) and WHEP clients on other origins meet it, against an in-process
 * server with an API key, a CORS origin, a STUN and a TURN server configured:
 * OPTIONS on every endpoint (Allow, Accept-Post, CORS preflight, ICE Link headers only when
 * authenticated), 405 with Allow, Link headers and ETag on 201, If-Match on PATCH (412, 422), body
 * limits on every route (a 10 MB SDP refused from its headers, a chunked one as soon as it passes
 * the limit, the server healthy after), publish tokens (one live session each, replaced on
 * reconnect, scoped), viewer tokens naming a publisher, ICE servers for any credential,
 * /metrics auth, and no keys in URLs.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { loadConfig, type Config } from '../../server/config.ts';
import { createLogger } from '../../server/log.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { minimalOffer } from '../faults/offer.ts';

const KEY = 'edge-test-key-0123456789';
const METRICS = 'metrics-token-0123456789';
const ORIGIN = 'https://player.example.com';
let server: RunningServer;
let base: string;

before(async () => {
  const parsed = loadConfig(
    [
      '--port', '0', '--renderer', 'passthrough', '--api-key', KEY, '--cors-origin', ORIGIN, '--metrics-token', METRICS, '--ice-timeout', '30',
      '--ice-server', 'stun:stun.example.net:3478', '--ice-server', 'turn:alice:s%3Acret@turn.example.net:3478?transport=udp',
    ],
    {},
  );
  server = await startServer((parsed as { config: Config }).config, createLogger('warn'));
  base = server.url;
});
after(async () => {
  await server?.close();
});

const key = { Authorization: `Bearer ${KEY}` };
const sdpHeaders = { ...key, 'Content-Type': 'application/sdp' };

async function req(path: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; text: string; json: any }> {
  const r = await fetch(`${base}${path}`, init);
  const text = await r.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* SDP or empty */
  }
  return { status: r.status, headers: r.headers, text, json };
}

async function healthy(): Promise<void> {
  const r = await req('/healthz');
  assert.equal(r.status, 200);
}

test('OPTIONS on every endpoint: 200, Allow, Accept-Post/Accept-Patch, CORS preflight for the allowed origin only', async () => {
  const created = await req('/v1/sessions', { method: 'POST', headers: sdpHeaders, body: minimalOffer() });
  assert.equal(created.status, 201, created.text);
  const id = created.headers.get('location')!.split('/').pop()!;
  const endpoints: Array<[string, RegExp, string | null]> = [
    ['/v1/sessions', /POST/, 'application/sdp'],
    [`/v1/sessions/${id}`, /PATCH.*DELETE|DELETE.*PATCH/, null],
    [`/v1/sessions/${id}/whep`, /POST/, 'application/sdp'],
    [`/v1/sessions/${id}/whep/some-viewer`, /DELETE/, null],
    [`/v1/sessions/${id}/tokens`, /POST/, 'application/json'],
    ['/v1/publish-tokens', /POST/, 'application/json'],
    ['/v1/portraits', /POST/, 'image/jpeg, image/png, image/webp'],
    ['/v1/portraits/default', /DELETE/, null],
    ['/v1/ice-servers', /GET/, null],
    ['/healthz', /GET/, null],
    ['/metrics', /GET/, null],
  ];
  for (const [path, allow, acceptPost] of endpoints) {
    const pre = await req(path, { method: 'OPTIONS', headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
    assert.equal(pre.status, 200, path);
    assert.match(pre.headers.get('allow') ?? '', allow, `${path} Allow`);
    assert.equal(pre.headers.get('accept-post'), acceptPost, `${path} Accept-Post`);
    assert.equal(pre.headers.get('access-control-allow-origin'), ORIGIN, `${path} ACAO`);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /If-Match/);
    assert.equal(pre.headers.get('link'), null, `${path}: no ICE credentials for an unauthenticated preflight`);
    const foreign = await req(path, { method: 'OPTIONS', headers: { Origin: 'https://evil.example.org', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(foreign.headers.get('access-control-allow-origin'), null, `${path}: no CORS for other origins`);
  }
  assert.equal((await req(`/v1/sessions/${id}`, { method: 'OPTIONS' })).headers.get('accept-patch'), 'application/trickle-ice-sdpfrag');
  // An authenticated OPTIONS on a WHIP/WHEP endpoint gets the ICE servers (RFC 9725 §4.6).
  const authed = await req('/v1/sessions', { method: 'OPTIONS', headers: key });
  assert.match(authed.headers.get('link') ?? '', /<stun:stun\.example\.net:3478>; rel="ice-server"/);
  assert.match(authed.headers.get('link') ?? '', /<turn:turn\.example\.net:3478\?transport=udp>; rel="ice-server"; username="alice"; credential="s:cret"; credential-type="password"/);
  assert.equal((await req(`/v1/sessions/${id}`, { method: 'DELETE', headers: key })).status, 204);
});

test('WHIP: 201 with Location, ETag, Link headers and CORS exposure; unsupported methods 405 with Allow', async () => {
  const r = await req('/v1/sessions', { method: 'POST', headers: { ...sdpHeaders, Origin: ORIGIN }, body: minimalOffer({ direction: 'sendonly' }) });
  assert.equal(r.status, 201, r.text);
  const id = r.headers.get('location')!.split('/').pop()!;
  assert.equal(r.headers.get('etag'), `"${id}"`);
  assert.equal(r.headers.get('content-type'), 'application/sdp');
  assert.equal((r.headers.get('link') ?? '').split(/,\s*(?=<)/).length, 2, 'one Link per ICE server');
  assert.equal(r.headers.get('access-control-allow-origin'), ORIGIN);
  assert.match(r.headers.get('access-control-expose-headers') ?? '', /Location.*ETag.*Link/);
  const put = await req('/v1/sessions', { method: 'PUT', headers: key });
  assert.equal(put.status, 405);
  assert.match(put.headers.get('allow') ?? '', /POST/);
  assert.equal(put.json.error.code, 'method_not_allowed');
  const patchViewer = await req(`/v1/sessions/${id}/whep/x`, { method: 'PATCH', headers: { ...key, 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: 'a=end-of-candidates' });
  assert.equal(patchViewer.status, 405, 'WHEP sessions take no PATCH (the answer has every candidate)');
  assert.equal(patchViewer.headers.get('allow'), 'OPTIONS, DELETE');

  // Trickle ICE with If-Match.
  const frag = (ufrag?: string) => `${ufrag ? `a=ice-ufrag:${ufrag}\r\n` : ''}a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n`;
  const patch = (headers: Record<string, string>, body = frag()) => req(`/v1/sessions/${id}`, { method: 'PATCH', headers: { ...key, 'Content-Type': 'application/trickle-ice-sdpfrag', ...headers }, body });
  assert.equal((await patch({ 'If-Match': '"not-this-session"' })).status, 412);
  const restart = await patch({ 'If-Match': '*' });
  assert.equal(restart.status, 422);
  assert.equal(restart.json.error.code, 'ice_restart_unsupported');
  assert.equal((await patch({ 'If-Match': `"${id}"` })).status, 204);
  assert.equal((await patch({ 'Content-Type': 'text/plain' })).status, 415);
  assert.equal((await patch({}, frag('different-ufrag'))).status, 422, 'a new ufrag is an ICE restart');
  assert.equal((await patch({}, 'a=x:' + 'y'.repeat(20_000))).status, 413);
  assert.equal((await req(`/v1/sessions/${id}`, { method: 'DELETE', headers: { ...key, 'If-Match': '"stale"' } })).status, 204, 'DELETE ignores If-Match');
});

/** Sends a request's head and part of its body on a raw socket; resolves with the status line the server answers. */
function rawPost(path: string, headers: string, bodyPart: Buffer, chunked: boolean): Promise<{ status: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const url = new URL(base);
    const t0 = performance.now();
    const s = connect(Number(url.port), url.hostname, () => {
      s.write(`POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/sdp\r\n${headers}\r\n`);
      if (chunked) {
        // Chunks until well past the limit; the final empty chunk is never sent.
        for (let i = 0; i < 40; i++) s.write(`${bodyPart.length.toString(16)}\r\n${bodyPart}\r\n`);
      } else {
        s.write(bodyPart);
      }
    });
    let got = '';
    s.on('data', (d) => {
      got += d.toString();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        resolve({ status: Number(m[1]), ms: performance.now() - t0 });
        s.destroy();
      }
    });
    s.on('error', reject);
    setTimeout(() => {
      s.destroy();
      reject(new Error('no answer within 5 s: the server waited for the body'));
    }, 5000);
  });
}

test('body limits: a 10 MB SDP is refused from its headers, a chunked one as soon as it passes 64 KiB; every route has a limit', async () => {
  // Content-Length says 10 MB, only 1 KiB is sent: the answer cannot have waited for the body.
  const declared = await rawPost('/v1/sessions', 'Content-Length: 10000000\r\n', Buffer.alloc(1024, 'a'), false);
  assert.equal(declared.status, 413);
  const chunked = await rawPost('/v1/sessions', 'Transfer-Encoding: chunked\r\n', Buffer.alloc(4096, 'a'), true);
  assert.equal(chunked.status, 413, 'refused while the chunked body is still open');
  // Through fetch, a real 10 MB body: 413 and the server stays healthy.
  const big = await req('/v1/sessions', { method: 'POST', headers: sdpHeaders, body: 'v=0\r\n' + 'a'.repeat(10_000_000) });
  assert.equal(big.status, 413);
  assert.equal(big.json.error.code, 'too_large');
  const limits: Array<[string, string, string]> = [
    ['/v1/sessions/x/whep', 'POST', 'application/sdp'],
    ['/v1/sessions/x/tokens', 'POST', 'application/json'],
    ['/v1/publish-tokens', 'POST', 'application/json'],
    ['/v1/sessions/x', 'DELETE', 'text/plain'],
    ['/v1/portraits/default', 'DELETE', 'text/plain'],
  ];
  for (const [path, method, type] of limits) {
    const r = await req(path, { method, headers: { ...key, 'Content-Type': type }, body: 'x'.repeat(70_000) });
    assert.equal(r.status, 413, `${method} ${path}`);
  }
  await healthy();
});

test('publish token: one live session at a time (a new offer replaces it), scoped to it; its viewer token follows the publisher', async () => {
  const minted = await req('/v1/publish-tokens', { method: 'POST', headers: { ...key, 'Content-Type': 'application/json' }, body: JSON.stringify({ ttlSeconds: 600 }) });
  assert.equal(minted.status, 201, minted.text);
  const { token, publishId, viewerToken, viewUrl, whepUrl } = minted.json;
  assert.match(publishId, /^pub-/);
  assert.equal(whepUrl, `/v1/sessions/${publishId}/whep`);
  const pub = { Authorization: `Bearer ${token}` };
  const view = { Authorization: `Bearer ${viewerToken}` };

  // Nothing published yet: the WHEP endpoint of the publisher is 404, its view page loads.
  assert.equal((await req(whepUrl, { method: 'POST', headers: { ...view, 'Content-Type': 'application/sdp' }, body: minimalOffer({ direction: 'recvonly' }) })).status, 404);
  assert.equal((await req(viewUrl)).status, 200);

  const first = await req('/v1/sessions?renderer=passthrough', { method: 'POST', headers: { ...pub, 'Content-Type': 'application/sdp' }, body: minimalOffer({ direction: 'sendonly' }) });
  assert.equal(first.status, 201, first.text);
  const firstId = first.headers.get('location')!.split('/').pop()!;
  const second = await req('/v1/sessions?renderer=passthrough', { method: 'POST', headers: { ...pub, 'Content-Type': 'application/sdp' }, body: minimalOffer({ direction: 'sendonly' }) });
  assert.equal(second.status, 201);
  const secondId = second.headers.get('location')!.split('/').pop()!;
  assert.equal((await req(`/v1/sessions/${firstId}`, { headers: key })).status, 404, 'the reconnect replaced the first session');
  assert.equal((await req(`/v1/sessions/${secondId}`, { headers: key })).status, 200);

  // The viewer token of the publisher watches its live session, by publish id or session id.
  const w = await req(whepUrl, { method: 'POST', headers: { ...view, 'Content-Type': 'application/sdp' }, body: minimalOffer({ direction: 'recvonly' }) });
  assert.equal(w.status, 201, w.text);
  assert.match(w.headers.get('location')!, new RegExp(`^/v1/sessions/${secondId}/whep/`));
  assert.equal((await req(w.headers.get('location')!, { method: 'DELETE', headers: view })).status, 204);

  // Scope: no listing, no other sessions, no minting; its own session it may PATCH and DELETE.
  assert.equal((await req('/v1/sessions', { headers: pub })).status, 403);
  const other = await req('/v1/sessions', { method: 'POST', headers: sdpHeaders, body: minimalOffer() });
  const otherId = other.headers.get('location')!.split('/').pop()!;
  assert.equal((await req(`/v1/sessions/${otherId}`, { method: 'DELETE', headers: pub })).status, 403);
  assert.equal((await req(`/v1/sessions/${otherId}/whep`, { method: 'POST', headers: { ...view, 'Content-Type': 'application/sdp' }, body: minimalOffer({ direction: 'recvonly' }) })).status, 403);
  assert.equal((await req('/v1/publish-tokens', { method: 'POST', headers: pub })).status, 403);
  assert.equal((await req(`/v1/sessions/${secondId}`, { method: 'DELETE', headers: pub })).status, 204);
  assert.equal((await req(`/v1/sessions/${otherId}`, { method: 'DELETE', headers: key })).status, 204);
  // A tampered publish token is refused.
  assert.equal((await req('/v1/sessions', { method: 'POST', headers: { Authorization: `Bearer ${token.slice(0, -3)}AAA`, 'Content-Type': 'application/sdp' }, body: minimalOffer() })).status, 401);
});

test('ICE servers for any credential; /metrics behind its token; no API keys in URLs', async () => {
  const ice = await req('/v1/ice-servers', { headers: key });
  assert.deepEqual(ice.json.iceServers, [{ urls: 'stun:stun.example.net:3478' }, { urls: 'turn:turn.example.net:3478?transport=udp', username: 'alice', credential: 's:cret' }]);
  assert.equal((await req('/v1/ice-servers')).status, 401);
  const viewer = await req('/v1/publish-tokens', { method: 'POST', headers: key });
  assert.equal((await req('/v1/ice-servers', { headers: { Authorization: `Bearer ${viewer.json.viewerToken}` } })).status, 200);
  assert.equal((await req('/v1/ice-servers', { headers: { Authorization: `Bearer ${viewer.json.token}` } })).status, 200);

  const noToken = await req('/metrics');
  assert.equal(noToken.status, 401);
  assert.match(noToken.headers.get('www-authenticate') ?? '', /^Bearer/);
  assert.equal((await req('/metrics', { headers: { Authorization: `Bearer ${METRICS}` } })).status, 200);
  assert.equal((await req('/metrics', { headers: key })).status, 200);

  const inUrl = await req(`/v1/sessions?key=${KEY}`);
  assert.equal(inUrl.status, 400);
  assert.match(inUrl.json.error.message, /not accepted in URLs/);
  assert.equal((await req(`/view/anything?key=${KEY}`)).status, 400);
});
