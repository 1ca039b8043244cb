/**
 * The wrtc test peer against an in-process wrtc echo server (loopback WebRTC, no server/ code):
 * checks the peer's signalling, id bookkeeping, stats and cleanup before it is used on the server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoServer } from '../support/echo-server.ts';
import { closeAllPeers, startPeer, SessionRequestError } from '../support/wrtc-peer.ts';
import { drawPattern } from '../support/pattern.ts';

test('peer sends the pattern, gets it back cover-scaled, and measures it', { timeout: 60_000 }, async () => {
  const echo = await startEchoServer();
  try {
    const peer = await startPeer({ baseUrl: echo.url, query: { renderer: 'passthrough' }, width: 640, height: 480, fps: 20, keepFrames: 3 });
    try {
      assert.match(peer.sessionUrl, /^http:\/\/127\.0\.0\.1:\d+\/v1\/sessions\/1$/);
      assert.match(peer.answerSdp, /a=candidate:/, 'non-trickle answer carries candidates');
      const s = await peer.waitFor((st) => st.distinctIds >= 20, 30_000);
      assert.deepEqual(s.sizes, ['512x512']);
      assert.ok(s.sent >= s.distinctIds, 'cannot receive more ids than were sent');
      assert.ok(s.latencyMs.count > 0 && s.latencyMs.p50 > 0 && s.latencyMs.p50 < 2000, `latency ${JSON.stringify(s.latencyMs)}`);
      assert.equal(peer.kept.length, 3);
      const decoded = peer.received.filter((r) => r.seq !== null);
      for (const r of decoded) assert.ok(r.latencyMs !== null && r.latencyMs >= 0);
      assert.equal(peer.latencies().length, decoded.length);
      // ids increase over time (allowing for the odd reordering)
      const seqs = decoded.map((r) => r.seq!);
      assert.ok(seqs[seqs.length - 1] > seqs[0], 'later frames carry later ids');
      assert.ok(s.outOfOrder <= seqs.length / 10);
    } finally {
      assert.equal(await peer.close(), 204);
    }
    assert.equal(echo.sessions(), 0, 'DELETE closed the session');
  } finally {
    await echo.close();
  }
});

test('vanish closes without DELETE; a custom producer is used', { timeout: 60_000 }, async () => {
  const echo = await startEchoServer({ size: 256 });
  try {
    const seen: number[] = [];
    const peer = await startPeer({
      baseUrl: echo.url,
      width: 320,
      height: 240,
      fps: 15,
      producer: (f, seq) => {
        seen.push(seq);
        drawPattern(f, 1000 + seq); // ids offset: the peer must not match them to its own seqs
      },
    });
    const s = await peer.waitFor((st) => st.received >= 10, 30_000);
    assert.deepEqual(s.sizes, ['256x256']);
    assert.equal(s.distinctIds, 0, 'ids that were never sent are not counted as sent frames');
    assert.ok(peer.received.some((r) => r.id !== null && r.id >= 1000), 'custom producer frames arrived');
    assert.deepEqual(seen.slice(0, 3), [0, 1, 2]);
    assert.equal(await peer.close({ vanish: true }), undefined);
    assert.equal(echo.sessions(), 1, 'vanishing peer left its session behind');
  } finally {
    await echo.close();
  }
});

test('closeAllPeers closes what a test left open', { timeout: 60_000 }, async () => {
  const echo = await startEchoServer();
  try {
    await startPeer({ baseUrl: echo.url, width: 160, height: 120, fps: 10 });
    await startPeer({ baseUrl: echo.url, width: 160, height: 120, fps: 10 });
    assert.equal(echo.sessions(), 2);
    await closeAllPeers();
    assert.equal(echo.sessions(), 0);
  } finally {
    await echo.close();
  }
});

test('a refused session is a SessionRequestError with the body', async () => {
  const echo = await startEchoServer();
  try {
    await assert.rejects(startPeer({ baseUrl: `${echo.url}/nope` }), (err: unknown) => {
      assert.ok(err instanceof SessionRequestError);
      assert.equal(err.status, 404);
      return true;
    });
  } finally {
    await echo.close();
  }
});
