/**
 * The shared state against a real Redis (the shipped config, on a free loopback port): two nodes'
 * connections agree on the token key; shared portraits keep bytes, list, count and delete; the
 * directory lists a node and its sessions and forgets them when the node leaves; with Redis gone,
 * every call fails at once with `cluster_unavailable` naming the Redis (never its password), and
 * the connection comes back by itself.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Directory } from '../../server/cluster/directory.ts';
import { RedisTokenKeys } from '../../server/cluster/keys.ts';
import { RedisPortraits } from '../../server/cluster/portraits.ts';
import { SharedState } from '../../server/cluster/redis.ts';
import { XplError } from '../../server/errors.ts';
import { Tokens } from '../../server/http/tokens.ts';
import { createLogger } from '../../server/log.ts';
import type { SessionManager } from '../../server/session/manager.ts';
import { CLUSTER_TOOLS_MISSING, clusterToolsPresent, startRedis, type Proc } from '../support/cluster.ts';
import { freePort } from '../support/server.ts';
import { waitUntil } from '../support/wait.ts';

const skip = !clusterToolsPresent() && CLUSTER_TOOLS_MISSING;
const log = createLogger('silent');
let dir: string;
let port: number;
let redis: Proc;
let a: SharedState;
let b: SharedState;

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'xpl-redis-'));
  port = await freePort();
  redis = await startRedis(port, dir);
  a = new SharedState(`redis://127.0.0.1:${port}`, log);
  b = new SharedState(`redis://127.0.0.1:${port}`, log);
  await Promise.all([a.connect(), b.connect()]);
});

after(async () => {
  if (skip) return;
  await Promise.all([a.close(), b.close()]);
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
});

test('two nodes get the same token key: a token minted on one is good on the other', { skip }, async () => {
  const [ka, kb] = await Promise.all([new RedisTokenKeys(a).secret('viewer'), new RedisTokenKeys(b).secret('viewer')]);
  assert.equal(ka, kb);
  assert.ok(ka.length >= 40);
  assert.notEqual(await new RedisTokenKeys(a).secret('publish'), ka, 'one key per purpose');
  const { token } = new Tokens(ka).mint('n1.00000000-0000-4000-8000-000000000000', 60);
  assert.equal(new Tokens(kb).verify(token).sessionId, 'n1.00000000-0000-4000-8000-000000000000');
});

test('shared portraits: bytes kept exactly, listed, counted against the limit, deleted', { skip }, async () => {
  const share = new RedisPortraits(a);
  const other = new RedisPortraits(b);
  const info = (id: string) => ({ id, width: 2, height: 3, face: null, createdAt: '2026-01-01T00:00:00.000Z' });
  const bytes = new Uint8Array([0, 1, 2, 255, 254, 0, 13, 10]);
  await share.put(info('p1'), bytes, 2);
  await share.put(info('p1'), bytes, 2);
  await share.put(info('p2'), bytes.subarray(2), 2);
  const got = await other.fetch('p1');
  assert.deepEqual([...got!.bytes], [...bytes], 'binary-safe');
  assert.deepEqual(got!.info, info('p1'));
  await assert.rejects(share.put(info('p3'), bytes, 2), (e: unknown) => e instanceof XplError && e.code === 'too_many_sessions' && /limit of 2 portraits/.test(e.message));
  assert.deepEqual((await other.list()).map((p) => p.id).sort(), ['p1', 'p2']);
  assert.equal(await other.remove('p1'), true);
  assert.equal(await share.exists('p1'), false);
  assert.equal(await share.fetch('p1'), null);
  assert.equal(await share.remove('p1'), false);
  await share.remove('p2');
});

test('the directory lists a node and its sessions, and forgets them when the node leaves', { skip }, async () => {
  const events = new EventEmitter();
  const session = { id: 'n7.00000000-0000-4000-8000-000000000007', info: () => ({ id: 'n7.00000000-0000-4000-8000-000000000007', renderer: 'passthrough', portraitId: 'default', createdAt: 'now', state: 'active', sendsBack: true, viewers: 1 }) };
  const sessions = { events, list: () => [session], size: 1 } as unknown as SessionManager;
  const self = () => ({ node: 'n7', url: 'http://127.0.0.1:1', agentPort: null, state: 'serving' as const, sessions: 1, maxSessions: 4, free: 3, capacity: { loadCores: 0, sessionCores: null, budgetCores: 1.8, estimate: null }, startedAt: 'then' });
  const dirA = new Directory(a, self, sessions, log);
  const dirB = new Directory(b, () => ({ ...self(), node: 'n8' }), { events: new EventEmitter(), list: () => [], size: 0 } as unknown as SessionManager, log);
  await Promise.all([dirA.beat(), dirB.beat()]);
  const seenFromB = await dirB.nodes();
  assert.deepEqual(seenFromB.map((n) => [n.node, n.free]), [['n7', 3], ['n8', 3]]);
  assert.equal((await dirB.node('n7'))?.url, 'http://127.0.0.1:1');
  assert.deepEqual(await dirB.sessionsOf(['n7', 'n8']), [{ ...session.info(), node: 'n7' }]);
  await dirA.stop();
  assert.deepEqual((await dirB.nodes()).map((n) => n.node), ['n8']);
  assert.equal(await dirB.node('n7'), undefined);
  await dirB.stop();
});

test('with Redis gone every call fails at once, naming the Redis but not its password; the connection comes back', { skip }, async () => {
  await redis.stop();
  await waitUntil(() => !b.up, 5000, 'the client to notice');
  const t0 = performance.now();
  const err = await new RedisPortraits(b).list().then(() => null, (e: unknown) => e);
  assert.ok(performance.now() - t0 < 100, 'no waiting for a timeout');
  assert.ok(err instanceof XplError && err.code === 'cluster_unavailable', String(err));
  assert.match(err.message, /listing the shared portraits needs the shared Redis \(redis:\/\/127\.0\.0\.1:\d+\), which is unreachable/);
  assert.match(b.problem!, /unreachable/);
  const secret = new SharedState(`redis://user:s3cret@127.0.0.1:${port}`, log);
  await secret.connect();
  const hidden = await secret.run('a call', async () => 1).then(() => null, (e: Error) => e.message);
  assert.match(hidden!, /^a call needs the shared Redis \(redis:\/\/127\.0\.0\.1:\d+\/?\)/);
  assert.doesNotMatch(hidden!, /s3cret|user@/, 'the password stays out of messages');
  await secret.close();
  redis = await startRedis(port, dir);
  await waitUntil(() => a.up && b.up, 10_000, 'both connections back');
  assert.equal(b.problem, undefined);
  assert.deepEqual(await new RedisPortraits(b).list(), []);
});
