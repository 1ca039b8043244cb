/**
 * WHEP viewers through the real server with libwebrtc peers: two viewers and the sending peer of
 * one passthrough session receive the same frames (pattern ids); a viewer leaving frees its
 * peer (the session's viewer count drops); an ingest-only (sendonly) session is rendered and
 * encoded for its viewers; bad viewer offers get precise errors.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { closeAllPeers, startPeer } from '../support/wrtc-peer.ts';
import { startSendonly, startViewer, WhepError } from '../control/wrtc-viewer.ts';

const skip = !serverExists() && 'server/main.ts not present';
let server: ServerHandle;

before(async () => {
  if (!skip) server = await startServer({ args: ['--renderer', 'passthrough'] });
});

after(async () => {
  if (skip) return;
  await closeAllPeers();
  assert.equal(await server.stop(), 0, 'server exits 0 on SIGTERM');
});

async function viewerCount(id: string): Promise<number> {
  const res = await fetch(`${server.url}/v1/sessions/${id}`);
  return ((await res.json()) as { viewers: number }).viewers;
}

test('two viewers and the sender of one session get the same frames; a leaving viewer is freed', { skip, timeout: 120_000 }, async (t) => {
  const peer = await startPeer({ baseUrl: server.url, query: { renderer: 'passthrough' } });
  const id = peer.sessionUrl.split('/').pop()!;
  const v1 = await startViewer(server.url, id);
  const v2 = await startViewer(server.url, id);
  try {
    assert.match(v1.location, new RegExp(`/v1/sessions/${id}/whep/[^/]+$`));
    assert.notEqual(v1.location, v2.location);
    assert.equal(await viewerCount(id), 2);
    await peer.waitFor((s) => s.decoded >= 30, 30_000);
    await v1.waitFor(() => v1.ids.filter((x) => x !== null).length >= 30, 30_000, 'viewer 1 frames');
    await v2.waitFor(() => v2.ids.filter((x) => x !== null).length >= 30, 30_000, 'viewer 2 frames');
    // Compare over a common window after everyone is running.
    const mark = [peer.received.length, v1.ids.length, v2.ids.length];
    await v1.waitFor(() => v1.ids.length >= mark[1] + 40 && v2.ids.length >= mark[2] + 40, 30_000, '40 more frames at each viewer');
    const own = new Set(peer.received.slice(mark[0]).map((r) => r.id).filter((x) => x !== null));
    const a = v1.ids.slice(mark[1]).filter((x): x is number => x !== null);
    const b = v2.ids.slice(mark[2]).filter((x): x is number => x !== null);
    t.diagnostic(`sender ${own.size} ids, viewer1 ${a.length}, viewer2 ${b.length}`);
    assert.ok(a.length >= 30 && b.length >= 30, 'both viewers keep receiving');
    const inOwn = (xs: number[]) => xs.filter((x) => own.has(x)).length / xs.length;
    // The same encoded frames go to everyone: viewers' ids are the sender's ids (edges of the window aside).
    assert.ok(inOwn(a) >= 0.9, `viewer 1: ${(inOwn(a) * 100).toFixed(0)}% of ids also reached the sender`);
    assert.ok(inOwn(b) >= 0.9, `viewer 2: ${(inOwn(b) * 100).toFixed(0)}% of ids also reached the sender`);
    const common = a.filter((x) => new Set(b).has(x)).length / a.length;
    assert.ok(common >= 0.9, `viewers share ${(common * 100).toFixed(0)}% of ids`);
    assert.deepEqual([...v1.sizes], ['512x512']);

    // Leaving frees the viewer: DELETE → 204, count drops, a second DELETE → 404.
    assert.equal(await v1.close(), 204);
    assert.equal(await viewerCount(id), 1);
    const again = await fetch(v1.location, { method: 'DELETE' });
    assert.equal(again.status, 404);
    await again.arrayBuffer();
    // The other viewer keeps receiving.
    const n = v2.ids.length;
    await v2.waitFor(() => v2.ids.length >= n + 10, 10_000, 'viewer 2 after viewer 1 left');
    // Closing the session frees its viewers.
    assert.equal(await peer.close(), 204);
    const gone = await fetch(v2.location, { method: 'DELETE' });
    assert.equal(gone.status, 404);
    await gone.arrayBuffer();
  } finally {
    await v1.close({ vanish: true });
    await v2.close({ vanish: true });
    await peer.close();
  }
});

test('an ingest-only (sendonly) session is rendered and encoded for its viewers', { skip, timeout: 90_000 }, async () => {
  const sender = await startSendonly(server.url, { query: 'renderer=passthrough', offset: 1000, modulo: 500 });
  try {
    const info = (await (await fetch(sender.sessionUrl)).json()) as { sendsBack: boolean };
    assert.equal(info.sendsBack, false);
    const v = await startViewer(server.url, sender.sessionId);
    try {
      await v.waitFor(() => v.ids.filter((x) => x !== null).length >= 20, 30_000, 'viewer frames from a sendonly session');
      const ids = v.ids.filter((x): x is number => x !== null);
      assert.ok(ids.every((x) => x >= 1000 && x < 1500), 'viewer sees the sender’s ids');
      assert.ok(new Set(ids).size >= 10, 'ids advance');
    } finally {
      await v.close();
    }
  } finally {
    assert.equal(await sender.close(), 204);
  }
});

test('bad viewer requests: sendonly offer, wrong type, unknown session', { skip, timeout: 30_000 }, async () => {
  const peer = await startPeer({ baseUrl: server.url, query: { renderer: 'passthrough' } });
  try {
    const id = peer.sessionUrl.split('/').pop()!;
    const res = await fetch(`${server.url}/v1/sessions/${id}/whep`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: peer.pc.localDescription!.sdp.replace(/a=sendrecv/g, 'a=sendonly') });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'no_video');
    const res2 = await fetch(`${server.url}/v1/sessions/${id}/whep`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'x' });
    assert.equal(res2.status, 415);
    await res2.arrayBuffer();
    await assert.rejects(startViewer(server.url, 'no-such-session'), (e: WhepError) => e.status === 404);
  } finally {
    await peer.close();
  }
});
