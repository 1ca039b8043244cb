/**
 * NAT traversal through a real TURN server: Debian's coturn (scripts/ensure-coturn.sh), started
 * here on loopback on a free port with a long-term credential. The server is given it with
 * `--ice-server turn:USER:PASS@…` and hands it to clients (GET /v1/ice-servers); a libwebrtc client
 * restricted to relay candidates (`iceTransportPolicy: 'relay'`) offers only coturn's relayed
 * address and gets its own frames back through it. Also: --rtc-ports and --announced-ip shape the
 * answer's candidates.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { after, before, test } from 'node:test';
import { loadConfig, type Config } from '../../server/config.ts';
import { createLogger } from '../../server/log.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { minimalOffer } from '../faults/offer.ts';
import { REPO_ROOT } from '../support/server.ts';
import { closeAllPeers, startPeer } from '../support/wrtc-peer.ts';
import { waitUntil } from '../support/wait.ts';

function findTurnserver(): string | null {
  try {
    return execFileSync('bash', [`${REPO_ROOT}scripts/ensure-coturn.sh`], { encoding: 'utf8' }).trim().split(' ').pop() ?? null;
  } catch {
    return null;
  }
}

const turnserver = findTurnserver();
const skip = turnserver ? false : 'coturn is missing and could not be installed (needs root + apt-get): sudo apt-get install -y coturn';
let turn: ChildProcess | undefined;
let turnLog = '';
let srv: RunningServer;
const USER = 'alice';
const PASS = 'wonderland-0123';

/** A UDP port free on loopback right now (coturn binds it next). */
function freeUdpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

before(async () => {
  if (skip) return;
  const port = await freeUdpPort();
  turn = spawn(turnserver!, [
    '-n', '--no-cli', '--no-tls', '--no-dtls', '--listening-ip=127.0.0.1', `--listening-port=${port}`, '--relay-ip=127.0.0.1',
    '--min-port=49160', '--max-port=49260', '--lt-cred-mech', `--user=${USER}:${PASS}`, '--realm=xportrait.test', '--allow-loopback-peers',
    '--fingerprint', '--log-file=stdout', '--simple-log', '--verbose',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [turn.stdout!, turn.stderr!]) s.on('data', (d) => (turnLog += d.toString()));
  await waitUntil(() => /UDP listener opened on\s*:?\s*127\.0\.0\.1:\d+/.test(turnLog) || turn!.exitCode !== null, 10_000, 'coturn listening');
  assert.equal(turn.exitCode, null, `turnserver exited:\n${turnLog.slice(-2000)}`);
  srv = await inProcess(['--output', '256x256', '--ice-server', `turn:${USER}:${PASS}@127.0.0.1:${port}?transport=udp`, '--ice-address', '127.0.0.1', '--rtc-ports', '47100-47199']);
});
after(async () => {
  await closeAllPeers();
  await srv?.close();
  turn?.kill('SIGTERM');
});

async function inProcess(args: string[]): Promise<RunningServer> {
  const parsed = loadConfig(['--port', '0', '--renderer', 'passthrough', ...args], {});
  return startServer((parsed as { config: Config }).config, createLogger('warn'));
}

test('a relay-only client gets its frames back through coturn, with the ICE servers the server hands out', { skip, timeout: 60_000 }, async (t) => {
  const ice = await (await fetch(`${srv.url}/v1/ice-servers`)).json();
  assert.equal(ice.iceServers.length, 1);
  assert.equal(ice.iceServers[0].username, USER);
  let offered = '';
  const peer = await startPeer({
    baseUrl: srv.url,
    query: { renderer: 'passthrough' },
    width: 320,
    height: 240,
    rtcConfig: { iceServers: ice.iceServers, iceTransportPolicy: 'relay' },
    mungeOffer: (sdp) => (offered = sdp),
  });
  const candidates = offered.split('\r\n').filter((l) => l.startsWith('a=candidate:'));
  assert.ok(candidates.length > 0 && candidates.every((c) => / typ relay /.test(c)), `the client offers only relayed candidates:\n${candidates.join('\n')}`);
  const s = await peer.waitFor((st) => st.decoded >= 20, 30_000);
  assert.deepEqual(s.sizes, ['256x256']);
  // The pair libwebrtc uses goes through the relay.
  const stats = await peer.pc.getStats();
  const reports: any[] = [];
  stats.forEach((r: any) => reports.push(r));
  const pair = reports.find((r) => r.type === 'candidate-pair' && r.state === 'succeeded' && (r.nominated || r.selected));
  assert.ok(pair, 'a succeeded candidate pair');
  const local = reports.find((r) => r.id === pair.localCandidateId);
  t.diagnostic(`selected pair: local ${local.candidateType} ${local.address ?? local.ip}:${local.port} (${local.relayProtocol ?? ''})`);
  assert.equal(local.candidateType, 'relay');
  assert.match(turnLog, /ALLOCATE/, 'coturn served an allocation');
  assert.equal(await peer.close(), 204);
});

test('--rtc-ports bounds the media ports; --announced-ip replaces the local host addresses', { skip, timeout: 30_000 }, async () => {
  const offer = minimalOffer();
  const r = await fetch(`${srv.url}/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer });
  const answer = await r.text();
  assert.equal(r.status, 201);
  const ports = [...answer.matchAll(/^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host/gm)].map((m) => Number(m[1]));
  assert.ok(ports.length >= 1 && ports.every((p) => p >= 47100 && p <= 47199), `host candidate ports ${ports}`);
  await (await fetch(new URL(r.headers.get('location')!, srv.url), { method: 'DELETE' })).arrayBuffer();

  const announced = await inProcess(['--announced-ip', '198.51.100.7']);
  try {
    const a = await fetch(`${announced.url}/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer.replace(/a=ice-ufrag:\S+/, 'a=ice-ufrag:abcd1234') });
    const sdp = await a.text();
    assert.equal(a.status, 201, sdp);
    const hosts = [...sdp.matchAll(/^a=candidate:\S+ \d+ udp \d+ (\S+) \d+ typ host/gm)].map((m) => m[1]);
    assert.deepEqual([...new Set(hosts)], ['198.51.100.7'], 'only the announced address, no private one');
  } finally {
    await announced.close();
  }
});
