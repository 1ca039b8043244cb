/**
 * Prints (or writes) the front door's HAProxy configuration for a list of nodes.
 *
 *   npm run haproxy:config -- --bind 0.0.0.0:8080 --stats 127.0.0.1:8404 \
 *     --node n1=10.0.0.11:8080/9080 --node n2=10.0.0.12:8080/9080 --out /etc/haproxy/haproxy.cfg
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { haproxyConfig, type FrontNode } from './config.ts';

const HELP = `Usage: npm run haproxy:config -- --node ID=HOST:PORT[/AGENT_PORT] … [options]

  --node ID=HOST:PORT[/AGENT_PORT]  a node: its --node-id, address, HTTP port and --agent-port
                                    (default: the HTTP port + 1000); repeat for each node
  --bind ADDR:PORT                  where the front listens (default 0.0.0.0:8080)
  --stats ADDR:PORT                 HAProxy's stats page and Prometheus metrics (default: none)
  --resolver resolv.conf|ADDR:PORT  resolve node names at run time (Kubernetes); default: once at start
  --out FILE                        write there instead of printing
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
