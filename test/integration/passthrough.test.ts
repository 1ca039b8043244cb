// npm test: alone — frame-rate floors.
/**
 * End to end through the real server process with an independent WebRTC stack (@roamhq/wrtc):
 * a 640×480@30 pattern goes in, the passthrough renderer must send back the same frames,
 * centre-cropped to a square and scaled to 512×512, with their ids, at a usable rate.
 * Floors are loose on purpose: this is a correctness check on a shared 2-core machine.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { allocI420, type I420Frame } from '../../server/media/frame.ts';
import { drawPattern } from '../support/pattern.ts';
import { coverScale, lumaMad } from '../support/scale.ts';
import { serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { startPeer } from '../support/wrtc-peer.ts';

const RUN_MS = 5000;

const skip = !serverExists() && 'server/main.ts not present';

function expected(id: number, w = 640, h = 480): I420Frame {
  const f = allocI420(w, h);
  drawPattern(f, id);
  return coverScale(f, 512, 512);
}

let server: ServerHandle;

before(async () => {
  if (!skip) server = await startServer();
});

after(async () => {
  if (skip) return;
  assert.equal(await server.stop(), 0, 'server exits 0 on SIGTERM');
});

test('passthrough echoes the pattern cropped and scaled to 512², then DELETE ends the session', { skip, timeout: 90_000 }, async (t) => {
  try {
    // Keep a sample of received frames (every 10th decoded one) for the pixel comparison.
    const samples: Array<{ frame: I420Frame; id: number }> = [];
    let decodedSeen = 0;
    const peer = await startPeer({
      baseUrl: server.url,
      query: { renderer: 'passthrough' },
      width: 640,
      height: 480,
      fps: 30,
      onFrame: (frame, info) => {
        if (info.id === null) return;
        if (decodedSeen++ % 10 === 0 && samples.length < 30) samples.push({ frame: { ...frame, data: frame.data.slice() }, id: info.id });
      },
    });
    let deleted = false;
    try {
      assert.match(peer.sessionUrl, new RegExp(`^${server.url}/v1/sessions/[^/]+$`));
      assert.match(peer.answerSdp, /a=candidate:/, 'non-trickle answer carries its candidates');
      assert.match(peer.answerSdp, /a=sendrecv/);
      assert.match(peer.answerSdp, /VP8\/90000/);

      const first = await peer.waitFor((s) => s.decoded > 0, 20_000);
      t.diagnostic(`first decoded frame after ${first.sent} sent frames`);
      const startCount = peer.received.length;
      const startAt = performance.now();
      await new Promise((r) => setTimeout(r, RUN_MS));
      const s = peer.stats(RUN_MS);
      const window = peer.received.slice(startCount);
      const windowFps = (window.length * 1000) / (performance.now() - startAt);
      t.diagnostic(`stats ${JSON.stringify({ ...s, windowFps: Number(windowFps.toFixed(1)) })}`);

      assert.deepEqual(s.sizes, ['512x512'], 'every received frame is 512×512');
      assert.ok(windowFps >= 10, `received ${windowFps.toFixed(1)} fps over ${RUN_MS} ms (floor 10)`);
      const decodedInWindow = window.filter((r) => r.seq !== null);
      assert.ok(decodedInWindow.length >= 0.9 * window.length, `${decodedInWindow.length}/${window.length} frames carry a readable id that was sent`);
      const seqs = decodedInWindow.map((r) => r.seq!);
      const distinct = new Set(seqs).size;
      assert.ok(distinct >= 0.9 * seqs.length, `${distinct} distinct ids in ${seqs.length} frames: frames are not repeated`);
      assert.ok(seqs[seqs.length - 1] - seqs[0] >= (RUN_MS / 1000) * 20, `ids advance with time: ${seqs[0]} → ${seqs[seqs.length - 1]}`);
      let backwards = 0;
      for (let i = 1; i < seqs.length; i++) if (seqs[i] < seqs[i - 1]) backwards++;
      assert.ok(backwards <= seqs.length * 0.02, `${backwards} frames went backwards`);
      assert.ok(s.latencyMs.p50 > 0 && s.latencyMs.p50 < 1500, `glass-to-glass latency p50 ${s.latencyMs.p50.toFixed(0)} ms`);

      // Pixels: each sampled frame matches the pattern it claims to be, cropped and scaled the
      // 'cover' way, and clearly not its neighbours five frames away.
      assert.ok(samples.length >= 10, `${samples.length} sampled frames`);
      const mads: number[] = [];
      for (const { frame, id } of samples) {
        const own = lumaMad(frame, expected(id));
        const other = Math.min(lumaMad(frame, expected(id + 5)), lumaMad(frame, expected(id - 5)));
        mads.push(own);
        assert.ok(own < 10, `frame ${id}: luma MAD ${own.toFixed(1)} against the sent pattern`);
        assert.ok(own * 2 < other, `frame ${id}: MAD ${own.toFixed(1)} vs ${other.toFixed(1)} for neighbours`);
      }
      t.diagnostic(`luma MAD vs sent: max ${Math.max(...mads).toFixed(2)}, mean ${(mads.reduce((a, b) => a + b, 0) / mads.length).toFixed(2)}`);

      deleted = true;
      const status = await peer.close();
      assert.ok(status === 200 || status === 204, `DELETE answered ${status}`);
      const again = await fetch(peer.sessionUrl, { method: 'DELETE' });
      await again.arrayBuffer();
      assert.equal(again.status, 404, 'a deleted session is gone');
    } finally {
      if (!deleted) await peer.close();
    }
  } catch (err) {
    t.diagnostic(`server log tail:\n${server.logs.slice(-30).join('\n')}`);
    throw err;
  }
});

for (const [w, h] of [[1280, 720], [512, 512], [480, 640]] as const) {
  test(`a ${w}×${h} source comes back cover-cropped to 512² with its ids`, { skip, timeout: 60_000 }, async (t) => {
    const samples: Array<{ frame: I420Frame; id: number }> = [];
    const peer = await startPeer({
      baseUrl: server.url,
      query: { renderer: 'passthrough' },
      width: w,
      height: h,
      fps: 30,
      onFrame: (frame, info) => {
        if (info.seq !== null && info.seq % 7 === 0 && samples.length < 8) samples.push({ frame: { ...frame, data: frame.data.slice() }, id: info.id! });
      },
    });
    try {
      const s = await peer.waitFor((st) => st.distinctIds >= 40 && samples.length >= 4, 30_000);
      t.diagnostic(`stats ${JSON.stringify(s)}`);
      assert.deepEqual(s.sizes, ['512x512']);
      assert.ok(s.decoded >= 0.9 * s.received, `${s.decoded}/${s.received} frames carry a readable id`);
      for (const { frame, id } of samples) {
        const own = lumaMad(frame, expected(id, w, h));
        const other = lumaMad(frame, expected(id + 5, w, h));
        assert.ok(own < 10 && own * 2 < other, `frame ${id}: luma MAD ${own.toFixed(1)} (neighbour ${other.toFixed(1)})`);
      }
    } finally {
      const status = await peer.close();
      assert.equal(status, 204);
    }
  });
}

test('the wasm codec (the fallback without a native ffmpeg) carries a session too', { skip, timeout: 90_000 }, async () => {
  const wasm = await startServer({ args: ['--codec', 'wasm', '--renderer', 'passthrough'] });
  const peer = await startPeer({ baseUrl: wasm.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 });
  try {
    const s = await peer.waitFor((st) => st.decoded >= 20, 30_000);
    assert.equal(s.outOfOrder, 0);
    assert.deepEqual(s.sizes, ['512x512']);
    assert.ok(wasm.logs.some((l) => /"codec":"wasm"/.test(l) && /listening/.test(l)), 'the server says which codec it runs');
  } finally {
    await peer.close();
    assert.equal(await wasm.stop(), 0);
  }
});
