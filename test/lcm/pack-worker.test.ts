/**
 * The shared pack worker on a live server (run inside this process so the test can reach the
 * worker threads): two xportrait-lcm sessions stream from one pack worker; when that worker dies,
 * both sessions' loop workers are restarted, attach to a new pack worker (the pack is loaded
 * again, once) and their video resumes. When one session's loop worker dies, its stream in the
 * pack worker is freed and the restarted one opens a new stream on the loaded pack.
 */
import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { after, before, test } from 'node:test';
import { loadConfig, type Config } from '../../server/config.ts';
import { createLogger } from '../../server/log.ts';
import { registry } from '../../server/metrics.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { packWorkerThreads } from '../../server/renderers/xportrait-lcm/pack-host.ts';
import { startPeer, type Peer } from '../support/wrtc-peer.ts';
import { metricValue } from '../support/wait.ts';
import { pythonSkipReason, tinyPack } from './helpers.ts';

const skip = pythonSkipReason();
if (skip) console.log(`# skipping pack worker tests: ${skip}`);

let server: RunningServer;
let a: Peer;
let b: Peer;

async function metric(name: string): Promise<number> {
  return metricValue(await registry.metrics(), name) ?? 0;
}

before(async () => {
  if (skip) return;
  const dir = await tinyPack();
  const parsed = loadConfig(['--port', '0', '--renderer', 'xportrait-lcm', '--pack', dir, '--output', '256x192', '--lcm-steps', '2', '--lcm-skip', '0', '--lcm-threads', '1'], {});
  assert.equal(parsed.help, false);
  server = await startServer((parsed as { config: Config }).config, createLogger('warn'));
  a = await startPeer({ baseUrl: server.url, width: 320, height: 240, fps: 15, decodeIds: false });
  b = await startPeer({ baseUrl: server.url, width: 320, height: 240, fps: 15, decodeIds: false });
  await a.waitFor((s) => s.received >= 5, 60_000);
  await b.waitFor((s) => s.received >= 5, 60_000);
});

after(async () => {
  await a?.close();
  await b?.close();
  await server?.close();
});

test('both sessions recover when the shared pack worker dies', { skip, timeout: 120_000 }, async () => {
  const threads = packWorkerThreads();
  assert.equal(threads.length, 1, 'one pack worker for the two sessions');
  const loads = await metric('xpl_lcm_pack_loads_total');
  const restarts = await metric('xpl_worker_restarts_total\\{worker="loop"\\}');
  await threads[0].terminate();
  const aAt = a.stats().received;
  const bAt = b.stats().received;
  await Promise.all([a.waitFor((s) => s.received >= aAt + 15, 60_000), b.waitFor((s) => s.received >= bAt + 15, 60_000)]);
  assert.ok(a.stats().received >= aAt + 15 && b.stats().received >= bAt + 15, 'both sessions get frames again');
  assert.equal(await metric('xpl_worker_restarts_total\\{worker="loop"\\}'), restarts + 2, 'each session’s loop worker was restarted once');
  const now = packWorkerThreads();
  assert.equal(now.length, 1, 'one new pack worker');
  assert.notEqual(now[0], threads[0]);
  assert.equal(await metric('xpl_lcm_pack_loads_total'), loads + 1, 'the pack was loaded once more, for both');
  assert.equal(await metric('xpl_lcm_streams'), 2);
  assert.equal(server.sessions.size, 2, 'no session was closed');
});

test('a dead loop worker’s stream is freed; its restart opens one stream on the loaded pack', { skip, timeout: 120_000 }, async () => {
  const id = new URL(a.sessionUrl).pathname.split('/').pop()!;
  const session = server.sessions.get(id) as unknown as { host: { worker: { worker: Worker } } };
  const loads = await metric('xpl_lcm_pack_loads_total');
  const aAt = a.stats().received;
  await session.host.worker.worker.terminate();
  await a.waitFor((s) => s.received >= aAt + 15, 60_000);
  assert.equal(await metric('xpl_lcm_streams'), 2, 'the old stream was freed, the new one opened (not 3)');
  assert.equal(await metric('xpl_lcm_pack_loads_total'), loads, 'the pack stayed loaded (the other session holds it)');
  assert.equal(packWorkerThreads().length, 1);
});
