// npm test: alone — reads the frame rate at the budget's floor.
/**
 * The frame budget end to end (server/loop/frame-budget.ts): on a server whose latency budget no
 * frame can meet (--latency-budget 1 ms), a session still sent 30 fps must be slowed to the floor
 * of 5 fps, say so in its stats and metrics, and keep its frames in order, and the sender must
 * be asked for less (RTCP REMB, server/rtc/bitrate-limit.ts); a maxFps set through the control
 * socket below the server's cap wins.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { XplClient } from '../../client/sdk/index.js';
import { serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { metricValue, waitUntil } from '../support/wait.ts';
import { startPeer } from '../support/wrtc-peer.ts';

const skip = !serverExists() && 'server/main.ts not present';

/** What libwebrtc's congestion control lets the sender send now, bit/s: its own estimate under any REMB ceiling. */
async function availableOutgoing(pc: { getStats(): Promise<Map<string, any>> }): Promise<number | undefined> {
  let bps: number | undefined;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'candidate-pair' && s.nominated && typeof s.availableOutgoingBitrate === 'number') bps = s.availableOutgoingBitrate;
  });
  return bps;
}
let server: ServerHandle;

before(async () => {
  if (!skip) server = await startServer({ args: ['--renderer', 'passthrough', '--latency-budget', '1'] });
});

after(async () => {
  if (skip) return;
  assert.equal(await server.stop(), 0);
});

test('over budget, the frame rate falls to the floor while frames keep coming in order; a lower maxFps wins', { skip, timeout: 90_000 }, async (t) => {
  const peer = await startPeer({ baseUrl: server.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 30 });
  const ctl = new XplClient({ baseUrl: server.url, WebSocket: WebSocket as never }).control({ format: 'json' });
  try {
    const id = peer.sessionUrl.split('/').pop()!;
    const budget = async () => (await ctl.getSession(id)).stats.frameBudgetFps;
    await peer.waitFor((s) => s.decoded > 0, 20_000);
    await waitUntil(async () => (await budget()) === 5, 20_000, 'the frame budget to reach its floor of 5 fps');
    // The sender started at 1.5 Mbit/s (the answer's hint); capped to a sixth of its frame rate it is
    // asked for a sixth of its bitrate, which the floor of 600 kbit/s holds it to.
    let available: number | undefined;
    await waitUntil(async () => (available = await availableOutgoing(peer.pc as never)) !== undefined && available <= 650_000, 15_000, 'the sender to take the REMB ceiling').catch((err: Error) => {
      throw new Error(`${err.message}: it may send ${available} bit/s`);
    });
    t.diagnostic(`the sender may send ${available} bit/s`);

    const from = peer.received.length;
    const start = performance.now();
    await waitUntil(() => performance.now() - start > 3000 && peer.received.length - from >= 10, 10_000, '3 s and 10 frames at the floor');
    const got = peer.received.slice(from);
    const fps = (got.length * 1000) / (performance.now() - start);
    const info = await ctl.getSession(id);
    t.diagnostic(`at the floor: ${fps.toFixed(1)} fps received; server in ${info.stats.inFps} fps, out ${info.stats.outFps} fps`);
    assert.ok(fps >= 3 && fps <= 8, `${fps.toFixed(1)} fps received at a 5 fps cap`);
    assert.ok(info.stats.inFps >= 20, `the sender still sends ${info.stats.inFps} fps`);
    const seqs = got.map((r) => r.seq).filter((s): s is number => s !== null);
    assert.ok(seqs.length >= got.length * 0.9, `${seqs.length}/${got.length} frames carry an id`);
    assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), 'every frame newer than the one before');

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.ok((metricValue(metrics, 'xpl_frame_budget_changes_total\\{direction="down"\\}') ?? 0) >= 4, 'the lowering steps are counted');
    assert.equal(metricValue(metrics, 'xpl_frame_budget_cap_fps'), 5);

    await ctl.setOutput(id, { maxFps: 3 });
    assert.equal(await budget(), 3, 'the session\'s own cap, under the server\'s, wins');
    const before = peer.received.length;
    const since = performance.now();
    await waitUntil(() => performance.now() - since > 3000, 5000, '3 s at 3 fps');
    const slower = ((peer.received.length - before) * 1000) / (performance.now() - since);
    assert.ok(slower >= 1.5 && slower <= 4.5, `${slower.toFixed(1)} fps received at maxFps 3`);
  } finally {
    ctl.close();
    await peer.close();
  }
});
