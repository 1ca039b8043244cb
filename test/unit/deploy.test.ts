/**
 * What deploy/ ships: the HAProxy configs are the generator's output and HAProxy accepts them;
 * the Kubernetes manifests parse and validate against the Kubernetes API schemas (the
 * kubernetes-models package) and keep the promises docs/SCALING.md makes (GPU per node,
 * readiness from /healthz, preStop drain, a grace period longer than the drain); the Prometheus
 * configs parse and scrape every node of the example.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigMap, Namespace, Service } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { parse, parseAllDocuments } from 'yaml';
import { haproxyConfig, K8S_EXAMPLE, ONE_HOST_EXAMPLE } from '../../deploy/haproxy/config.ts';
import { clusterToolsPresent } from '../support/cluster.ts';

const DEPLOY = new URL('../../deploy/', import.meta.url);
const text = (path: string) => readFile(new URL(path, DEPLOY), 'utf8');
const haproxy = clusterToolsPresent();

/** `haproxy -c` on a config text; returns HAProxy's output, throws with it when the config is invalid. */
async function haproxyCheck(cfg: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'xpl-haproxy-'));
  try {
    await writeFile(join(dir, 'haproxy.cfg'), cfg);
    return execFileSync('haproxy', ['-c', '-f', join(dir, 'haproxy.cfg')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const KINDS: Record<string, new (o: never) => { validate(): void }> = { ConfigMap, Namespace, Service, Deployment, StatefulSet, NetworkPolicy };

async function manifests(file: string): Promise<any[]> {
  const docs = parseAllDocuments(await text(`k8s/${file}`));
  for (const d of docs) assert.deepEqual(d.errors, [], `${file}: YAML errors`);
  return docs.map((d) => d.toJS());
}

test('the shipped HAProxy config is the generator\'s one-host example, and HAProxy accepts it', { skip: !haproxy && 'haproxy missing' }, async () => {
  const shipped = await text('haproxy/haproxy.cfg');
  assert.equal(shipped, haproxyConfig(ONE_HOST_EXAMPLE), 'deploy/haproxy/haproxy.cfg differs from haproxyConfig(ONE_HOST_EXAMPLE): npm run haproxy:config -- --write-examples');
  assert.match(await haproxyCheck(shipped), /Configuration file is valid/);
  assert.throws(() => haproxyConfig({ ...ONE_HOST_EXAMPLE, nodes: [{ id: 'Bad_Id', host: 'h', port: 1, agentPort: 2 }] }), /not a valid --node-id/);
});

test('every Kubernetes manifest validates against the API schemas', async () => {
  let checked = 0;
  for (const file of ['namespace.yaml', 'redis.yaml', 'nodes-hostnetwork.yaml', 'nodes-podnetwork.yaml', 'haproxy.yaml']) {
    for (const m of await manifests(file)) {
      const Kind = KINDS[m.kind];
      assert.ok(Kind, `${file}: unexpected kind ${m.kind}`);
      assert.doesNotThrow(() => new Kind(m as never).validate(), `${file}: ${m.kind} ${m.metadata?.name}`);
      checked++;
    }
  }
  assert.equal(checked, 11);
  assert.throws(() => new StatefulSet({ metadata: { name: 'x' }, spec: { selector: {}, serviceName: 's', template: { spec: { containers: [{ name: 'a', ports: [{ containerPort: 'http' as never }] }] } } } }).validate(), /must be integer/, 'the schema check does catch mistakes');
});

test('the node StatefulSets: a GPU each, hostNetwork or a UDP range, readiness from /healthz, preStop drain, grace beyond the drain', async () => {
  for (const file of ['nodes-hostnetwork.yaml', 'nodes-podnetwork.yaml']) {
    const [svc, sts, policy] = await manifests(file);
    assert.equal(svc.spec.clusterIP, 'None');
    assert.equal(svc.spec.publishNotReadyAddresses, true, 'draining pods stay resolvable for their sessions');
    const pod = sts.spec.template.spec;
    const c = pod.containers[0];
    const env = Object.fromEntries(c.env.map((e: { name: string; value?: string; valueFrom?: unknown }) => [e.name, e.value ?? e.valueFrom]));
    assert.equal(c.resources.limits['nvidia.com/gpu'], 1, `${file}: one GPU per node`);
    assert.deepEqual(env.XPL_NODE_ID, { fieldRef: { fieldPath: 'metadata.name' } }, 'the pod name is the node id');
    assert.equal(env.XPL_AGENT_PORT, '9080');
    assert.match(env.XPL_REDIS, /^redis:\/\//);
    assert.equal(c.readinessProbe.httpGet.path, '/healthz');
    assert.match(c.lifecycle.preStop.exec.command.join(' '), /\/v1\/nodes\/.*\/drain/);
    assert.ok(pod.terminationGracePeriodSeconds > Number(env.XPL_DRAIN_TIMEOUT), 'Kubernetes waits longer than the drain');
    if (file === 'nodes-hostnetwork.yaml') {
      assert.equal(pod.hostNetwork, true);
      assert.deepEqual(env.XPL_ICE_ADDRESSES, { fieldRef: { fieldPath: 'status.hostIP' } });
      assert.equal(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey, 'kubernetes.io/hostname', 'one pod per host: the ports are the host\'s');
    } else {
      assert.equal(pod.hostNetwork, undefined);
      assert.deepEqual(env.XPL_ICE_ADDRESSES, { fieldRef: { fieldPath: 'status.podIP' } });
      const [from, to] = env.XPL_RTC_PORTS.split('-').map(Number);
      const udp = policy.spec.ingress[0].ports[0];
      assert.deepEqual([udp.protocol, udp.port, udp.endPort], ['UDP', from, to], 'the NetworkPolicy opens exactly the pod\'s UDP range');
    }
  }
});

test('the Kubernetes front: its ConfigMap is the generator\'s output for the StatefulSet pods, and HAProxy accepts it', { skip: !haproxy && 'haproxy missing' }, async () => {
  const [cm] = await manifests('haproxy.yaml');
  const cfg = cm.data['haproxy.cfg'];
  assert.equal(cfg, haproxyConfig(K8S_EXAMPLE), 'deploy/k8s/haproxy.yaml\'s haproxy.cfg differs from haproxyConfig(K8S_EXAMPLE): npm run haproxy:config -- --write-examples');
  const [, sts] = await manifests('nodes-hostnetwork.yaml');
  for (let i = 0; i < sts.spec.replicas; i++) assert.match(cfg, new RegExp(`server xpl-node-${i} xpl-node-${i}\\.xpl-nodes\\.xpl\\.svc\\.cluster\\.local:8080 agent-check agent-inter 1s agent-port 9080`));
  assert.match(await haproxyCheck(cfg), /Configuration file is valid/);
});

test('the Prometheus configs parse and scrape every node of the example and the front', async () => {
  const one = parse(await text('prometheus/prometheus.yml'));
  const targets = (job: string) => one.scrape_configs.find((j: { job_name: string }) => j.job_name === job).static_configs[0].targets;
  assert.deepEqual(targets('xpl-nodes'), ONE_HOST_EXAMPLE.nodes.map((n) => `${n.host}:${n.port}`));
  assert.deepEqual(targets('xpl-haproxy'), [ONE_HOST_EXAMPLE.stats]);
  const k8s = parse(await text('prometheus/prometheus-k8s.yml'));
  assert.equal(k8s.scrape_configs[0].kubernetes_sd_configs[0].role, 'pod');
  assert.deepEqual(k8s.scrape_configs[0].kubernetes_sd_configs[0].namespaces.names, ['xpl']);
});
