// Live sessions through the real server and an independent WebRTC stack (@roamhq/wrtc):
// renderer=xportrait-lcm on the CPU with the tiny pack returns frames of the output size, two
// sessions share one pack worker and one loaded pack (metrics), a closed session's stream is
// released; a corrupt pack fails that session's set-up with its bad_pack message while the
// server keeps serving other sessions.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadImage } from '../../eval/make-driving.ts';
import { allocI420, type I420Frame } from '../../server/media/frame.ts';
import { cropScaleI420, rgbaToI420 } from '../../server/media/convert.ts';
import { serverExists, startServer } from '../support/server.ts';
import { startPeer } from '../support/wrtc-peer.ts';
import { metricValue, waitUntil } from '../support/wait.ts';
import { corruptCopy, pythonSkipReason, tinyPack } from './helpers.ts';

const skip = pythonSkipReason() || (!serverExists() && 'server/main.ts not present');
if (skip) console.log(`# skipping xportrait-lcm live tests: ${skip}`);

let dir = '';
let still: I420Frame;
before(async () => {
  if (skip) return;
  dir = await tinyPack();
  const rgba = await loadImage(join(import.meta.dirname, '..', 'fixtures', 'astronaut.png'));
  const full = allocI420(rgba.width & ~1, rgba.height & ~1);
  rgbaToI420(rgba, full);
  still = allocI420(320, 240);
  cropScaleI420(full, still, 'cover');
});

// the fixture portrait as a still driving video, with a little luma noise so frames differ
const producer = (frame: I420Frame, seq: number): void => {
  frame.data.set(still.data);
  const y = frame.width * frame.height;
  for (let i = seq % 7; i < y; i += 97) frame.data[i] = Math.min(255, frame.data[i] + 3);
};

const LCM_ENV = { XPL_LCM_STEPS: '2', XPL_LCM_SKIP: '0', XPL_LCM_THREADS: '1' };

async function metric(url: string, name: string): Promise<number> {
  const v = metricValue(await (await fetch(`${url}/metrics`)).text(), name);
  assert.ok(v !== undefined, `${name} in /metrics`);
  return v;
}

test('two live sessions with renderer=xportrait-lcm get frames of the output size from one shared pack (CPU, tiny pack)', { skip, timeout: 180_000 }, async (t) => {
  const server = await startServer({ args: ['--pack', dir, '--output', '256x192'], env: LCM_ENV, timeoutMs: 60_000 });
  try {
    const a = await startPeer({ baseUrl: server.url, query: { renderer: 'xportrait-lcm' }, width: 320, height: 240, fps: 15, producer, decodeIds: false });
    const b = await startPeer({ baseUrl: server.url, query: { renderer: 'xportrait-lcm' }, width: 320, height: 240, fps: 15, producer, decodeIds: false });
    let bOpen = true;
    try {
      const [sa, sb] = await Promise.all([a.waitFor((st) => st.received >= 15, 90_000), b.waitFor((st) => st.received >= 15, 90_000)]);
      t.diagnostic(`stats a ${JSON.stringify(a.stats())} b ${JSON.stringify(b.stats())}`);
      for (const s of [sa, sb]) {
        assert.deepEqual(s.sizes, ['256x192'], 'every received frame has the output size');
        assert.ok(s.received >= 15);
      }
      assert.ok(server.logs.some((l) => l.includes('session started') && l.includes('"renderer":"xportrait-lcm"')), 'the sessions ran the xportrait-lcm renderer');
      // one pack worker, one load of the pack into onnxruntime, one stream per session
      assert.equal(await metric(server.url, 'xpl_lcm_pack_workers'), 1);
      assert.equal(await metric(server.url, 'xpl_lcm_streams'), 2);
      assert.equal(await metric(server.url, 'xpl_lcm_pack_loads_total'), 1, 'the second session reused the loaded pack');
      // a session that ends gives its stream back; the other keeps streaming
      await b.close();
      bOpen = false;
      await waitUntil(async () => (await metric(server.url, 'xpl_lcm_streams')) === 1, 10_000, 'the closed session’s stream to be released');
      const before = a.stats().received;
      const s = await a.waitFor((st) => st.received >= before + 10, 30_000);
      assert.ok(s.received >= before + 10, 'the remaining session still gets frames');
      assert.equal(await metric(server.url, 'xpl_lcm_pack_loads_total'), 1);
    } finally {
      await a.close();
      if (bOpen) await b.close();
    }
    await waitUntil(async () => (await metric(server.url, 'xpl_lcm_streams')) === 0, 10_000, 'every stream released');
  } catch (err) {
    t.diagnostic(server.logs.slice(-40).join('\n'));
    throw err;
  } finally {
    await server.stop();
  }
});

test('a corrupt pack fails its session with the bad_pack message; other sessions still work', { skip, timeout: 150_000 }, async (t) => {
  const bad = corruptCopy(dir, (_d, m) => { delete m.stages.denoise; return m; });
  const server = await startServer({ args: ['--pack', bad, '--renderer', 'passthrough'], env: LCM_ENV, timeoutMs: 60_000 });
  try {
    await assert.rejects(
      startPeer({ baseUrl: server.url, query: { renderer: 'xportrait-lcm' }, width: 320, height: 240, producer, decodeIds: false }),
      (err: Error & { status?: number; body?: string }) => {
        assert.match(err.message, /answered 500/);
        assert.match(err.message, /bad_pack/);
        assert.match(err.message, /required stage \\?"denoise\\?" missing/);
        return true;
      },
    );
    const ok = await startPeer({ baseUrl: server.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15 });
    try {
      const s = await ok.waitFor((st) => st.received >= 5, 30_000);
      assert.ok(s.received >= 5, 'the passthrough session gets frames');
    } finally {
      await ok.close();
    }
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
  } catch (err) {
    t.diagnostic(server.logs.slice(-40).join('\n'));
    throw err;
  } finally {
    await server.stop();
    rmSync(bad, { recursive: true, force: true });
  }
});
