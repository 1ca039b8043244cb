/** The edge options and the pure helpers behind them: ICE server URLs, port ranges, Host allow-list, client address behind a proxy, candidate filtering. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../server/config.ts';
import { parseIceServer } from '../../server/edge-config.ts';
import { XplError } from '../../server/errors.ts';
import { clientAddress, hostAllowed, iceServerLinks } from '../../server/http/edge.ts';
import { keepCandidates } from '../../server/rtc/sdp.ts';

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const r = loadConfig(argv, env);
  assert.equal(r.help, false);
  return (r as Extract<typeof r, { help: false }>).config;
};

test('ICE server URLs: STUN bare, TURN with (percent-encoded) credentials and transport', () => {
  assert.deepEqual(parseIceServer('stun:stun.example.net'), { urls: 'stun:stun.example.net' });
  assert.deepEqual(parseIceServer('turn:bob:p%40ss%3Aword@10.0.0.5:3478?transport=tcp'), { urls: 'turn:10.0.0.5:3478?transport=tcp', username: 'bob', credential: 'p@ss:word' });
  assert.deepEqual(parseIceServer('turns:u:p@[2001:db8::1]:5349'), { urls: 'turns:[2001:db8::1]:5349', username: 'u', credential: 'p' });
  assert.throws(() => parseIceServer('turn:turn.example.net:3478'), /needs credentials/);
  assert.throws(() => parseIceServer('stun:u:p@stun.example.net'), /no credentials/);
  assert.throws(() => parseIceServer('http://stun.example.net'), /not an ICE server URL/);
  assert.throws(() => parseIceServer('stun:host:70000'), /port/);
  assert.deepEqual(iceServerLinks([parseIceServer('turn:a"b:c@h:1')]), ['<turn:h:1>; rel="ice-server"; username="a\\"b"; credential="c"; credential-type="password"']);
});

test('edge flags: repeatable lists from flags or env, validated; TLS needs both files', () => {
  const c = load(['--ice-server', 'stun:s.example:3478', '--rtc-ports', '40000-40099', '--announced-ip', '203.0.113.9', '--cors-origin', 'https://a.example', '--allowed-host', 'avatar.example', '--trust-proxy', '127.0.0.1']);
  assert.deepEqual(c.iceServers, [{ urls: 'stun:s.example:3478' }]);
  assert.deepEqual(c.rtcPorts, [40000, 40099]);
  assert.equal(c.announcedIp, '203.0.113.9');
  assert.deepEqual(load([], { XPL_CORS_ORIGINS: 'https://a.example, https://b.example' }).corsOrigins, ['https://a.example', 'https://b.example']);
  const bad = (argv: string[], pattern: RegExp) => assert.throws(() => loadConfig(argv, {}), (e: XplError) => e.code === 'bad_config' && pattern.test(e.message));
  bad(['--rtc-ports', '50000-40000'], /--rtc-ports/);
  bad(['--rtc-ports', '80-90'], /1024/);
  bad(['--announced-ip', 'example.com'], /--announced-ip/);
  bad(['--cors-origin', 'https://a.example/path'], /--cors-origin/);
  bad(['--ice-server', 'turn:x.example'], /--ice-server.*credentials/s);
  bad(['--tls-cert', '/nonexistent.pem'], /both --tls-cert and --tls-key/);
  bad(['--tls-cert', '/nonexistent.pem', '--tls-key', '/nonexistent.key'], /--tls-cert \/nonexistent\.pem/);
  bad(['--log-format', 'xml'], /--log-format/);
});

test('Host allow-list: IP literals and localhost always, names only when listed; off with a key unless names are listed', () => {
  const keyless = { apiKey: undefined, allowedHosts: ['avatar.example'] };
  for (const h of ['127.0.0.1:8080', 'localhost', 'app.localhost:1', '[::1]:8080', '192.168.1.20', 'AVATAR.example:443', undefined]) assert.equal(hostAllowed(h, keyless), true, String(h));
  for (const h of ['evil.example', 'avatar.example.evil.example:80', '127.0.0.1.nip.io']) assert.equal(hostAllowed(h, keyless), false, h);
  assert.equal(hostAllowed('evil.example', { apiKey: 'k'.repeat(16), allowedHosts: [] }), true);
  assert.equal(hostAllowed('evil.example', { apiKey: 'k'.repeat(16), allowedHosts: ['avatar.example'] }), false);
});

test('client address: the peer, or behind a trusted proxy the last untrusted X-Forwarded-For hop', () => {
  assert.equal(clientAddress('::ffff:10.0.0.9', '1.2.3.4', []), '10.0.0.9', 'no trusted proxy: the header is ignored');
  assert.equal(clientAddress('127.0.0.1', '203.0.113.5', ['127.0.0.1']), '203.0.113.5');
  assert.equal(clientAddress('127.0.0.1', '6.6.6.6, 203.0.113.5', ['127.0.0.1']), '203.0.113.5', 'a forged leftmost hop is not believed');
  assert.equal(clientAddress('127.0.0.1', '203.0.113.5, 10.0.0.2', ['127.0.0.1', '10.0.0.2']), '203.0.113.5');
  assert.equal(clientAddress('127.0.0.1', undefined, ['127.0.0.1']), '127.0.0.1');
});

test('keepCandidates drops only the candidate lines it is told to', () => {
  const sdp = ['v=0', 'a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host', 'a=candidate:2 1 udp 2130706431 203.0.113.9 40001 typ host', 'a=candidate:3 1 udp 1677729535 198.51.100.1 40002 typ srflx raddr 10.0.0.5 rport 40000', 'a=end-of-candidates', ''].join('\r\n');
  const out = keepCandidates(sdp, (addr, type) => type !== 'host' || addr === '203.0.113.9');
  assert.deepEqual(out.split('\r\n'), ['v=0', 'a=candidate:2 1 udp 2130706431 203.0.113.9 40001 typ host', 'a=candidate:3 1 udp 1677729535 198.51.100.1 40002 typ srflx raddr 10.0.0.5 rport 40000', 'a=end-of-candidates', '']);
});
