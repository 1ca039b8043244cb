/**
 * Per-node figures for a load test through a load balancer (docs/SCALING.md): the nodes come from
 * `GET /v1/nodes`, each node's own metrics from `GET /v1/nodes/NODE/metrics` through the same
 * front (which routes that path to NODE), and a session's node from its id (`NODE.uuid`). The
 * server-wide figures of the run (CPU, RSS, event-loop lag) become the sum (lag: the worst) over
 * the nodes, instead of whichever node the front picked for `/metrics`.
 */
import { nodeOfSession } from '../server/cluster/ids.ts';
import { cpuPercent, parseMetrics, type MetricsSample } from './scrape.ts';

export interface NodeSummary {
  node: string;
  /** Load sessions the node held (over the whole run). */
  sessions: number;
  outFpsMean: number;
  outFpsMin: number;
  /** Worst session's glass-to-glass p95 and server-added p95 on this node. */
  g2gP95Max: number;
  serverP95Max: number;
  freezes: number;
  cpuPctMean: number;
  cpuPctMax: number;
  rssMiBMax: number;
}

/** What nodes.ts needs of a session summary (run.ts's SessionSummary). */
interface SessionFigures {
  role: 'load' | 'probe';
  sessionId: string;
  outFps: number;
  g2g: { p95: number };
  server: { p95: number } | null;
  freezes: number;
}

/** The node of a session id; a server without --node-id is "server". */
export function nodeOf(sessionId: string): string {
  return nodeOfSession(sessionId) ?? 'server';
}

/** Sessions per node, sorted by node. */
export function countByNode(sessionIds: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of [...sessionIds].sort()) out[nodeOf(id)] = (out[nodeOf(id)] ?? 0) + 1;
  return out;
}

const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : Number.NaN);
const max = (a: number[]) => (a.length ? Math.max(...a) : Number.NaN);
const min = (a: number[]) => (a.length ? Math.min(...a) : Number.NaN);

export class NodeWatch {
  private readonly series = new Map<string, MetricsSample[]>();

  private constructor(
    private readonly base: string,
    private readonly headers: Record<string, string>,
    readonly nodes: string[],
  ) {
    for (const n of nodes) this.series.set(n, []);
  }

  /** The nodes behind `base` when there are several; null for a single server. */
  static async discover(base: string, apiKey?: string): Promise<NodeWatch | null> {
    const headers: Record<string, string> = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
    try {
      const res = await fetch(`${base}/v1/nodes`, { headers, signal: AbortSignal.timeout(3000) });
      if (!res.ok) return null;
      const { nodes } = (await res.json()) as { nodes?: Array<{ node: string }> };
      return nodes && nodes.length > 1 ? new NodeWatch(base, headers, nodes.map((n) => n.node)) : null;
    } catch {
      return null;
    }
  }

  /**
   * Scrapes every node; returns the cluster's sample (sums; worst lag), or null unless every node
   * answered (a sum with a node missing would read as the cluster's CPU going backwards).
   */
  async scrape(): Promise<MetricsSample | null> {
    const got = await Promise.all(
      this.nodes.map(async (n) => {
        try {
          const res = await fetch(`${this.base}/v1/nodes/${n}/metrics`, { headers: this.headers, signal: AbortSignal.timeout(3000) });
          const text = await res.text();
          if (!res.ok) return null;
          const s = parseMetrics(text, performance.now());
          this.series.get(n)!.push(s);
          return s;
        } catch {
          return null;
        }
      }),
    );
    const ok = got.filter((s): s is MetricsSample => s !== null);
    if (ok.length < got.length) return null;
    const sum = (k: keyof MetricsSample) => ok.reduce((a, s) => a + s[k], 0);
    return {
      at: performance.now(),
      cpuSeconds: sum('cpuSeconds'),
      rssBytes: sum('rssBytes'),
      sessions: sum('sessions'),
      framesIn: sum('framesIn'),
      framesOut: sum('framesOut'),
      framesDropped: sum('framesDropped'),
      eventLoopLagMs: max(ok.map((s) => s.eventLoopLagMs)),
      udpDrops: sum('udpDrops'),
    };
  }

  summarise(sessions: SessionFigures[]): NodeSummary[] {
    const load = sessions.filter((s) => s.role === 'load');
    const names = [...new Set([...this.nodes, ...load.map((s) => nodeOf(s.sessionId))])].sort();
    return names.map((node) => {
      const mine = load.filter((s) => nodeOf(s.sessionId) === node);
      const samples = this.series.get(node) ?? [];
      const cpu = samples.slice(1).map((s, i) => cpuPercent(samples[i], s)).filter(Number.isFinite);
      return {
        node,
        sessions: mine.length,
        outFpsMean: mean(mine.map((s) => s.outFps)),
        outFpsMin: min(mine.map((s) => s.outFps)),
        g2gP95Max: max(mine.map((s) => s.g2g.p95).filter(Number.isFinite)),
        serverP95Max: max(mine.map((s) => s.server?.p95 ?? Number.NaN).filter(Number.isFinite)),
        freezes: mine.reduce((a, s) => a + s.freezes, 0),
        cpuPctMean: mean(cpu),
        cpuPctMax: max(cpu),
        rssMiBMax: max(samples.map((s) => s.rssBytes / 2 ** 20).filter(Number.isFinite)),
      };
    });
  }
}
