/**
 * The front door measured (docs/LOADTEST.md, "Many nodes behind HAProxy"): N nodes on this host
 * behind HAProxy (test/support/cluster.ts), each limited by --max-sessions so that all of them fit.
 *
 * 1. each node's capacity alone: a load-test ramp against the node's own URL (the others idle);
 * 2. the capacity through the front: the same ramp against HAProxy, which places the sessions;
 * 3. the admission capacity through the front: the ramp with no quality bar, which stops only
 *    when the front refuses a session (every node at --max-sessions), with the spread per node;
 * 4. session creation, direct vs through the front, side by side: alternating `POST /v1/sessions`
 *    (a WHIP offer, no media) to a node and to the front, the front's added latency being the
 *    difference; and the same for `GET /healthz`, HAProxy's bare share.
 *
 *   npm run bench:front -- [--nodes 3] [--max-sessions 2] [--samples 40] [--slo-fps 12] [--slo-p95 400] [--no-write]
 */
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { patternDriving, runLoad, type LoadResult } from '../loadtest/run.ts';
import { minimalOffer } from '../test/faults/offer.ts';
import { startCluster } from '../test/support/cluster.ts';
import { fmt, machine, percentile, printer, writeSection } from './report.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    'max-sessions': { type: 'string', default: '2' },
    samples: { type: 'string', default: '40' },
    'slo-fps': { type: 'string', default: '12' },
    'slo-p95': { type: 'string', default: '400' },
    'no-write': { type: 'boolean', default: false },
  },
});
const N = Number(values.nodes);
const MAX = Number(values['max-sessions']);
const SAMPLES = Number(values.samples);
const PAUSE_MS = 1000;
const slo = { minFps: Number(values['slo-fps']), maxP95Ms: Number(values['slo-p95']) };
const driving = patternDriving(320, 240, 15);
const { print, lines } = printer();

const load = (url: string, maxSessions: number, bar = slo, stepS = 5): Promise<LoadResult> =>
  runLoad({ url, renderer: 'passthrough', sessions: 1, durationS: 1, ramp: { stepS, maxSessions }, slo: bar, driving, probe: false, warmupS: stepS > 2 ? 3 : 1, freezeMs: 500, loopbackIce: true });

