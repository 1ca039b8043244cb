// npm test: alone — sessions are placed by the CPU capacity each node measures.
/**
 * Many nodes behind HAProxy, on loopback (test/support/cluster.ts): three real server processes
 * (n1, n2, n3 limited to 3, 2 and 1 sessions by --max-sessions), the shipped Redis config, and
 * HAProxy with the generator's config. In order, on one deployment:
 * - sessions created through the front spread by capacity, and every follow-up of a session
 *   (GET, PATCH, tokens, /view, WHEP, DELETE) reaches its node;
 * - a portrait uploaded through the front works on every node;
 * - the control socket of one node addresses the sessions of the others;
 * - the load tester, given the front's URL, ramps to the sum of the nodes' capacities, per node;
 * - a node killed (n2, with room left): its sessions end cleanly for their clients, new sessions
 *   avoid it at once, the others never stop;
 * - a node drained (n1, with room left): no new sessions land on it, its live session keeps
 *   streaming, it exits when empty;
 * - Redis down: what one node (n3) does keeps working, what needs the others fails with a clear
 *   error, and the node recovers when Redis is back;
 * - SIGTERM drains as the admin call does; a second SIGTERM stops at once.
 * Passthrough renderer at 320×240, 15 fps: the cluster has to fit on a 2-core machine.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { patternDriving, runLoad } from '../../loadtest/run.ts';
import { textSummary } from '../../loadtest/report.ts';
import { loopbackOnly } from '../../loadtest/sdp.ts';
import { minimalOffer } from '../faults/offer.ts';
import { CLUSTER_TOOLS_MISSING, clusterToolsPresent, startCluster, type LocalCluster } from '../support/cluster.ts';
import { serverExists } from '../support/server.ts';
import { metricValue, waitUntil } from '../support/wait.ts';
import { closeAllPeers, startPeer, type Peer } from '../support/wrtc-peer.ts';

const skip = !serverExists() ? 'server/main.ts not present' : !clusterToolsPresent() ? CLUSTER_TOOLS_MISSING : false;
const FIX = new URL('../fixtures/', import.meta.url);
let cluster: LocalCluster;

before(async () => {
  if (skip) return;
  cluster = await startCluster({
    nodes: [
      { id: 'n1', args: ['--max-sessions', '3'] },
      { id: 'n2', args: ['--max-sessions', '2'] },
      { id: 'n3', args: ['--max-sessions', '1'] },
    ],
    // --max-load 16: only --max-sessions limits the nodes (three CPU budgets of the whole machine
    // on one busy machine would refuse sessions at random).
    nodeArgs: ['--renderer', 'passthrough', '--output', '320x240', '--max-fps', '15', '--max-load', '16', '--ice-address', '127.0.0.1', '--log-level', 'warn', '--ice-timeout', '20', '--drain-timeout', '60'],
  });
});

after(async () => {
  if (skip) return;
  await closeAllPeers({ vanish: true });
  await cluster.stop();
});

const url = (node: string) => cluster.nodes.get(node)!.handle.url;
const nodeOf = (location: string) => location.split('/').pop()!.split('.')[0];

interface Answer {
  status: number;
  node: string | null;
  location: string | null;
  text: string;
  json: any;
}

async function call(method: string, target: string, body?: string | Uint8Array, type?: string): Promise<Answer> {
  const res = await fetch(target, { method, body: body as string | Uint8Array<ArrayBuffer> | undefined, headers: type ? { 'content-type': type } : {} }).catch((err: Error) => {
    throw new Error(`${method} ${target}: ${err.message} (${(err.cause as Error | undefined)?.message}); HAProxy's last lines:\n${cluster.haproxy.logs.slice(-6).join('\n')}`);
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* SDP or HTML */
  }
  return { status: res.status, node: res.headers.get('x-xpl-node'), location: res.headers.get('location'), text, json };
}

const newSession = (base: string, query = '') => call('POST', `${base}/v1/sessions?renderer=passthrough${query}`, minimalOffer(), 'application/sdp');

