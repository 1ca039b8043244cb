/**
 * The scale-out pieces on their own: the agent check's answer, session ids that name their node,
 * the cluster flags, the room a node reports (the same rule as admission), the drain's states
 * and deadline, and the portrait store over a share that may be away.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { agentReply } from '../../server/cluster/agent.ts';
import { Drain } from '../../server/cluster/drain.ts';
import { newSessionId, nodeOfSession } from '../../server/cluster/ids.ts';
import { loadConfig } from '../../server/config.ts';
import { requestSchemas } from '../../server/control/schema.ts';
import { XplError } from '../../server/errors.ts';
import { createLogger } from '../../server/log.ts';
import { contentId, PortraitStore, type PortraitInfo, type PortraitShare } from '../../server/portraits/store.ts';
import { Capacity } from '../../server/session/capacity.ts';
import type { SessionManager } from '../../server/session/manager.ts';

const log = createLogger('silent');

test('the agent check answers the free sessions as a weight, drain while draining, maint while stopping', () => {
  assert.equal(agentReply('serving', 3), 'ready 3%');
  assert.equal(agentReply('serving', 0), 'ready 0%', 'full: weight 0, out of the rotation');
  assert.equal(agentReply('serving', 1000), 'ready 256%', 'HAProxy weights stop at 256');
  assert.equal(agentReply('draining', 5), 'drain');
  assert.equal(agentReply('stopping', 5), 'maint');
  assert.equal(agentReply('stopped', 5), 'maint');
});

test('session ids name their node, and fit every session-id field with the longest node id', () => {
  const id = newSessionId('n1');
  assert.match(id, /^n1\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal(nodeOfSession(id), 'n1');
  const bare = newSessionId(undefined);
  assert.match(bare, /^[0-9a-f-]{36}$/, 'a server without --node-id keeps plain uuids');
  assert.equal(nodeOfSession(bare), undefined);
  const longest = newSessionId('a'.repeat(27));
  assert.equal(requestSchemas['session.get'].safeParse({ id: 1, op: 'session.get', session: longest }).success, true);
});

test('the cluster flags: node id rules, Redis needs a node id, drain timeout default', () => {
  const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = loadConfig(argv, env);
    return (r as Extract<typeof r, { help: false }>).config;
  };
  const c = load(['--node-id', 'gpu-3', '--redis', 'redis://:pw@10.0.0.5:6379/1', '--agent-port', '9080']);
  assert.deepEqual([c.nodeId, c.redis, c.agentPort, c.drainTimeout], ['gpu-3', 'redis://:pw@10.0.0.5:6379/1', 9080, 30]);
  assert.equal(load([], { XPL_NODE_ID: 'n2', XPL_DRAIN_TIMEOUT: '600' }).drainTimeout, 600);
  const rejects = (argv: string[], re: RegExp) =>
    assert.throws(() => loadConfig(argv, {}), (e: unknown) => e instanceof XplError && e.code === 'bad_config' && re.test(e.message), argv.join(' '));
  rejects(['--node-id', 'Node1'], /--node-id: a node id is 1–27 characters/);
  rejects(['--node-id', '-n1'], /--node-id/);
  rejects(['--node-id', 'a'.repeat(28)], /--node-id/);
  rejects(['--redis', 'redis://127.0.0.1:6379'], /needs a unique name: pass --node-id/);
  rejects(['--node-id', 'n1', '--redis', 'http://127.0.0.1:6379'], /--redis: expected redis:\/\//);
  rejects(['--drain-timeout', '-1'], /--drain-timeout/);
});

test('the room a node reports follows admission: admit() takes exactly room() more sessions', async () => {
  let t = 0;
  let cpu = 0;
  let sessions = 0;
  const c = new Capacity(0.9, () => sessions, { cores: 2, now: () => t, cpuSeconds: async () => cpu, sampleEveryMs: 3_600_000 });
  try {
    assert.equal(c.room(), null, 'nothing is known before the first measured session');
    c.started();
    sessions = 1;
    for (let i = 0; i < 8; i++) {
      t += 1000;
      cpu += sessions * 0.5;
      await c.sample();
    }
    const room = c.room()!;
    assert.equal(room, 2, '1.8 cores budget, 0.5 used, 0.5 per session');
    let admitted = 0;
    while (c.admit().ok) {
      c.started();
      sessions++;
      admitted++;
    }
    assert.equal(admitted, room);
    assert.equal(c.room(), 0);
  } finally {
    c.stop();
  }
});

/** A stand-in for the SessionManager: its size, its events and what a drain tells it. */
function fakeSessions(size: number) {
  const events = new EventEmitter();
  const fake = {
    size,
    events,
    refused: undefined as string | undefined,
    refuseNew(reason: string) {
      fake.refused = reason;
    },
    end() {
      fake.size--;
      events.emit('closed', 'id', 'closed by client');
    },
  };
  return fake;
}

