/**
 * Prints (or writes) the front door's HAProxy configuration for a list of nodes; with
 * --write-examples, rewrites the shipped copies (deploy/haproxy/haproxy.cfg and the ConfigMap in
 * deploy/k8s/haproxy.yaml) after a change to the generator.
 *
 *   npm run haproxy:config -- --bind 0.0.0.0:8080 --stats 127.0.0.1:8404 \
 *     --node n1=10.0.0.11:8080/9080 --node n2=10.0.0.12:8080/9080 --out /etc/haproxy/haproxy.cfg
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { haproxyConfig, K8S_EXAMPLE, ONE_HOST_EXAMPLE, type FrontNode } from './config.ts';

const HELP = `Usage: npm run haproxy:config -- --node ID=HOST:PORT[/AGENT_PORT] … [options]

  --node ID=HOST:PORT[/AGENT_PORT]  a node: its --node-id, address, HTTP port and --agent-port
                                    (default: the HTTP port + 1000); repeat for each node
  --bind ADDR:PORT                  where the front listens (default 0.0.0.0:8080)
  --stats ADDR:PORT                 HAProxy's stats page and Prometheus metrics (default: none)
  --resolver resolv.conf|ADDR:PORT  resolve node names at run time (Kubernetes); default: once at start
  --out FILE                        write there instead of printing
  --write-examples                  rewrite the shipped copies in deploy/ from the generator
`;

let values: Record<string, string | string[] | boolean | undefined>;
try {
  ({ values } = parseArgs({
    options: {
      node: { type: 'string', multiple: true, default: [] },
      bind: { type: 'string', default: '0.0.0.0:8080' },
      stats: { type: 'string' },
      resolver: { type: 'string' },
      out: { type: 'string' },
      'write-examples': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  console.error(`${(err as Error).message}\n\n${HELP}`);
  process.exit(2);
}
if (values.help) {
  console.log(HELP);
  process.exit(0);
}

if (values['write-examples']) {
  await writeFile(new URL('./haproxy.cfg', import.meta.url), haproxyConfig(ONE_HOST_EXAMPLE));
  const manifest = new URL('../k8s/haproxy.yaml', import.meta.url);
  const docs = parseAllDocuments(await readFile(manifest, 'utf8'));
  docs[0].setIn(['data', 'haproxy.cfg'], haproxyConfig(K8S_EXAMPLE));
  await writeFile(manifest, docs.map((d) => d.toString({ lineWidth: 0 })).join(''));
  console.log('rewrote deploy/haproxy/haproxy.cfg and the ConfigMap of deploy/k8s/haproxy.yaml');
  process.exit(0);
}

const nodes: FrontNode[] = [];
for (const spec of values.node as string[]) {
  const m = /^([^=]+)=(.+):(\d+)(?:\/(\d+))?$/.exec(spec);
  if (!m) {
    console.error(`--node ${spec}: expected ID=HOST:PORT[/AGENT_PORT]\n\n${HELP}`);
    process.exit(2);
  }
  nodes.push({ id: m[1], host: m[2], port: Number(m[3]), agentPort: m[4] ? Number(m[4]) : Number(m[3]) + 1000 });
}

let text: string;
try {
  text = haproxyConfig({ bind: String(values.bind), stats: values.stats as string | undefined, resolver: values.resolver as string | undefined, nodes });
} catch (err) {
  console.error(`${(err as Error).message}\n\n${HELP}`);
  process.exit(2);
}
if (values.out) await writeFile(String(values.out), text);
else process.stdout.write(text);