function countBy<T>(xs: T[], f: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[f(x)] = (out[f(x)] ?? 0) + 1;
  return Object.fromEntries(Object.entries(out).sort());
}

/** A JSON control-socket client: request() resolves with the reply; events are kept. */
async function control(base: string) {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/control`);
  const events: any[] = [];
  const pending = new Map<number, (reply: any) => void>();
  let next = 1;
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.event) events.push(msg);
    else pending.get(msg.id)?.(msg);
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return {
    events,
    request(op: string, args: Record<string, unknown> = {}): Promise<any> {
      const id = next++;
      return new Promise((resolve) => {
        pending.set(id, resolve);
        ws.send(JSON.stringify({ id, op, ...args }));
      });
    },
    waitEvent: (pred: (e: any) => boolean, ms: number, what: string) => waitUntil(() => events.some(pred), ms, what),
    close: () => ws.close(),
  };
}

const peerOn = (base: string): Promise<Peer> =>
  startPeer({ baseUrl: base, query: { renderer: 'passthrough' }, width: 320, height: 240, fps: 15, mungeOffer: (s) => loopbackOnly(s, 'offer'), mungeAnswer: (s) => loopbackOnly(s, 'answer') });

const agentSays = (port: number) =>
  new Promise<string>((resolve, reject) => {
    let text = '';
    const s = connect(port, '127.0.0.1');
    s.on('data', (d) => (text += d.toString()));
    s.on('end', () => resolve(text.trim()));
    s.on('error', reject);
  });

test('sessions through the front spread by capacity; every request of a session reaches its node', { skip, timeout: 60_000 }, async () => {
  // All at once: the weights HAProxy holds lag behind, and a node that is already full answers
  // 503, which the front retries on another node.
  const made: string[] = [];
  for (const r of await Promise.all(Array.from({ length: 6 }, () => newSession(cluster.front)))) {
    assert.equal(r.status, 201, r.text);
    assert.equal(r.node, nodeOf(r.location!), 'the node that answered is the one named in the Location');
    made.push(r.location!);
  }
  assert.deepEqual(countBy(made, nodeOf), { n1: 3, n2: 2, n3: 1 }, 'each node got as many sessions as it has room for');
  const full = await newSession(cluster.front);
  assert.equal(full.status, 503, 'every node is full');
  assert.equal(full.json.error.code, 'too_many_sessions');

  for (const node of ['n1', 'n2', 'n3']) {
    const m = await call('GET', `${cluster.front}/v1/nodes/${node}/metrics`);
    assert.equal(m.node, node, 'a node\'s own routes reach it through the front');
    const samples = m.text.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.ok(samples.length > 50 && samples.every((l) => l.includes(`node="${node}"`)), `every metric of ${node} carries its node`);
  }
  const listed = await call('GET', `${cluster.front}/v1/sessions`);
  assert.deepEqual(countBy(listed.json.sessions, (s: { node: string }) => s.node), { n1: 3, n2: 2, n3: 1 }, 'any node lists every node\'s sessions');

  for (const loc of made) {
    const node = nodeOf(loc);
    const id = loc.split('/').pop()!;
    const get = await call('GET', cluster.front + loc);
    assert.equal(get.status, 200, `GET ${loc}: ${get.text}`);
    assert.deepEqual([get.node, get.json.id], [node, id]);
    const patch = await call('PATCH', cluster.front + loc, 'a=candidate:1 1 udp 1 127.0.0.1 9 typ host', 'application/trickle-ice-sdpfrag');
    assert.deepEqual([patch.status, patch.node], [204, node], `PATCH ${loc}: ${patch.text}`);
    const token = await call('POST', `${cluster.front}${loc}/tokens`);
    assert.deepEqual([token.status, token.node], [201, node], token.text);
    const view = await call('GET', cluster.front + token.json.viewUrl);
    assert.deepEqual([view.status, view.node], [200, node], 'the OBS view page comes from the session\'s node');
    const whep = await call('POST', `${cluster.front}${loc}/whep`, minimalOffer().replace('a=sendrecv', 'a=recvonly'), 'application/sdp');
    assert.deepEqual([whep.status, whep.node], [201, node], `WHEP ${loc}: ${whep.text}`);
    const unview = await call('DELETE', cluster.front + whep.location!);
    assert.deepEqual([unview.status, unview.node], [204, node]);
    const del = await call('DELETE', cluster.front + loc);
    assert.deepEqual([del.status, del.node], [204, node]);
  }
});

test('a portrait uploaded through the front works on every node', { skip, timeout: 60_000 }, async () => {
  const jpeg = await readFile(new URL('grace_hopper.jpg', FIX));
  const up = await call('POST', `${cluster.front}/v1/portraits`, jpeg, 'image/jpeg');
  assert.equal(up.status, 201, up.text);
  assert.equal(up.json.shared, true);
  assert.equal(up.json.id, createHash('sha256').update(jpeg).digest('hex').slice(0, 32), 'its id is its content address');
  const again = await call('POST', `${cluster.front}/v1/portraits`, jpeg, 'image/jpeg');
  assert.equal(again.json.id, up.json.id, 'the same image uploaded again, through any node, is the same portrait');
  for (const node of ['n1', 'n2', 'n3']) {
    const s = await newSession(url(node), `&portrait=${up.json.id}`);
    assert.equal(s.status, 201, `${node}: ${s.text}`);
    const info = await call('GET', url(node) + s.location);
    assert.equal(info.json.portraitId, up.json.id, `${node} uses the portrait`);
    assert.equal((await call('DELETE', url(node) + s.location)).status, 204);
  }
  const list = await call('GET', `${url('n2')}/v1/portraits`);
  assert.ok(list.json.portraits.some((p: { id: string }) => p.id === up.json.id), 'listed by a node that never received the upload');
});

test('the control socket of one node addresses the sessions of the other nodes', { skip, timeout: 60_000 }, async () => {
  const s3 = await newSession(url('n3'));
  const id3 = s3.location!.split('/').pop()!;
  const ws = await control(url('n1'));
  try {
    const got = await ws.request('session.get', { session: id3 });
    assert.equal(got.ok, true, JSON.stringify(got));
    assert.equal(got.result.id, id3);
    const params = await ws.request('session.setParams', { session: id3, params: { expressionGain: 1.5 } });
    assert.deepEqual(params.result, { params: { expressionGain: 1.5 } });
    assert.equal((await call('GET', url('n3') + s3.location)).json.params.expressionGain, 1.5, 'the change happened on n3');
    const list = await ws.request('session.list');
    assert.ok(list.result.sessions.some((s: { id: string; node: string }) => s.id === id3 && s.node === 'n3'));
    assert.equal((await ws.request('stats.subscribe', { session: id3, hz: 5 })).ok, true);
    await ws.waitEvent((e) => e.event === 'stats' && e.session === id3, 5000, 'stats of the n3 session on the n1 socket');
    const nowhere = await ws.request('session.get', { session: 'n9.00000000-0000-4000-8000-000000000000' });
    assert.equal(nowhere.error.code, 'not_found');
    assert.match(nowhere.error.message, /node n9/);
    assert.equal((await ws.request('session.close', { session: id3 })).ok, true);
    await ws.waitEvent((e) => e.event === 'session.closed' && e.session === id3, 5000, 'session.closed relayed');
    assert.equal((await call('GET', cluster.front + s3.location)).status, 404);
  } finally {
    ws.close();
  }
});

test('the load tester through the front: a ramp reaches the sum of the nodes\' capacities, reported per node', { skip, timeout: 90_000 }, async (t) => {
  const t0 = performance.now();
  const r = await runLoad({
    url: cluster.front,
    renderer: 'passthrough',
    sessions: 1,
    durationS: 1,
    ramp: { stepS: 1, maxSessions: 8 },
    // No quality bar: the machine is shared, and this ramp is about placement (the SLO ramp is measured in docs/LOADTEST.md).
    slo: { minFps: 0, maxP95Ms: Number.POSITIVE_INFINITY },
    driving: patternDriving(320, 240, 15),
    probe: false,
    warmupS: 0.5,
    freezeMs: 1000,
    loopbackIce: true,
  });
  const summary = textSummary(r);
  t.diagnostic(`ramp of ${r.ramp!.levels.length} levels in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(r.ramp!.capacity, 6, summary);
  assert.match(r.ramp!.limitedBy, /refused session 7/);
  assert.deepEqual(r.ramp!.levels[5].perNode, { n1: 3, n2: 2, n3: 1 });
  assert.deepEqual(r.nodes!.map((n) => [n.node, n.sessions]), [['n1', 3], ['n2', 2], ['n3', 1]]);
  for (const n of r.nodes!) assert.ok(n.cpuPctMean > 0 && n.outFpsMean > 0, `${n.node} carried its sessions: ${JSON.stringify(n)}`);
  assert.match(summary, /per node \(through the load balancer\)/);
  // The load tester ends its sessions as it stops; the tests after this one count free places, so
  // they start once every node has let its sessions go.
  await waitUntil(async () => {
    const counts = await Promise.all([...cluster.nodes.keys()].map(async (n) => (await call('GET', `${url(n)}/healthz`)).json.sessions));
    return counts.every((c) => c === 0);
  }, 15_000, 'every node to have freed the ramp\'s sessions');
});