test('a drain refuses new sessions, waits for the live ones, and stops once they have ended', async () => {
  const s = fakeSessions(2);
  const stops: string[] = [];
  const d = new Drain(s as unknown as SessionManager, 60, async (reason) => void stops.push(reason), log);
  assert.equal(d.state, 'serving');
  const done = d.start('SIGTERM');
  assert.equal(d.state, 'draining');
  assert.match(s.refused!, /draining \(SIGTERM\)/);
  assert.equal(d.report().sessions, 2);
  assert.equal(d.start('again'), done, 'a second drain is the same drain');
  s.end();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(stops, [], 'one session is still live');
  s.end();
  await done;
  assert.deepEqual(stops, ['drained']);
  assert.equal(d.state, 'stopped');
});

test('a drain closes what is left at its deadline; stopping during a drain does not wait for it', async () => {
  const late = fakeSessions(1);
  const stops: string[] = [];
  const t0 = performance.now();
  await new Drain(late as unknown as SessionManager, 0.2, async (reason) => void stops.push(reason), log).start('test');
  assert.ok(performance.now() - t0 >= 190, 'it waited for the deadline');
  assert.deepEqual(stops, ['server shutdown: drain deadline']);

  const hurried = fakeSessions(1);
  const d = new Drain(hurried as unknown as SessionManager, 3600, async (reason) => void stops.push(reason), log);
  const draining = d.start('SIGTERM');
  await d.stopNow('server shutdown (second SIGTERM)');
  await draining;
  assert.equal(stops.at(-1), 'server shutdown');
});

/** An in-memory share, which can be taken away. */
function memoryShare() {
  const infos = new Map<string, PortraitInfo>();
  const bytes = new Map<string, Uint8Array>();
  let down = false;
  const check = () => {
    if (down) throw new XplError('cluster_unavailable', 'the shared Redis is unreachable');
  };
  const share: PortraitShare & { puts: number; setDown(v: boolean): void; infos: Map<string, PortraitInfo> } = {
    puts: 0,
    infos,
    setDown: (v) => (down = v),
    async put(info, b) {
      check();
      share.puts++;
      infos.set(info.id, info);
      bytes.set(info.id, b);
    },
    async fetch(id) {
      check();
      return infos.has(id) ? { info: infos.get(id)!, bytes: bytes.get(id)! } : null;
    },
    async exists(id) {
      check();
      return infos.has(id);
    },
    async list() {
      check();
      return [...infos.values()];
    },
    async remove(id) {
      check();
      bytes.delete(id);
      return infos.delete(id);
    },
  };
  return share;
}

test('portraits over a share: content-addressed, fetched by other nodes, deletions seen, and a share that is away', async () => {
  const jpeg = new Uint8Array(await readFile(new URL('../fixtures/grace_hopper.jpg', import.meta.url)));
  const png = new Uint8Array(await readFile(new URL('../fixtures/astronaut.png', import.meta.url)));
  const face = async () => ({ x: 1, y: 2, width: 3, height: 4, score: 0.9 });
  const share = memoryShare();
  const a = new PortraitStore(face, 64, share);
  const b = new PortraitStore(face, 64, share);

  const p = await a.add(jpeg);
  assert.equal(p.id, contentId(jpeg));
  assert.equal(p.shared, true);
  assert.equal((await a.add(jpeg)).id, p.id, 'the same bytes are the same portrait');
  assert.equal(share.puts, 1, 'and are shared once');

  const onB = await b.get(p.id);
  assert.deepEqual([onB.width, onB.height, onB.shared], [p.width, p.height, true], 'another node decodes the shared bytes');
  assert.deepEqual((await b.list()).portraits.map((x) => x.id), [p.id]);

  share.setDown(true);
  assert.equal((await b.get(p.id)).id, p.id, 'a portrait held here still works while the share is away');
  await assert.rejects(new PortraitStore(face, 64, share).get(p.id), (e: unknown) => e instanceof XplError && e.code === 'cluster_unavailable');
  const local = await a.add(png);
  assert.equal(local.shared, false, 'an upload while the share is away is kept here, marked unshared');
  assert.equal((await a.get(local.id)).id, local.id);
  const listing = await a.list();
  assert.equal(listing.incomplete?.code, 'cluster_unavailable');
  assert.deepEqual(listing.portraits.map((x) => x.id).sort(), [p.id, local.id].sort());

  share.setDown(false);
  await a.delete(p.id);
  await assert.rejects(b.get(p.id), (e: unknown) => e instanceof XplError && e.code === 'not_found', 'a deletion through another node is seen');
  await assert.rejects(a.delete(p.id), (e: unknown) => e instanceof XplError && e.code === 'not_found');
});
