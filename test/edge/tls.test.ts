/**
 * TLS two ways, with a self-signed certificate made here with openssl:
 * - the server itself with --tls-cert/--tls-key: HTTPS and WSS on one port (plain HTTP refused);
 * - the documented reverse proxy, deploy/nginx/xportrait-live.conf (Debian's nginx,
 *   scripts/ensure-nginx.sh), run as written except for the names, ports and certificate paths:
 *   HTTPS, the WHIP endpoint, CORS preflight, a 10 MB body refused by the server through it, and
 *   the control socket over WSS; --trust-proxy makes the per-address limits see the client.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { loadConfig, type Config } from '../../server/config.ts';
import { createLogger } from '../../server/log.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { minimalOffer } from '../faults/offer.ts';
import { REPO_ROOT } from '../support/server.ts';
import { waitUntil } from '../support/wait.ts';

const KEY = 'tls-test-key-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'xpl-tls-'));
const cert = join(dir, 'cert.pem');
const keyFile = join(dir, 'key.pem');
let ca: Buffer;
let tlsServer: RunningServer;
let plainServer: RunningServer;
let nginx: ChildProcess | undefined;
let nginxLog = '';
let nginxPort = 0;

function findNginx(): string | null {
  try {
    return execFileSync('bash', [`${REPO_ROOT}scripts/ensure-nginx.sh`], { encoding: 'utf8' }).trim().split(' ').pop() ?? null;
  } catch {
    return null;
  }
}
const nginxBin = findNginx();
const noNginx = nginxBin ? false : 'nginx is missing and could not be installed (needs root + apt-get): sudo apt-get install -y nginx';

function freeTcpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function inProcess(args: string[]): Promise<RunningServer> {
  const parsed = loadConfig(['--port', '0', '--renderer', 'passthrough', '--api-key', KEY, ...args], {});
  return startServer((parsed as { config: Config }).config, createLogger('warn'));
}

before(async () => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', cert], { stdio: 'ignore' });
  ca = readFileSync(cert);
  tlsServer = await inProcess(['--tls-cert', cert, '--tls-key', keyFile]);
  plainServer = await inProcess(['--trust-proxy', '127.0.0.1', '--cors-origin', 'https://player.example.com']);
  if (noNginx) return;
  nginxPort = await freeTcpPort();
  // The documented site config, with this test's names, ports and certificate.
  const site = readFileSync(join(REPO_ROOT, 'deploy/nginx/xportrait-live.conf'), 'utf8')
    .replace(/listen 443 ssl;/, `listen 127.0.0.1:${nginxPort} ssl;`)
    .replace(/\s*listen \[::\]:443 ssl;/, '')
    .replace(/avatar\.example\.com/g, 'localhost')
    .replace(/\/etc\/letsencrypt\/live\/localhost\/fullchain\.pem/, cert)
    .replace(/\/etc\/letsencrypt\/live\/localhost\/privkey\.pem/, keyFile)
    .replace(/server 127\.0\.0\.1:8080;/, `server 127.0.0.1:${new URL(plainServer.url).port};`);
  assert.match(site, new RegExp(`listen 127.0.0.1:${nginxPort} ssl`), 'the site config still has the lines this test rewrites');
  writeFileSync(join(dir, 'site.conf'), site);
  chmodSync(dir, 0o755);
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log stderr warn;\nevents { worker_connections 256; }\nhttp {\n  access_log off;\n  client_body_temp_path ${dir}/body;\n  proxy_temp_path ${dir}/proxy;\n  include ${dir}/site.conf;\n}\n`,
  );
  nginx = spawn(nginxBin!, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [nginx.stdout!, nginx.stderr!]) s.on('data', (d) => (nginxLog += d.toString()));
  await waitUntil(async () => (await get(`https://localhost:${nginxPort}/healthz`).catch(() => ({ status: 0 }))).status === 200 || nginx!.exitCode !== null, 10_000, 'nginx serving');
  assert.equal(nginx.exitCode, null, `nginx exited:\n${nginxLog}`);
});
after(async () => {
  nginx?.kill('SIGTERM');
  await tlsServer?.close();
  await plainServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An HTTPS request trusting the test's certificate. */
function get(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request(url, { method: opts.method ?? 'GET', headers: opts.headers, ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.end(opts.body);
  });
}

function wss(url: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca, headers: { Authorization: `Bearer ${KEY}` } });
    ws.once('open', () => ws.send(JSON.stringify({ id: 1, op: 'session.list' })));
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.id === 1) {
        ws.close();
        resolve(m.result);
      }
    });
    ws.once('error', reject);
  });
}

const auth = { Authorization: `Bearer ${KEY}` };

test('--tls-cert/--tls-key: HTTPS and WSS on the same port, no plain HTTP', async () => {
  assert.match(tlsServer.url, /^https:\/\//);
  const url = tlsServer.url.replace('127.0.0.1', 'localhost');
  assert.equal((await get(`${url}/healthz`)).status, 200);
  const created = await get(`${url}/v1/sessions`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: minimalOffer() });
  assert.equal(created.status, 201, created.body);
  const list = (await wss(`${url.replace(/^https/, 'wss')}/v1/control`)) as { sessions: unknown[] };
  assert.equal(list.sessions.length, 1);
  await assert.rejects(fetch(`${tlsServer.url.replace(/^https/, 'http')}/healthz`), 'plain HTTP on the TLS port fails');
  assert.equal((await get(`${url}${created.headers.location}`, { method: 'DELETE', headers: auth })).status, 204);
});

test('behind nginx as documented: HTTPS, WHIP, CORS, body limits and the control socket', { skip: noNginx }, async () => {
  const base = `https://localhost:${nginxPort}`;
  const created = await get(`${base}/v1/sessions`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: minimalOffer() });
  assert.equal(created.status, 201, created.body);
  assert.match(String(created.headers.location), /^\/v1\/sessions\//);
  const pre = await get(`${base}/v1/sessions`, { method: 'OPTIONS', headers: { Origin: 'https://player.example.com', 'Access-Control-Request-Method': 'POST' } });
  assert.equal(pre.status, 200);
  assert.equal(pre.headers['accept-post'], 'application/sdp');
  assert.equal(pre.headers['access-control-allow-origin'], 'https://player.example.com');
  const big = await get(`${base}/v1/sessions`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: 'v=0\r\n' + 'a'.repeat(10_000_000) });
  assert.equal(big.status, 413);
  assert.match(big.body, /too_large/, 'the server refused it (its JSON error), not nginx');
  const list = (await wss(`wss://localhost:${nginxPort}/v1/control`)) as { sessions: unknown[] };
  assert.equal(list.sessions.length, 1, 'the control socket upgrades through the proxy');
  assert.equal((await get(`${base}${created.headers.location}`, { method: 'DELETE', headers: auth })).status, 204);
});