test('a node killed: its sessions end cleanly for their clients, new sessions avoid it, the others never stop', { skip, timeout: 90_000 }, async (t) => {
  // n2 (room for 2) holds one session, so HAProxy still gives it weight 1 when it dies.
  const a = await peerOn(url('n1'));
  const c = await peerOn(url('n2'));
  const placed: string[] = [];
  let ws: Awaited<ReturnType<typeof control>> | undefined;
  // Whatever fails, the places are given back: the tests after this one count them.
  try {
    const idC = c.sessionUrl.split('/').pop()!;
    await Promise.all([a.waitFor((s) => s.received >= 10, 20_000), c.waitFor((s) => s.received >= 10, 20_000)]);
    await waitUntil(async () => (await cluster.servers()).get('n2')?.weight === 1, 5000, 'HAProxy to weigh n2 by its one free session');
    ws = await control(url('n1'));
    assert.equal((await ws.request('stats.subscribe', { session: idC, hz: 2 })).ok, true);

    const killedAt = performance.now();
    const aBefore = a.received.length;
    cluster.nodes.get('n2')!.handle.child.kill('SIGKILL');
    // Right away, before the health check marks n2 down (inter 1s fall 2): the 3 free sessions of
    // n1 and n3 are all placed. HAProxy retries a refused connection or a 503 on other nodes, but
    // only 3 times, with the weights of the last agent check: its attempts may all go to n1 (full
    // by then) and the dead n2, depending on where its round-robin stands (the earlier tests move
    // it). The client then retries, as the 503 tells it to, here at once and within the 2 s that
    // SCALING.md gives the health check.
    const clientRetries: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      let r = await newSession(cluster.front);
      let retries = 0;
      for (; r.status === 503 && performance.now() - t0 < 2000; retries++) r = await newSession(cluster.front);
      assert.equal(r.status, 201, `right after the kill, after ${retries} retries: ${r.text}; HAProxy's last lines:\n${cluster.haproxy.logs.slice(-12).join('\n')}`);
      placed.push(r.location!);
      clientRetries.push(retries);
    }
    t.diagnostic(`client retries per new session right after the kill: ${clientRetries.join(', ')}`);
    assert.deepEqual(countBy(placed, nodeOf), { n1: 2, n3: 1 }, 'no new session on the dead node');
    await waitUntil(async () => (await cluster.servers()).get('n2')?.status.startsWith('DOWN') ?? false, 5000, 'HAProxy to mark n2 down');

    await ws.waitEvent((e) => e.event === 'session.closed' && e.session === idC && /n2 went away/.test(e.reason), 5000, 'the n1 socket told that the n2 session ended');
    const del = await call('DELETE', `${cluster.front}/v1/sessions/${idC}`);
    assert.deepEqual([del.status, del.json?.error?.code], [404, 'not_found'], 'a clean 404 from a live node, not a gateway error');
    await waitUntil(() => ['disconnected', 'failed', 'closed'].includes(c.pc.connectionState), 20_000, 'the client\'s connection to end');

    await a.waitFor((s) => s.received >= aBefore + 30, 15_000);
    const after = a.received.filter((f) => f.at >= killedAt);
    const gaps = after.slice(1).map((f, i) => f.at - after[i].at);
    assert.ok(Math.max(...gaps) < 1500, `n1's session never stalled (longest gap ${Math.max(...gaps).toFixed(0)} ms)`);
    assert.equal(cluster.nodes.get('n1')!.handle.child.exitCode, null);
    assert.equal(cluster.nodes.get('n3')!.handle.child.exitCode, null);
    await waitUntil(async () => !(await call('GET', `${cluster.front}/v1/nodes`)).json.nodes.some((n: { node: string }) => n.node === 'n2'), 10_000, 'the directory to forget n2');
    for (const l of placed.splice(0)) assert.equal((await call('DELETE', cluster.front + l)).status, 204);
  } finally {
    ws?.close();
    await c.close({ vanish: true });
    await a.close();
    for (const l of placed) await call('DELETE', cluster.front + l).catch(() => undefined);
  }
});

