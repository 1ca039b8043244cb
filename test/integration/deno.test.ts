// npm test: alone — a second runtime starting its server, with a first-session deadline.
/**
 * The server under Deno 2 (the npm package `deno`), with the same code and node_modules as under
 * Node: a libwebrtc peer completes WebRTC sessions and gets its own frames back.
 *
 * Several sessions in a row, the first one right after start-up: the first session after start
 * used to get no media back one time in three (werift's DTLS client took a retransmitted server
 * flight 4 for a new handshake and ended with SRTP keys the peer never had; server/rtc/dtls-guard.ts).
 * The server runs with werift's DTLS debug output on: writing it makes every handshake slow enough
 * for libwebrtc to retransmit its flight 4, so that case is met every time, not by chance.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { denoBinary, startServer, type ServerHandle } from '../support/server.ts';
import { startPeer } from '../support/wrtc-peer.ts';

const skip = denoBinary() ? false : 'the Deno binary was not found (npm install installs the "deno" package)';
let srv: ServerHandle;

before(async () => {
  if (skip) return;
  srv = await startServer({ runtime: 'deno', args: ['--renderer', 'passthrough'], timeoutMs: 90_000, env: { DEBUG: 'werift-dtls*' } });
});
after(async () => {
  if (srv) assert.equal(await srv.stop(), 0, 'Deno server exits 0 on SIGTERM');
});

for (const round of [1, 2, 3]) {
  test(`session ${round} under Deno gets its own frames back`, { skip }, async () => {
    const health = await (await fetch(`${srv.url}/healthz`)).json();
    assert.equal(health.sessions, 0, "the previous round's session is gone");
    const peer = await startPeer({ baseUrl: srv.url, query: { renderer: 'passthrough' }, width: 640, height: 480, fps: 30 });
    try {
      const s = await peer.waitFor((st) => st.decoded >= 20, 30_000).catch((err) => {
        throw new Error(`${err.message}\nserver log tail:\n${srv.logs.slice(-20).join('\n')}`);
      });
      assert.deepEqual(s.sizes, ['512x512']);
      assert.ok(s.distinctIds >= 15, 'the frames that come back carry the ids that were sent');
      assert.ok(s.outOfOrder === 0);
    } finally {
      await peer.close();
    }
  });
}
