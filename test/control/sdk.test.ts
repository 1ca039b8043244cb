// npm test: alone — counts stats events in a 2 s window.
/**
 * The SDK (client/sdk) against the real server, for both control-socket formats (JSON text
 * frames and msgpack binary frames): every HTTP route and socket operation, stats events at a
 * chosen rate, typed errors for bad messages (the socket stays open), and reconnect with
 * resubscription.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import * as msgpack from '@msgpack/msgpack';
import WebSocket from 'ws';
import { XplApiError, XplClient, type ControlSocket, type StatsEvent } from '../../client/sdk/index.js';
import { REPO_ROOT, serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { closeAllPeers, startPeer, type Peer } from '../support/wrtc-peer.ts';
import { waitUntil } from './wrtc-viewer.ts';

const skip = !serverExists() && 'server/main.ts not present';
const KEY = 'sdk-test-key-0123456789';
let server: ServerHandle;
let face: Uint8Array;

before(async () => {
  if (skip) return;
  face = new Uint8Array(await readFile(`${REPO_ROOT}test/fixtures/grace_hopper.jpg`));
  server = await startServer({ args: ['--renderer', 'passthrough', '--api-key', KEY, '--control-rate', '200', '--control-burst', '200'] });
});

after(async () => {
  if (skip) return;
  await closeAllPeers();
  assert.equal(await server.stop(), 0);
});

const client = () => new XplClient({ baseUrl: server.url, apiKey: KEY, WebSocket: WebSocket as never, msgpack });

async function expectError(p: Promise<unknown>, code: string, re?: RegExp): Promise<XplApiError> {
  const err = await p.then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => e as XplApiError,
  );
  assert.ok(err instanceof XplApiError, `an XplApiError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (re) assert.match(err.message, re);
  return err;
}

test('HTTP routes through the SDK', { skip, timeout: 90_000 }, async () => {
  const c = client();
  const h = await c.health();
  assert.equal(h.status, 'ok');
  assert.match(await c.metrics(), /xpl_sessions/);
  const p = await c.uploadPortrait(face, 'image/jpeg');
  assert.ok(p.face, 'the portrait has a face');
  assert.ok((await c.listPortraits()).some((x) => x.id === p.id));
  assert.equal((await c.getPortrait(p.id)).id, p.id);
  await c.deletePortrait(p.id);
  await expectError(c.getPortrait(p.id), 'not_found');
  await expectError(c.uploadPortrait(new Uint8Array([1, 2, 3]), 'image/png'), 'unsupported_media_type');
  await expectError(new XplClient({ baseUrl: server.url }).listSessions(), 'unauthorized');

  const peer = await startPeer({ baseUrl: server.url, apiKey: KEY, query: { renderer: 'passthrough' } });
  try {
    const id = peer.sessionUrl.split('/').pop()!;
    assert.ok((await c.listSessions()).some((s) => s.id === id));
    const info = await c.getSession(id);
    assert.equal(info.renderer, 'passthrough');
    assert.equal(info.viewers, 0);
    const t = await c.createViewerToken(id, { ttlSeconds: 60 });
    assert.match(t.token, /^xplv1\./);
    assert.ok(Date.parse(t.expiresAt) > Date.now() + 50_000 && Date.parse(t.expiresAt) <= Date.now() + 61_000);
    assert.equal(c.viewUrl(id, { token: t.token }), t.viewUrl);
    await expectError(c.createViewerToken(id, { ttlSeconds: 0 }), 'bad_request');
    await c.deleteSession(id);
    await expectError(c.getSession(id), 'not_found');
  } finally {
    await peer.close({ vanish: true });
  }
});

for (const format of ['json', 'msgpack'] as const) {
  test(`control socket (${format}): every operation`, { skip, timeout: 180_000 }, async (t) => {
    const c = client();
    const ctl = c.control({ format });
    let peer: Peer | undefined;
    try {
      await ctl.ready();
      const frames: string[] = [];
      ctl.ws.on('message', (_d: unknown, isBinary: boolean) => frames.push(isBinary ? 'binary' : 'text'));
      assert.ok((await ctl.ping()).pong > 0);
      assert.ok(frames.length >= 1 && frames.every((f) => f === (format === 'json' ? 'text' : 'binary')), `replies come as ${format} frames: ${frames}`);

      // Portraits over the socket: bytes in msgpack, base64 in JSON.
      const p = await ctl.uploadPortrait(face);
      assert.ok(p.id && p.face);
      assert.ok((await ctl.listPortraits()).some((x) => x.id === p.id));

      const created: string[] = [];
      ctl.on('session.created', (e) => created.push(e.session.id));
      const updates: string[] = [];
      ctl.on('session.updated', (e) => updates.push(e.session.state));
      peer = await startPeer({ baseUrl: server.url, apiKey: KEY, query: { renderer: 'passthrough' }, keepFrames: 2 });
      const id = peer.sessionUrl.split('/').pop()!;
      await waitUntil(() => created.includes(id), 5000, 'session.created event');
      assert.ok((await ctl.listSessions()).some((s) => s.id === id));
      assert.equal((await ctl.getSession(id)).portraitId, 'default');
      await peer.waitFor((s) => s.decoded >= 10, 30_000);

      // Portrait switch without renegotiation: the same peer keeps receiving.
      assert.equal((await ctl.setPortrait(id, p.id)).portraitId, p.id);
      await expectError(ctl.setPortrait(id, 'no-such-portrait'), 'not_found');

      // Parameters, including the background post-process: a colour background changes the corners.
      const params = await ctl.setParams(id, { expressionGain: 1.5, poseGain: 0.5, smoothing: 0.2, gaze: false, background: { mode: 'colour', colour: '#00ff00' } });
      assert.deepEqual(params, { expressionGain: 1.5, poseGain: 0.5, smoothing: 0.2, gaze: false, background: { mode: 'colour', colour: '#00ff00' } });
      const n0 = peer.received.length;
      await peer.waitFor(() => peer!.received.length >= n0 + 15, 10_000);
      const f = peer.kept[peer.kept.length - 1].frame;
      // Top-left 16×16 corner (outside the head ellipse): flat #00ff00 = Y 145, U 54, V 34.
      const cw = f.width >> 1;
      const uOff = f.width * f.height;
      const vOff = uOff + cw * (f.height >> 1);
      let ys = 0, ymin = 255, ymax = 0, us = 0, vs = 0;
      for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
        const v = f.data[y * f.width + x];
        ys += v; ymin = Math.min(ymin, v); ymax = Math.max(ymax, v);
        if (x < 8 && y < 8) { us += f.data[uOff + y * cw + x]; vs += f.data[vOff + y * cw + x]; }
      }
      const [my, mu, mv] = [ys / 256, us / 64, vs / 64];
      assert.ok(Math.abs(my - 145) < 10 && Math.abs(mu - 54) < 10 && Math.abs(mv - 34) < 10 && ymax - ymin < 16, `top-left corner is flat green (Y ${my.toFixed(0)} ${ymin}..${ymax}, U ${mu.toFixed(0)}, V ${mv.toFixed(0)})`);
      assert.deepEqual((await ctl.getSession(id)).params.background, { mode: 'colour', colour: '#00ff00' });
      await ctl.setParams(id, { background: { mode: 'blur', radius: 8 } });
      await ctl.setParams(id, { background: { mode: 'keep' } });

      // Stats events at a chosen rate; unsubscribe stops them.
      const stats: StatsEvent[] = [];
      const sub = await ctl.subscribeStats(id, 5, (s) => stats.push(s));
      assert.equal(sub.result.periodMs, 200);
      await new Promise((r) => setTimeout(r, 2100));
      const got = stats.length;
      t.diagnostic(`${got} stats events in 2.1 s at 5 Hz; last ${JSON.stringify(stats[stats.length - 1])}`);
      assert.ok(got >= 8 && got <= 14, `${got} events in 2.1 s at 5 Hz`);
      const last = stats[stats.length - 1];
      assert.ok(last.outFps > 5, `outFps ${last.outFps}`);
      assert.ok(last.framesOut > 0 && last.stageMs.render.p50 >= 0 && last.latencyMs.p50 > 0);
      assert.equal(last.faceFound, null, 'passthrough does not track faces');
      await ctl.unsubscribeStats(id);
      const after = stats.length;
      await new Promise((r) => setTimeout(r, 700));
      assert.ok(stats.length <= after + 1, 'no events after unsubscribe');
      await expectError(ctl.unsubscribeStats(id), 'not_found');

      // Output size and frame-rate cap: frames of the new size reach the same peer.
      assert.deepEqual(await ctl.setOutput(id, { width: 320, height: 240, maxFps: 15 }), { width: 320, height: 240, maxFps: 15 });
      await peer.waitFor((s) => s.sizes.includes('320x240'), 15_000);

      // Renderer switch and recalibration.
      const r = await ctl.setRenderer(id, 'mesh-warp');
      assert.equal(r.renderer, 'mesh-warp');
      assert.equal(await ctl.recalibrate(id), null);
      await ctl.setRenderer(id, 'passthrough');
      await expectError(ctl.request('session.setRenderer', { session: id, renderer: 'nope' }), 'bad_request', /renderer/);

      // Pause holds the last output: ids stop advancing; resume restarts them.
      const paused = await ctl.pause(id);
      assert.equal(paused.state, 'paused');
      await new Promise((r) => setTimeout(r, 600));
      const m = peer.received.length;
      await new Promise((r) => setTimeout(r, 1500));
      const held = new Set(peer.received.slice(m).map((x) => x.id));
      assert.ok(held.size <= 1, `while paused at most one picture is shown (got ids ${[...held]})`);
      assert.equal((await ctl.resume(id)).state, 'active');
      const k = peer.received.length;
      await peer.waitFor(() => new Set(peer!.received.slice(k).map((x) => x.id)).size >= 5, 10_000);
      assert.ok(updates.includes('paused') && updates.includes('active'), `session.updated events: ${updates.join(',')}`);

      const tok = await ctl.createToken(id, 120);
      assert.match(tok.token, /^xplv1\./);

      // Bad messages: typed errors, the socket stays open.
      await expectError(ctl.request('nope.op'), 'bad_request', /unknown op/);
      await expectError(ctl.request('session.get', { session: id, extra: true }), 'bad_request', /extra/);
      await expectError(ctl.setParams(id, { smoothing: 7 }), 'bad_request', /smoothing/);
      await expectError(ctl.setParams(id, {}), 'bad_request', /at least one/);
      await expectError(ctl.request('stats.subscribe', { session: id, hz: 50 }), 'bad_request', /hz/);
      await expectError(ctl.setOutput(id, { width: 333 }), 'bad_request', /width/);
      await expectError(ctl.getSession('no-such-session'), 'not_found');
      const raw = new Promise<{ id: unknown; ok: boolean; error: { code: string } }>((resolve) =>
        ctl.ws.once('message', (d: Buffer, bin: boolean) => resolve(bin ? (msgpack.decode(d) as never) : JSON.parse(d.toString()))),
      );
      ctl.sendRaw(format === 'json' ? '{not json' : new Uint8Array([0xc1]));
      const bad = await raw;
      assert.equal(bad.ok, false);
      assert.equal(bad.id, null);
      assert.equal(bad.error.code, 'bad_request');
      assert.ok((await ctl.ping()).pong > 0, 'socket still open after bad messages');

      // Close through the socket; the event arrives.
      const closed = new Promise<string>((resolve) => ctl.on('session.closed', (e) => e.session === id && resolve(e.reason)));
      assert.equal(await ctl.closeSession(id), null);
      assert.match(await closed, /control/);
      await expectError(ctl.getSession(id), 'not_found');
      assert.equal(await ctl.deletePortrait(p.id), null);
      await expectError(ctl.deletePortrait('default'), 'conflict');
    } finally {
      ctl.close();
      await peer?.close({ vanish: true });
    }
  });
}

test('the SDK reconnects with backoff and resubscribes', { skip, timeout: 90_000 }, async () => {
  const c = client();
  const ctl: ControlSocket = c.control({ format: 'json', minDelayMs: 100 });
  const peer = await startPeer({ baseUrl: server.url, apiKey: KEY, query: { renderer: 'passthrough' } });
  try {
    const id = peer.sessionUrl.split('/').pop()!;
    const stats: StatsEvent[] = [];
    await ctl.subscribeStats(id, 10, (s) => stats.push(s));
    await waitUntil(() => stats.length >= 3, 5000, 'stats before the drop');
    const reconnecting: number[] = [];
    ctl.on('reconnecting', (e) => reconnecting.push(e.delayMs));
    const reconnected = new Promise<void>((resolve) => ctl.on('reconnected', () => resolve()));
    ctl.ws.terminate(); // the connection drops as a network failure would
    await reconnected;
    assert.equal(reconnecting.length, 1);
    const n = stats.length;
    await waitUntil(() => stats.length >= n + 3, 5000, 'stats after reconnect (resubscribed)');
    assert.ok((await ctl.ping()).pong > 0);
  } finally {
    ctl.close();
    await peer.close();
  }
});
