/**
 * A multi-node deployment on loopback for the scale-out tests and the front-door benchmark: the
 * shipped Redis config (deploy/redis/redis.conf) on a free port, N real server processes with
 * their agent checks, and HAProxy running the generator's config (deploy/haproxy/config.ts) for
 * those ports. HAProxy and Redis come from Debian (scripts/ensure-cluster.sh installs them).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { haproxyConfig } from '../../deploy/haproxy/config.ts';
import { freePort, REPO_ROOT, startServer, type ServerHandle } from './server.ts';
import { waitUntil } from './wait.ts';

export interface NodeSpec {
  id: string;
  /** Extra flags for this node, e.g. ['--max-sessions', '2']. */
  args?: string[];
}

export interface ClusterNode {
  id: string;
  agentPort: number;
  handle: ServerHandle;
}

/** A child process we started, with its output kept for diagnostics. */
export interface Proc {
  child: ChildProcess;
  logs: string[];
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface LocalCluster {
  /** The front's URL (HAProxy). */
  front: string;
  /** HAProxy's stats page (CSV at `${stats}/;csv`). */
  stats: string;
  redisUrl: string;
  nodes: Map<string, ClusterNode>;
  redis: Proc;
  haproxy: Proc;
  dir: string;
  /** Starts Redis again on the same port after `redis.stop()`. */
  restartRedis(): Promise<void>;
  /** Per server of a backend (default `sessions`, the one with the agent checks): HAProxy's status (UP, DOWN, DRAIN, MAINT, …) and weight. */
  servers(backend?: 'sessions' | 'nodes'): Promise<Map<string, { status: string; weight: number }>>;
  stop(): Promise<void>;
}

/** Whether HAProxy and Redis are here, installing them (as root, via apt) when they are not. */
export function clusterToolsPresent(): boolean {
  try {
    execFileSync('bash', [join(REPO_ROOT, 'scripts/ensure-cluster.sh')], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const CLUSTER_TOOLS_MISSING = 'HAProxy or Redis is missing and could not be installed (needs root + apt-get): run `sudo apt-get install -y haproxy redis-server`';

function run(cmd: string, args: string[]): Proc {
  const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  for (const s of [child.stdout, child.stderr]) {
    s!.setEncoding('utf8');
    s!.on('data', (chunk: string) => {
      logs.push(...chunk.split('\n').filter(Boolean));
      if (logs.length > 500) logs.splice(0, logs.length - 500);
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    logs,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Redis with the shipped config on `port`, keeping its files in `dir`; resolves once it answers PING. */
export async function startRedis(port: number, dir: string): Promise<Proc> {
  const p = run('redis-server', [join(REPO_ROOT, 'deploy/redis/redis.conf'), '--port', String(port), '--dir', dir, '--appendonly', 'no', '--maxmemory', '256mb']);
  await waitUntil(async () => {
    try {
      return execFileSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() === 'PONG';
    } catch {
      return false;
    }
  }, 10_000, `redis on port ${port}`);
  return p;
}

export async function startCluster(opts: { nodes: NodeSpec[]; nodeArgs?: string[] }): Promise<LocalCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'xpl-cluster-'));
  const redisPort = await freePort();
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  let redis = await startRedis(redisPort, dir);
  const nodes = new Map<string, ClusterNode>();
  const haproxy: { proc?: Proc } = {};
  const stopAll = async () => {
    await Promise.all([...nodes.values()].map((n) => n.handle.stop()));
    await haproxy.proc?.stop();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const started = await Promise.all(
      opts.nodes.map(async (spec) => {
        const agentPort = await freePort();
        const handle = await startServer({
          args: ['--node-id', spec.id, '--redis', redisUrl, '--agent-port', String(agentPort), ...(opts.nodeArgs ?? []), ...(spec.args ?? [])],
          timeoutMs: 90_000,
        });
        return { id: spec.id, agentPort, handle };
      }),
    );
    for (const n of started) nodes.set(n.id, n);
    const frontPort = await freePort();
    const statsPort = await freePort();
    const cfg = join(dir, 'haproxy.cfg');
    const config = haproxyConfig({
      bind: `127.0.0.1:${frontPort}`,
      stats: `127.0.0.1:${statsPort}`,
      nodes: started.map((n) => ({ id: n.id, host: '127.0.0.1', port: n.handle.port, agentPort: n.agentPort })),
    });
    // Every request in HAProxy's log (kept in haproxy.logs), with its timings and termination state.
    await writeFile(cfg, config.replace('\ndefaults\n', '\ndefaults\n  log stdout format raw local0 info\n  option httplog\n'));
    haproxy.proc = run('haproxy', ['-db', '-f', cfg]);
    const stats = `http://127.0.0.1:${statsPort}`;
    const cluster: LocalCluster = {
      front: `http://127.0.0.1:${frontPort}`,
      stats,
      redisUrl,
      nodes,
      get redis() {
        return redis;
      },
      haproxy: haproxy.proc,
      dir,
      async restartRedis() {
        redis = await startRedis(redisPort, dir);
      },
      servers: (backend = 'sessions') => haproxyServers(stats, backend),
      stop: stopAll,
    };
    // Ready when HAProxy sees every node up with its agent's weight.
    let seen = 'nothing';
    await waitUntil(async () => {
      const s = await cluster.servers().catch((e: Error) => e);
      seen = s instanceof Error ? s.message : JSON.stringify([...s]);
      return !(s instanceof Error) && [...nodes.keys()].every((id) => s.get(id)?.status === 'UP' && (s.get(id)?.weight ?? 0) > 0);
    }, 20_000, 'HAProxy to see every node up').catch((err: Error) => {
      throw new Error(`${err.message}; HAProxy saw ${seen}; its log:\n${haproxy.proc?.logs.slice(-20).join('\n')}`);
    });
    return cluster;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** A backend's servers from HAProxy's CSV stats. */
export async function haproxyServers(stats: string, backend: string): Promise<Map<string, { status: string; weight: number }>> {
  const text = await (await fetch(`${stats}/;csv`)).text();
  const [header, ...rows] = text.trim().split('\n');
  const cols = header.replace(/^# /, '').split(',');
  const at = (name: string) => cols.indexOf(name);
  const out = new Map<string, { status: string; weight: number }>();
  for (const row of rows) {
    const f = row.split(',');
    if (f[at('pxname')] !== backend || ['FRONTEND', 'BACKEND'].includes(f[at('svname')])) continue;
    out.set(f[at('svname')], { status: f[at('status')], weight: Number(f[at('weight')]) });
  }
  return out;
}
