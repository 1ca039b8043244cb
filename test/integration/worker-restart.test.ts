/**
 * Faults on a live server (run inside this process so the test can reach a session's parts): the
 * decoder process, the encoder process and the loop worker of session A are killed in turn; A's
 * video resumes after each, and session B, running beside it, never stops receiving its own
 * frames.
 */
import assert from 'node:assert/strict';
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
  // No frame budget: a busy test machine must not slow B's frames, which the test counts.
  const parsed = loadConfig(['--port', '0', '--renderer', 'passthrough', '--latency-budget', '0'], {});
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

/** Kills one of session A's parts from outside, as a crash would (private fields, reached for this test only). */
async function kill(part: 'decoder' | 'encoder' | 'loop'): Promise<void> {
  const host = (sessionA as unknown as { host: { worker: { worker: { terminate(): Promise<number> } }; call(m: 'processes', a: undefined): Promise<{ decoder: number[]; encoder: number[] }> } }).host;
  if (part === 'loop') {
    await host.worker.worker.terminate();
    return;
  }
  // The first process is the one at work (the encoder's second is its started spare).
  const [pid] = (await host.call('processes', undefined))[part];
  assert.ok(pid, `session A has a ${part} process`);
  process.kill(pid, 'SIGKILL');
}

async function restarts(worker: string): Promise<number> {
  const text = await registry.metrics();
  return Number(new RegExp(`^xpl_worker_restarts_total\\{worker="${worker}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

for (const part of ['decoder', 'encoder', 'loop'] as const) {
  test(`session A recovers when its ${part} ${part === 'loop' ? 'worker' : 'process'} dies; session B is unaffected`, { timeout: 60_000 }, async () => {
    const before = await restarts(part);
    const bBefore = b.stats().received;
    await kill(part);
    const aAt = a.stats().received;
    await a.waitFor((s) => s.received >= aAt + 20, 20_000);
    assert.equal(await restarts(part), before + 1, `xpl_worker_restarts_total{worker="${part}"} counts the restart`);
    assert.equal(sessionA.isClosed, false, 'the session survived');
    // A can be back within a second, before B has sent 20 frames: B must get there too, undisturbed.
    const bStats = await b.waitFor((s) => s.received >= bBefore + 20, 10_000);
    assert.equal(bStats.outOfOrder, 0);
  });
}