const cluster = await startCluster({
  nodes: Array.from({ length: N }, (_, i) => ({ id: `n${i + 1}`, args: ['--max-sessions', String(MAX)] })),
  nodeArgs: ['--renderer', 'passthrough', '--output', '320x240', '--max-fps', '15', '--ice-address', '127.0.0.1', '--log-level', 'warn', '--warm-workers', '2'],
});
try {
  const started = new Date();
  print(`${N} nodes × --max-sessions ${MAX} behind HAProxy ${execFileSync('haproxy', ['-v'], { encoding: 'utf8' }).split('\n')[0].replace(/^HAProxy version (\S+).*/, '$1')}, passthrough 320×240@15, SLO ≥ ${slo.minFps} fps and g2g p95 ≤ ${slo.maxP95Ms} ms`);
  print('');
  print(`${machine()}; ${started.toISOString()}; load average at start ${os.loadavg().map((v) => v.toFixed(1)).join(' ')} (shared machine).`);
  print('');

  // 1 and 2: capacities.
  const alone: Array<{ node: string; capacity: number; why: string }> = [];
  for (const [id, n] of cluster.nodes) {
    const r = await load(n.handle.url, MAX + 1);
    alone.push({ node: id, capacity: r.ramp!.capacity, why: r.ramp!.limitedBy });
  }
  const sum = alone.reduce((a, n) => a + n.capacity, 0);
  const front = await load(cluster.front, N * MAX + 1);
  const last = front.ramp!.levels.filter((l) => l.ok).pop();
  print('| where | capacity (sessions meeting the SLO) | what stopped the ramp |');
  print('| --- | --- | --- |');
  for (const n of alone) print(`| node ${n.node} alone | ${n.capacity} | ${n.why.replace(/\|/g, '/')} |`);
  print(`| **sum of the nodes** | **${sum}** | |`);
  print(`| **through the front** | **${front.ramp!.capacity}**${last?.perNode ? ` (${Object.entries(last.perNode).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} | ${front.ramp!.limitedBy.replace(/\|/g, '/')} |`);
  print('');
  print('Front ramp, level by level:');
  print('');
  for (const l of front.ramp!.levels) {
    print(`- ${l.sessions} session(s) [${Object.entries(l.perNode ?? {}).map(([k, v]) => `${k}: ${v}`).join(', ')}]: fps min ${fmt(l.fpsMin)}, g2g p95 ${fmt(l.p95Max, 0)} ms, CPU of all nodes ${fmt(l.serverCpuPct, 0)} % ${l.ok ? 'ok' : `— ${l.why}`}`);
  }
  print('');

  // 3: admission only.
  const admitted = await load(cluster.front, N * MAX + 1, { minFps: 0, maxP95Ms: Number.POSITIVE_INFINITY }, 2);
  const spread = admitted.ramp!.levels.at(-1)?.perNode ?? {};
  print(`Admission through the front (no quality bar): ${admitted.ramp!.capacity} sessions placed (${Object.entries(spread).map(([k, v]) => `${k}: ${v}`).join(', ')}) for ${N} × --max-sessions ${MAX} = ${N * MAX}; then ${admitted.ramp!.limitedBy.replace(/\(session \d+ \(load\): /, '(')}.`);
  print('');

  // 4: creation latency, alternating direct / front so that both see the same machine.
  const nodeUrls = [...cluster.nodes.values()].map((n) => n.handle.url);
  const direct: number[] = [];
  const viaFront: number[] = [];
  const create = async (base: string): Promise<number> => {
    const t = performance.now();
    const res = await fetch(`${base}/v1/sessions?renderer=passthrough`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: minimalOffer() });
    await res.text();
    const ms = performance.now() - t;
    if (res.status !== 201) throw new Error(`${base}: ${res.status}`);
    const del = await fetch(new URL(res.headers.get('location')!, base), { method: 'DELETE' });
    await del.arrayBuffer();
    return ms;
  };
  // A creation takes one of the node's warm loop workers, which is then booted again: pausing
  // between creations lets every one find a warm worker, whichever node and path it takes.
  const pause = () => new Promise((r) => setTimeout(r, PAUSE_MS));
  for (let i = 0; i < 4; i++) await create(i % 2 ? cluster.front : nodeUrls[i % nodeUrls.length]).then(pause); // warm both paths
  for (let i = 0; i < SAMPLES; i++) {
    const first = i % 2 === 0;
    if (first) direct.push(await create(nodeUrls[i % nodeUrls.length]));
    await pause();
    viaFront.push(await create(cluster.front));
    await pause();
    if (!first) direct.push(await create(nodeUrls[i % nodeUrls.length]));
    if (!first) await pause();
  }
  // HAProxy's own share, on the cheapest request there is.
  const healthDirect: number[] = [];
  const healthFront: number[] = [];
  const health = async (base: string) => {
    const t = performance.now();
    await (await fetch(`${base}/healthz`)).arrayBuffer();
    return performance.now() - t;
  };
  for (let i = 0; i < 200; i++) {
    if (i % 2) healthFront.push(await health(cluster.front));
    healthDirect.push(await health(nodeUrls[i % nodeUrls.length]));
    if (!(i % 2)) healthFront.push(await health(cluster.front));
  }
  const row = (name: string, v: number[]) => `| ${name} | ${fmt(percentile(v, 50))} | ${fmt(percentile(v, 95))} | ${fmt(v.reduce((a, b) => a + b, 0) / v.length)} |`;
  print(`Session creation (\`POST /v1/sessions\`, WHIP offer, answer back; ${SAMPLES} each, alternating):`);
  print('');
  print('| path | p50 ms | p95 ms | mean ms |');
  print('| --- | --- | --- | --- |');
  print(row('straight to a node', direct));
  print(row('through HAProxy', viaFront));
  print(row('`GET /healthz` straight to a node (200)', healthDirect));
  print(row('`GET /healthz` through HAProxy (200)', healthFront));
  print('');
  const added = percentile(viaFront, 50) - percentile(direct, 50);
  print(`The front adds ${fmt(added)} ms to a session creation at the median (${fmt((percentile(viaFront, 50) / percentile(direct, 50) - 1) * 100, 0)} %), and ${fmt(percentile(healthFront, 50) - percentile(healthDirect, 50), 2)} ms to a bare request.`);
  if (!values['no-write']) await writeSection('front', 'Many nodes behind HAProxy (`npm run bench:front`)', lines.join('\n'), fileURLToPath(new URL('../docs/LOADTEST.md', import.meta.url)));
} finally {
  await cluster.stop();
}