test('a node drained: no new sessions land on it, its live session keeps streaming, it exits when empty', { skip, timeout: 60_000 }, async () => {
  // n1 has room for 3 and keeps 2 of it while draining; only n3 (room for 1) takes new sessions.
  const n1 = cluster.nodes.get('n1')!;
  const b = await peerOn(url('n1'));
  const idB = b.sessionUrl.split('/').pop()!;
  await b.waitFor((s) => s.received >= 10, 20_000);
  const exited = new Promise<number | null>((resolve) => n1.handle.child.once('exit', (code) => resolve(code)));

  const drain = await call('POST', `${cluster.front}/v1/nodes/n1/drain`);
  assert.deepEqual([drain.status, drain.node, drain.json.state], [202, 'n1', 'draining']);
  assert.equal(await agentSays(n1.agentPort), 'drain');
  const health = await call('GET', `${url('n1')}/healthz`);
  assert.deepEqual([health.status, health.json.status, health.json.drain.sessions], [200, 'draining', 1]);
  assert.equal(metricValue((await call('GET', `${url('n1')}/metrics`)).text, 'xpl_node_draining\\{node="n1"\\}'), 1);
  await waitUntil(async () => (await cluster.servers()).get('n1')?.status.startsWith('DRAIN') ?? false, 5000, 'HAProxy to drain n1');

  await waitUntil(async () => (await cluster.servers()).get('n3')?.weight === 1, 5000, 'HAProxy to weigh n3 by its free session');
  const first = await newSession(cluster.front);
  assert.deepEqual([first.status, first.node], [201, 'n3'], first.text);
  const second = await newSession(cluster.front);
  assert.equal(second.status, 503, 'n3 is full and n1 takes none, though it has room');
  const refused = await newSession(url('n1'));
  assert.deepEqual([refused.status, refused.json.error.code], [503, 'draining']);

  const before = b.received.length;
  await b.waitFor((s) => s.received >= before + 20, 10_000);
  const del = await call('DELETE', `${cluster.front}/v1/sessions/${idB}`);
  assert.deepEqual([del.status, del.node], [204, 'n1'], 'the live session\'s requests still reach the draining node');
  await b.close({ vanish: true });
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
  assert.equal(code, 0, 'n1 exits with 0 once its last session has ended');
  assert.equal((await call('DELETE', cluster.front + first.location)).status, 204);
});

