/**
 * The server under Deno 2 (the npm package `deno`), with the same code and node_modules as under
 * Node: a libwebrtc peer completes WebRTC sessions and gets its own frames back.
 *
 * Several sessions in a row, the first one right after start-up: an early trial of werift under
 * Deno saw the first session after start get no media back while later ones did.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { denoBinary, startServer, type ServerHandle } from '../support/server.ts';
import { startPeer } from '../support/wrtc-peer.ts';

const skip = denoBinary() ? false : 'the Deno binary was not found (npm install installs the "deno" package)';
let srv: ServerHandle;

before(async () => {
  if (skip) return;
  srv = await startServer({ runtime: 'deno', args: ['--renderer', 'passthrough'], timeoutMs: 90_000 });
});
after(async () => {
  if (srv) assert.equal(await srv.stop(), 0, 'Deno server exits 0 on SIGTERM');
});

for (const round of [1, 2, 3]) {
  test(`session ${round} under Deno gets its own frames back`, { skip }, async () => {
    const health = await (await fetch(`${srv.url}/healthz`)).json();
    assert.equal(health.status === 'ok' || health.status === 'degraded', true);
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
