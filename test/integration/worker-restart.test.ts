/**
 * Worker faults on a live server (run inside this process so the test can reach a session's
 * workers): the decoder, encoder and render worker of session A are killed in turn; A's video
 * resumes after each, and session B, running beside it, never stops receiving its own frames.
 */
import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../server/config.ts';
import { createLogger } from '../../server/log.ts';
import { registry } from '../../server/metrics.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import type { Session } from '../../server/session/session.ts';
import { startPeer, type Peer } from '../support/wrtc-peer.ts';

let server: RunningServer;
let a: Peer;
let b: Peer;
let sessionA: Session;

before(async () => {
  const parsed = loadConfig(['--port', '0', '--renderer', 'passthrough'], {});
  assert.equal(parsed.help, false);
  server = await startServer((parsed as { config: import('../../server/config.ts').Config }).config, createLogger('warn'));
  a = await startPeer({ baseUrl: server.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 20 });
  b = await startPeer({ baseUrl: server.url, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 20 });
  await a.waitFor((s) => s.decoded >= 10, 30_000);
  await b.waitFor((s) => s.decoded >= 10, 30_000);
  const id = new URL(a.sessionUrl).pathname.split('/').pop()!;
  sessionA = server.sessions.get(id);
});

after(async () => {
  await a?.close();
  await b?.close();
  await server?.close();
});

/** The worker thread behind one of the session's parts (private fields, read for this test only). */
function workerOf(part: 'decoder' | 'encoder' | 'render'): Worker {
  const s = sessionA as unknown as Record<string, { channel?: { worker: Worker }; client?: { worker: Worker } }>;
  const holder = s[part];
  const w = holder.channel?.worker ?? holder.client?.worker;
  assert.ok(w, `session A has a ${part} worker`);
  return w;
}

async function restarts(worker: string): Promise<number> {
  const text = await registry.metrics();
  return Number(new RegExp(`^xpl_worker_restarts_total\\{worker="${worker}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

for (const part of ['decoder', 'encoder', 'render'] as const) {
  test(`session A recovers when its ${part} worker dies; session B is unaffected`, { timeout: 60_000 }, async () => {
    const before = await restarts(part);
    const bBefore = b.stats().received;
    await workerOf(part).terminate();
    const aAt = a.stats().received;
    await a.waitFor((s) => s.received >= aAt + 20, 20_000);
    assert.equal(await restarts(part), before + 1, `xpl_worker_restarts_total{worker="${part}"} counts the restart`);
    assert.equal(sessionA.isClosed, false, 'the session survived');
    const bStats = b.stats();
    assert.ok(bStats.received >= bBefore + 20, 'session B kept receiving frames meanwhile');
    assert.equal(bStats.outOfOrder, 0);
  });
}
