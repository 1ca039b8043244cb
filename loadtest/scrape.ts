/**
 * Reads the server's own figures from `GET /metrics` (Prometheus text), so the load test works
 * against a server on another machine as well as a local child: process CPU seconds and resident
 * memory (prom-client's default process metrics), live sessions, frame counters and the packets the
 * kernel dropped at the server's sockets.
 */

export interface MetricsSample {
  /** Load-generator clock (performance.now()) when the response arrived. */
  at: number;
  cpuSeconds: number;
  rssBytes: number;
  sessions: number;
  framesIn: number;
  framesOut: number;
  framesDropped: number;
  /** The server's event-loop delay p99 over its last scrape interval (ms). */
  eventLoopLagMs: number;
  /** Datagrams the kernel dropped so far at the server's UDP sockets, receive buffer full (NaN: not reported). */
  udpDrops: number;
}

/** Sum of every series of `name` (labels ignored); NaN when absent. */
export function metricValue(text: string, name: string): number {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'gm');
  let sum = Number.NaN;
  for (let m = re.exec(text); m; m = re.exec(text)) sum = (Number.isNaN(sum) ? 0 : sum) + Number(m[1]);
  return sum;
}

export function parseMetrics(text: string, at: number): MetricsSample {
  return {
    at,
    cpuSeconds: metricValue(text, 'xpl_process_cpu_seconds_total'),
    rssBytes: metricValue(text, 'xpl_process_resident_memory_bytes'),
    sessions: metricValue(text, 'xpl_sessions'),
    framesIn: metricValue(text, 'xpl_frames_in_total'),
    framesOut: metricValue(text, 'xpl_frames_out_total'),
    framesDropped: metricValue(text, 'xpl_frames_dropped_total'),
    eventLoopLagMs: metricValue(text, 'xpl_event_loop_lag_seconds') * 1000,
    udpDrops: metricValue(text, 'xpl_udp_receive_drops_total'),
  };
}

export async function scrapeMetrics(baseUrl: string, apiKey?: string): Promise<MetricsSample | null> {
  try {
    const res = await fetch(`${baseUrl}/metrics`, { headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {}, signal: AbortSignal.timeout(3000) });
    const text = await res.text();
    if (!res.ok) return null;
    return parseMetrics(text, performance.now());
  } catch {
    return null;
  }
}

/** CPU use between two samples as a percentage of one core (200 % = two cores busy). */
export function cpuPercent(a: MetricsSample, b: MetricsSample): number {
  const dt = (b.at - a.at) / 1000;
  return dt > 0 ? ((b.cpuSeconds - a.cpuSeconds) / dt) * 100 : Number.NaN;
}
