// npm test: alone — the load tester's runs measure frame rates and latency.
/**
 * The tools the fault tests and the load test stand on: the UDP relay (forwards only between the
 * two loopback targets from the SDP, applies loss at the configured rate, injects), the SDP
 * candidate rewriting, the /metrics parser, and one short end-to-end load-test run.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { readFile, rm } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { cpuPercent, metricValue, parseMetrics } from '../../loadtest/scrape.ts';
import { loopbackOnly } from '../../loadtest/sdp.ts';
import { loopbackCandidate, replaceCandidates, startUdpRelay } from '../support/udp-relay.ts';
import { REPO_ROOT, serverExists } from '../support/server.ts';
import { sleep } from './support.ts';

const SDP = [
  'v=0',
  'o=- 1 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'm=video 9 UDP/TLS/RTP/SAVPF 96',
  'c=IN IP4 0.0.0.0',
  'a=ice-ufrag:abcd',
  'a=ice-pwd:0123456789012345678901',
  'a=candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host generation 0',
  'a=candidate:2 1 udp 2122194687 127.0.0.1 50001 typ host generation 0',
  'a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active',
  'a=end-of-candidates',
  'a=rtpmap:96 VP8/90000',
  '',
].join('\r\n');

test('SDP candidate rewriting: the loopback candidate is found, all are replaced by the relay\'s, loopbackOnly keeps 127.x UDP only', () => {
  assert.deepEqual(loopbackCandidate(SDP), { address: '127.0.0.1', port: 50001 });
  const r = replaceCandidates(SDP, 40000);
  const cands = r.split('\r\n').filter((l) => l.startsWith('a=candidate:'));
  assert.deepEqual(cands, ['a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host generation 0']);
  assert.ok(!r.includes('end-of-candidates'));
  assert.ok(r.endsWith('\r\n'), 'line endings kept');
  const noCands = SDP.split('\r\n').filter((l) => !l.startsWith('a=candidate')).join('\r\n');
  assert.match(replaceCandidates(noCands, 4), /a=ice-pwd:\S+\r\na=candidate:1 1 udp \d+ 127\.0\.0\.1 4 typ host/);
  const lo = loopbackOnly(SDP, 'answer').split('\r\n').filter((l) => l.startsWith('a=candidate:'));
  assert.deepEqual(lo, ['a=candidate:2 1 udp 2122194687 127.0.0.1 50001 typ host generation 0']);
  assert.throws(() => loopbackOnly(SDP.replace('127.0.0.1 50001', '192.0.2.3 50001'), 'answer'), /--ice-address 127\.0\.0\.1/);
});

test('/metrics parsing: sums labelled series, CPU % between two samples', () => {
  const text = ['# HELP x', 'xpl_process_cpu_seconds_total 12.5', 'xpl_process_resident_memory_bytes 1048576', 'xpl_sessions{renderer="passthrough"} 2', 'xpl_sessions{renderer="mesh-warp"} 1', 'xpl_frames_out_total 7', 'xpl_event_loop_lag_seconds 0.012', 'xpl_udp_receive_drops_total 41'].join('\n');
  assert.equal(metricValue(text, 'xpl_sessions'), 3);
  assert.ok(Number.isNaN(metricValue(text, 'xpl_nope')));
  const a = parseMetrics(text, 0);
  const b = parseMetrics(text.replace('12.5', '13.5'), 2000);
  assert.equal(a.rssBytes, 1048576);
  assert.equal(a.framesOut, 7);
  assert.equal(a.eventLoopLagMs, 12);
  assert.equal(a.udpDrops, 41);
  assert.equal(cpuPercent(a, b), 50);
});

async function udp(address = '127.0.0.1'): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  return s;
}

test('the relay forwards both ways between the SDP targets, drops at the configured rate, injects, and ignores non-loopback sources', { timeout: 20_000 }, async () => {
  // mulberry32: a small seeded PRNG, so the loss count is the same on every run.
  let seed = 42;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
  const relay = await startUdpRelay({ random });
  const client = await udp();
  const server = await udp();
  const got = { client: 0, server: 0 };
  client.on('message', () => got.client++);
  server.on('message', () => got.server++);
  try {
    relay.mungeOffer(SDP.replace('127.0.0.1 50001', `127.0.0.1 ${client.address().port}`));
    relay.mungeAnswer(SDP.replace('127.0.0.1 50001', `127.0.0.1 ${server.address().port}`));
    const send = (s: Socket, port: number) => new Promise<void>((r) => s.send(Buffer.from('x'), port, '127.0.0.1', () => r()));
    for (let i = 0; i < 50; i++) {
      await send(client, relay.clientPort);
      await send(server, relay.serverPort);
    }
    await sleep(200);
    assert.deepEqual(got, { client: 50, server: 50 }, 'clean: everything arrives');
    relay.setFault({ loss: 0.2 });
    // In batches: relay and sockets share this event loop, and a kernel socket buffer holds only so many datagrams.
    for (let i = 0; i < 1000; i++) {
      await send(client, relay.clientPort);
      if (i % 25 === 24) await sleep(5);
    }
    await sleep(300);
    assert.equal(relay.stats.forwarded.toServer + relay.stats.dropped.toServer, 1050, 'the relay saw every datagram');
    const lost = relay.stats.dropped.toServer;
    assert.ok(lost > 140 && lost < 260, `20 % loss dropped ${lost} of 1000`);
    assert.equal(got.server - 50, 1000 - lost, 'everything not dropped arrives');
    relay.setFault({ outage: true, directions: ['toClient'] });
    const before = { ...got };
    await send(server, relay.serverPort);
    await send(client, relay.clientPort);
    await sleep(100);
    assert.equal(got.client, before.client, 'the outage toward the client holds');
    assert.equal(got.server, before.server + 1, 'the other direction is unaffected');
    relay.setFault({});
    relay.inject('server', Uint8Array.from([1, 2, 3]));
    relay.inject('client', new Uint8Array(0));
    await sleep(100);
    assert.equal(got.server, before.server + 2);
    assert.equal(got.client, before.client + 1);
    // A datagram from this machine's non-loopback address (sent *to* loopback) is never forwarded.
    const other = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
    if (other) {
      const foreign = await udp(other.address);
      await new Promise<void>((r) => foreign.send(Buffer.from('x'), relay.clientPort, '127.0.0.1', () => r()));
      await sleep(100);
      foreign.close();
      assert.equal(relay.stats.foreign, 1);
      assert.equal(got.server, before.server + 2);
    }
  } finally {
    client.close();
    server.close();
    await relay.close();
  }
});

// The spawned server runs with the server's own defaults (the frame budget among them), so the run
// turns the budget off: on a test machine busy with other tests it could lower the rate counted here.
test('loadtest/cli.ts: a 1-session, 3 s run against a spawned server writes a consistent JSON and HTML report', { skip: !serverExists() && 'server/main.ts not present', timeout: 90_000 }, async (t) => {
  const json = join(tmpdir(), `xpl-loadtest-${process.pid}.json`);
  const html = join(tmpdir(), `xpl-loadtest-${process.pid}.html`);
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'loadtest/cli.ts', '--spawn', '--sessions', '1', '--duration', '3', '--warmup', '2', '--width', '320', '--height', '240', '--json', json, '--plot', html, '--quiet', '--server-arg=--output=256x256', '--server-arg=--latency-budget=0'], { cwd: REPO_ROOT, timeout: 80_000 });
    t.diagnostic(stdout);
    const r = JSON.parse(await readFile(json, 'utf8'));
    assert.equal(r.sessions.length, 1);
    const s = r.sessions[0];
    assert.equal(s.role, 'load');
    assert.ok(s.outFps > 10 && s.outFps < 40, `out fps ${s.outFps}`);
    assert.ok(s.g2g.count > 20 && s.g2g.p50 > 0 && s.g2g.p50 <= s.g2g.p95 && s.g2g.p95 <= s.g2g.p99, JSON.stringify(s.g2g));
    assert.ok(s.deliveredPct > 50 && s.deliveredPct <= 100, `delivered ${s.deliveredPct}`);
    assert.ok(r.aggregate.serverRssMiB.max > 50, 'server RSS read from /metrics');
    assert.ok(Number.isInteger(r.aggregate.serverUdpDrops) && r.aggregate.serverUdpDrops >= 0, `UDP drops read from /metrics: ${r.aggregate.serverUdpDrops}`);
    assert.match(stdout, /packets the kernel dropped at the server's sockets \(receive buffer full: the server short of CPU\): \d+/);
    assert.ok(r.samples.length >= 4 && r.samples.some((x: { serverCpuPct: number | null }) => (x.serverCpuPct ?? 0) > 0), 'CPU samples over time');
    assert.deepEqual(r.aggregate.errors, []);
    const page = await readFile(html, 'utf8');
    assert.equal((page.match(/<svg /g) ?? []).length, 6);
    assert.ok(!/<script/i.test(page), 'self-contained, no scripts');
    assert.match(stdout, /aggregate over 1 session/);
  } finally {
    await rm(json, { force: true });
    await rm(html, { force: true });
  }
});