test('Redis down: what one node does keeps working, what needs the others fails with a clear error', { skip, timeout: 60_000 }, async () => {
  // n3 is the last node standing, with room for one session at a time.
  const n3 = url('n3');
  const shared = (await call('GET', `${n3}/v1/portraits`)).json.portraits.find((p: { shared?: boolean }) => p.shared);
  await cluster.redis.stop();
  await waitUntil(async () => (await call('GET', `${n3}/healthz`)).json.redis === 'down', 5000, 'n3 to see Redis down');
  const health = await call('GET', `${n3}/healthz`);
  assert.equal(health.json.status, 'degraded');
  assert.ok(health.json.reasons.some((r: string) => /redis .* unreachable/.test(r)), JSON.stringify(health.json.reasons));

  const viaFront = await newSession(cluster.front);
  assert.deepEqual([viaFront.status, viaFront.node], [201, 'n3'], `the front places sessions without Redis: ${viaFront.text}`);
  const listing = await call('GET', `${n3}/v1/sessions`);
  assert.equal(listing.status, 200);
  assert.equal(listing.json.incomplete.code, 'cluster_unavailable');
  assert.deepEqual(listing.json.sessions.map((x: { id: string }) => x.id), [viaFront.location!.split('/').pop()], 'this node\'s own sessions are still listed');
  assert.equal((await call('DELETE', cluster.front + viaFront.location)).status, 204);
  const cached = await newSession(n3, `&portrait=${shared.id}`);
  assert.equal(cached.status, 201, `a shared portrait this node already holds: ${cached.text}`);
  assert.equal((await call('DELETE', n3 + cached.location)).status, 204);
  const up = await call('POST', `${n3}/v1/portraits`, await readFile(new URL('astronaut.png', FIX)), 'image/png');
  assert.deepEqual([up.status, up.json.shared], [201, false], 'an upload works here, and says it is not shared');
  const local = await newSession(n3, `&portrait=${up.json.id}`);
  assert.equal(local.status, 201, local.text);
  assert.equal((await call('DELETE', n3 + local.location)).status, 204);

  const nodes = await call('GET', `${n3}/v1/nodes`);
  assert.deepEqual([nodes.status, nodes.json.error.code], [503, 'cluster_unavailable']);
  assert.match(nodes.json.error.message, /shared Redis \(redis:\/\/127\.0\.0\.1:\d+\), which is unreachable/);
  const ws = await control(n3);
  const remote = await ws.request('session.get', { session: 'n1.00000000-0000-4000-8000-000000000000' });
  assert.equal(remote.error.code, 'cluster_unavailable');
  assert.match(remote.error.message, /Redis/);
  ws.close();

  await cluster.restartRedis();
  await waitUntil(async () => (await call('GET', `${n3}/healthz`)).json.status === 'ok', 10_000, 'n3 to recover');
  await waitUntil(async () => (await call('GET', `${n3}/v1/nodes`)).json.nodes?.some((n: { node: string }) => n.node === 'n3') ?? false, 10_000, 'n3 back in the directory');
});

test('SIGTERM drains like the admin call; a second SIGTERM stops at once', { skip, timeout: 30_000 }, async () => {
  const n3 = cluster.nodes.get('n3')!;
  const live = await newSession(url('n3'));
  assert.equal(live.status, 201, live.text);
  const exited = new Promise<number | null>((resolve) => n3.handle.child.once('exit', (code) => resolve(code)));
  n3.handle.child.kill('SIGTERM');
  await waitUntil(async () => (await call('GET', `${url('n3')}/healthz`)).json.status === 'draining', 5000, 'n3 to drain');
  assert.equal(await agentSays(n3.agentPort), 'drain');
  assert.equal((await newSession(url('n3'))).json.error.code, 'draining');
  assert.equal((await call('GET', url('n3') + live.location)).status, 200, 'its live session is still there');
  n3.handle.child.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
  assert.equal(code, 0, 'the second SIGTERM closes the live session and exits 0 without waiting for --drain-timeout (60 s)');
});
