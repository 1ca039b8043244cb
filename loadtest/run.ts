/**
 * The load-test engine: N independent libwebrtc peers (test/support/wrtc-peer.ts), each with its
 * own session on the server, each sending a looped driving video and receiving the output.
 *
 * Per session it measures out fps, glass-to-glass latency (from the frame ids of the test
 * pattern, when the renderer passes the picture through), freezes (gaps between received frames
 * longer than `freezeMs`), lost frames (sent ids never received back), and polls the session's
 * own server-side figures (`GET /v1/sessions/ID`: server-added latency, dropped frames). Server
 * CPU and RSS come from `/metrics`, so a remote server is measured the same way as a local one.
 *
 * Two modes: fixed (N sessions for `durationS` after a warm-up) and ramp (add one session per
 * step until a session misses the SLO, the server refuses one, or `maxSessions` is reached).
 * Both stop by themselves.
 */
import { allocI420, type I420Frame } from '../server/media/frame.ts';
import { startPeer, type Peer, type FrameProducer } from '../test/support/wrtc-peer.ts';
import { cpuPercent, scrapeMetrics, type MetricsSample } from './scrape.ts';
import { loopbackOnly } from './sdp.ts';
import { countByNode, NodeWatch, type NodeSummary } from './nodes.ts';

export interface Driving {
  /** Where the frames came from, for the report. */
  name: string;
  width: number;
  height: number;
  fps: number;
  /** Looped; null: the id pattern drawn live. */
  frames: I420Frame[] | null;
}

export interface LoadOptions {
  url: string;
  apiKey?: string;
  renderer: string;
  portrait?: string;
  /** Fixed mode: sessions to run. Ramp mode: ignored (starts at 1). */
  sessions: number;
  /** Fixed mode: measured seconds after the warm-up. */
  durationS: number;
  ramp?: { stepS: number; maxSessions: number };
  slo: { minFps: number; maxP95Ms: number };
  driving: Driving;
  /** Also run one passthrough pattern session that measures glass-to-glass under the same load (not counted in the aggregate). */
  probe: boolean;
  /** Seconds at the start of each session (and of each ramp level) left out of the figures. */
  warmupS: number;
  freezeMs: number;
  /** Keep all media on 127.x candidates (default for loopback URLs). */
  loopbackIce: boolean;
  progress?: (line: string) => void;
}

export interface Sample {
  /** Seconds since the start of the run. */
  t: number;
  sessions: number;
  fpsMean: number;
  fpsMin: number;
  /** Pooled over the load sessions' frames received in this second (glass-to-glass). */
  g2gP50: number;
  g2gP95: number;
  /** Worst session's server-added latency p95 (its rolling window of the last 256 frames). */
  serverP95: number;
  probeP95: number;
  serverCpuPct: number;
  serverRssMiB: number;
  /** Server event-loop delay p99 (ms), from /metrics. */
  serverLagMs: number;
  loadgenCpuPct: number;
  freezes: number;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface SessionSummary {
  index: number;
  role: 'load' | 'probe';
  sessionId: string;
  renderer: string;
  /** Seconds since the start of the run. */
  startedS: number;
  measuredS: number;
  sent: number;
  received: number;
  outFps: number;
  /** Glass-to-glass from frame ids; count 0 when the output carries no ids. */
  g2g: LatencySummary;
  /** Server-added latency (last RTP packet in → output packetised), the server's own rolling p50/p95. */
  server: { p50: number; p95: number } | null;
  freezes: number;
  freezeMs: number;
  longestGapMs: number;
  /** Pattern only: sent frames whose id never came back (network loss + server drops), and the delivered share. */
  lost: number | null;
  deliveredPct: number | null;
  serverDropped: number | null;
  faceLostRatio: number | null;
  /** The session's own stage times (p50/p95 ms) from GET /v1/sessions/ID, at the end of the run. */
  stages: Record<'decode' | 'render' | 'encode', { p50: number; p95: number }> | null;
  error?: string;
}

export interface RampLevel {
  sessions: number;
  fpsMin: number;
  fpsMean: number;
  /** Worst session's p95, and which latency it is. */
  p95Max: number;
  latencySource: 'g2g' | 'server' | 'probe';
  serverCpuPct: number;
  /** Behind a load balancer: the level's sessions per node. */
  perNode?: Record<string, number>;
  ok: boolean;
  why?: string;
}

export interface LoadResult {
  startedAt: string;
  options: Omit<LoadOptions, 'progress' | 'driving'> & { driving: Omit<Driving, 'frames'> };
  samples: Sample[];
  sessions: SessionSummary[];
  aggregate: {
    sessions: number;
    outFpsMean: number;
    outFpsMin: number;
    g2g: LatencySummary;
    serverP95Max: number;
    probeG2g: LatencySummary | null;
    freezes: number;
    lost: number | null;
    deliveredPct: number | null;
    serverDropped: number;
    /** Datagrams the kernel dropped at the server's sockets during the run (receive buffer full); null when the server does not report it. */
    serverUdpDrops: number | null;
    serverCpuPctMean: number;
    serverCpuPctMax: number;
    serverRssMiB: { start: number; max: number; end: number };
    loadgenCpuPctMean: number;
    errors: string[];
  };
  ramp?: { levels: RampLevel[]; capacity: number; limitedBy: string };
  /** Behind a load balancer (several nodes in GET /v1/nodes): the figures of each node. */
  nodes?: NodeSummary[];
  durationS: number;
}

export function summarise(values: number[]): LatencySummary {
  const s = [...values].sort((a, b) => a - b);
  const p = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] : Number.NaN);
  return { count: s.length, p50: p(0.5), p95: p(0.95), p99: p(0.99), max: s.length ? s[s.length - 1] : Number.NaN };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One peer and what has been learnt about it. */
class Tracked {
  cursor = 0;
  lastAt = Number.NaN;
  /** Measured-period accumulators (from `measureFrom` to `measureTo`). */
  measureFrom = Number.POSITIVE_INFINITY;
  measureTo = Number.POSITIVE_INFINITY;
  lat: number[] = [];
  frames = 0;
  freezes = 0;
  freezeMs = 0;
  longestGap = 0;
  seqFrom = -1;
  seqTo = -1;
  seqsSeen = new Set<number>();
  /** Ramp-level accumulators (from `levelFrom`). */
  levelFrom = Number.POSITIVE_INFINITY;
  levelLat: number[] = [];
  levelFrames = 0;
  /** This tick's figures. */
  tickFrames = 0;
  tickLat: number[] = [];
  tickFreezes = 0;
  server: { p50: number; p95: number } | null = null;
  serverDropped: number | null = null;
  faceLostRatio: number | null = null;
  stages: SessionSummary['stages'] = null;
  closed = false;
  constructor(
    readonly index: number,
    readonly role: 'load' | 'probe',
    readonly renderer: string,
    readonly peer: Peer,
    readonly startedAt: number,
    readonly fps: number,
  ) {}

  get sessionId(): string {
    return this.peer.sessionUrl.split('/').pop() ?? '';
  }

  /** Consumes the frames received since the last call. */
  update(freezeMs: number): void {
    this.tickFrames = 0;
    this.tickLat = [];
    this.tickFreezes = 0;
    const rec = this.peer.received;
    for (; this.cursor < rec.length; this.cursor++) {
      const r = rec[this.cursor];
      this.tickFrames++;
      if (r.latencyMs !== null) this.tickLat.push(r.latencyMs);
      if (r.at >= this.levelFrom) {
        this.levelFrames++;
        if (r.latencyMs !== null) this.levelLat.push(r.latencyMs);
      }
      if (r.at >= this.measureFrom && r.at < this.measureTo) {
        this.frames++;
        if (r.latencyMs !== null) this.lat.push(r.latencyMs);
        if (r.seq !== null) this.seqsSeen.add(r.seq);
        const gap = r.at - (Number.isNaN(this.lastAt) ? this.measureFrom : Math.max(this.lastAt, this.measureFrom));
        this.longestGap = Math.max(this.longestGap, gap);
        if (gap > freezeMs) {
          this.freezes++;
          this.tickFreezes++;
          this.freezeMs += gap;
        }
      }
      this.lastAt = r.at;
    }
  }

  startMeasuring(at: number): void {
    this.measureFrom = at;
    this.seqFrom = this.peer.stats().sent;
  }

  /** Frames already consumed all arrived before `at`; later ones are checked against it. */
  startLevel(at: number): void {
    this.levelFrom = at;
    this.levelLat = [];
    this.levelFrames = 0;
  }

  stopMeasuring(now: number, freezeMs: number): void {
    this.update(freezeMs);
    this.measureTo = now;
    // Frames sent in the last second may still be on their way: losses are counted up to then.
    this.seqTo = Math.max(this.seqFrom, this.peer.stats().sent - Math.round(this.fps));
    if (now > this.measureFrom) {
      // A stream that stopped is one long freeze until the end.
      const tailGap = now - Math.max(Number.isNaN(this.lastAt) ? this.measureFrom : this.lastAt, this.measureFrom);
      if (tailGap > freezeMs) {
        this.freezes++;
        this.freezeMs += tailGap;
      }
      this.longestGap = Math.max(this.longestGap, tailGap);
    }
  }

  summary(t0: number, patternIds: boolean): SessionSummary {
    const measuredS = Math.max(0.001, (Math.min(this.measureTo, performance.now()) - this.measureFrom) / 1000);
    let lost: number | null = null;
    let deliveredPct: number | null = null;
    if (patternIds && this.seqFrom >= 0 && this.seqTo > this.seqFrom) {
      let seen = 0;
      for (const s of this.seqsSeen) if (s >= this.seqFrom && s < this.seqTo) seen++;
      const expected = this.seqTo - this.seqFrom;
      lost = expected - seen;
      deliveredPct = (seen / expected) * 100;
    }
    return {
      index: this.index,
      role: this.role,
      sessionId: this.sessionId,
      renderer: this.renderer,
      startedS: (this.startedAt - t0) / 1000,
      measuredS,
      sent: this.peer.stats().sent,
      received: this.peer.received.length,
      outFps: this.frames / measuredS,
      g2g: summarise(this.lat),
      server: this.server,
      freezes: this.freezes,
      freezeMs: Math.round(this.freezeMs),
      longestGapMs: Math.round(this.longestGap),
      lost,
      deliveredPct,
      serverDropped: this.serverDropped,
      faceLostRatio: this.faceLostRatio,
      stages: this.stages,
    };
  }
}

function producerFor(d: Driving): FrameProducer | undefined {
  if (!d.frames) return undefined; // the pattern
  const frames = d.frames;
  return (f, seq) => f.data.set(frames[seq % frames.length].data);
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const log = o.progress ?? (() => {});
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const base = o.url.replace(/\/$/, '');
  const tracked: Tracked[] = [];
  const samples: Sample[] = [];
  const errors: string[] = [];
  const metricSamples: MetricsSample[] = [];
  const patternIds = o.driving.frames === null;
  let nextIndex = 0;
  let lastCpu = process.cpuUsage();
  let lastCpuAt = performance.now();

  const munge = o.loopbackIce ? { mungeOffer: (s: string) => loopbackOnly(s, 'offer'), mungeAnswer: (s: string) => loopbackOnly(s, 'answer') } : {};

  async function addSession(role: 'load' | 'probe'): Promise<Tracked | null> {
    const index = nextIndex++;
    const renderer = role === 'probe' ? 'passthrough' : o.renderer;
    const query: Record<string, string> = { renderer };
    if (o.portrait) query.portrait = o.portrait;
    const d = role === 'probe' ? { ...o.driving, frames: null } : o.driving;
    try {
      const peer = await startPeer({
        baseUrl: base,
        apiKey: o.apiKey,
        query,
        width: d.width,
        height: d.height,
        fps: d.fps,
        producer: producerFor(d),
        decodeIds: d.frames === null,
        ...munge,
      });
      const t = new Tracked(index, role, renderer, peer, performance.now(), d.fps);
      tracked.push(t);
      return t;
    } catch (err) {
      const msg = `session ${index} (${role}): ${(err as Error).message.slice(0, 300)}`;
      errors.push(msg);
      log(`! ${msg}`);
      return null;
    }
  }

  async function pollServer(): Promise<void> {
    await Promise.all(
      tracked
        .filter((t) => !t.closed)
        .map(async (t) => {
          try {
            const res = await fetch(t.peer.sessionUrl, { headers: o.apiKey ? { Authorization: `Bearer ${o.apiKey}` } : {}, signal: AbortSignal.timeout(3000) });
            if (!res.ok) {
              await res.arrayBuffer();
              return;
            }
            type Stage = { p50: number; p95: number };
            const info = (await res.json()) as { stats?: { serverLatencyMs?: Stage; dropped?: number; faceLostRatio?: number | null; decodeMs?: Stage; renderMs?: Stage; encodeMs?: Stage } };
            const st = info.stats;
            if (st?.decodeMs && st.renderMs && st.encodeMs) t.stages = { decode: st.decodeMs, render: st.renderMs, encode: st.encodeMs };
            if (info.stats?.serverLatencyMs) t.server = info.stats.serverLatencyMs;
            if (typeof info.stats?.dropped === 'number') t.serverDropped = info.stats.dropped;
            t.faceLostRatio = info.stats?.faceLostRatio ?? null;
          } catch {
            /* a slow answer under load: keep the last figures */
          }
        }),
    );
  }

  let tickNo = 0;
  async function tick(): Promise<Sample> {
    const now = performance.now();
    const live = tracked.filter((t) => !t.closed);
    for (const t of live) t.update(o.freezeMs);
    if (tickNo++ % 2 === 0) await pollServer();
    const m = await scrape();
    if (m) metricSamples.push(m);
    const prevM = metricSamples.length >= 2 ? metricSamples[metricSamples.length - 2] : undefined;
    const cpu = process.cpuUsage(lastCpu);
    const cpuNow = performance.now();
    const loadgenCpuPct = ((cpu.user + cpu.system) / 1000 / (cpuNow - lastCpuAt)) * 100;
    lastCpu = process.cpuUsage();
    lastCpuAt = cpuNow;
    const load = live.filter((t) => t.role === 'load');
    const probe = live.find((t) => t.role === 'probe');
    const dt = samples.length ? now - (t0 + samples[samples.length - 1].t * 1000) : now - t0;
    const fps = load.map((t) => (t.tickFrames * 1000) / Math.max(1, dt));
    const lat = summarise(load.flatMap((t) => t.tickLat));
    const s: Sample = {
      t: (now - t0) / 1000,
      sessions: load.length,
      fpsMean: fps.length ? fps.reduce((a, b) => a + b, 0) / fps.length : Number.NaN,
      fpsMin: fps.length ? Math.min(...fps) : Number.NaN,
      g2gP50: lat.p50,
      g2gP95: lat.p95,
      serverP95: load.length ? Math.max(...load.map((t) => t.server?.p95 ?? Number.NaN).filter((v) => !Number.isNaN(v)), Number.NEGATIVE_INFINITY) : Number.NaN,
      probeP95: probe ? summarise(probe.tickLat).p95 : Number.NaN,
      serverCpuPct: m && prevM ? cpuPercent(prevM, m) : Number.NaN,
      serverRssMiB: m ? m.rssBytes / 2 ** 20 : Number.NaN,
      serverLagMs: m ? m.eventLoopLagMs : Number.NaN,
      loadgenCpuPct,
      freezes: load.reduce((a, t) => a + t.tickFreezes, 0),
    };
    if (!Number.isFinite(s.serverP95)) s.serverP95 = Number.NaN;
    samples.push(s);
    return s;
  }

  const f = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '–');
  const progressLine = (s: Sample, extra = ''): string =>
    `[${f(s.t).padStart(4)} s] ${s.sessions} session(s) | out fps mean ${f(s.fpsMean, 1)} min ${f(s.fpsMin, 1)} | g2g p50 ${f(s.g2gP50)} p95 ${f(s.g2gP95)} ms | server p95 ${f(s.serverP95)} ms${Number.isFinite(s.probeP95) ? ` | probe p95 ${f(s.probeP95)} ms` : ''} | server CPU ${f(s.serverCpuPct)} % RSS ${f(s.serverRssMiB)} MiB lag ${f(s.serverLagMs)} ms | loadgen CPU ${f(s.loadgenCpuPct)} %${extra}`;

  /** Runs ticks for `ms`, printing progress every other second. */
  async function runFor(ms: number, extra: () => string = () => ''): Promise<void> {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      await sleep(Math.min(1000, Math.max(0, end - performance.now())));
      const s = await tick();
      if (samples.length % 2 === 0) log(progressLine(s, extra()));
    }
  }

  // Several nodes behind the URL: server figures are summed over them, and reported per node.
  const nodeWatch = await NodeWatch.discover(base, o.apiKey);
  if (nodeWatch) log(`${nodeWatch.nodes.length} nodes behind ${base}: ${nodeWatch.nodes.join(', ')}`);
  const scrape = () => (nodeWatch ? nodeWatch.scrape() : scrapeMetrics(base, o.apiKey));
  const metrics0 = await scrape();
  if (!metrics0) log(`! ${base}/metrics did not answer: server CPU and RSS will be missing`);
  else metricSamples.push(metrics0);

  let ramp: LoadResult['ramp'];
  try {
    if (o.probe) {
      await addSession('probe');
    }
    if (!o.ramp) {
      // Fixed: start N sessions, a little staggered (ICE gathering and the first keyframes are the costly part).
      log(`starting ${o.sessions} ${o.renderer} session(s) against ${base} …`);
      const started = await Promise.all(
        Array.from({ length: o.sessions }, (_, i) => sleep(i * 150).then(() => addSession('load'))),
      );
      const ok = started.filter((t): t is Tracked => t !== null);
      log(`${ok.length}/${o.sessions} session(s) up; warm-up ${o.warmupS} s, then ${o.durationS} s measured`);
      await runFor(o.warmupS * 1000);
      const from = performance.now();
      for (const t of tracked) t.startMeasuring(from);
      await runFor(o.durationS * 1000);
    } else {
      const levels: RampLevel[] = [];
      let limitedBy = `reached --max-sessions ${o.ramp.maxSessions}`;
      for (let n = 1; n <= o.ramp.maxSessions; n++) {
        const t = await addSession('load');
        if (!t) {
          limitedBy = `the server refused session ${n} (${errors[errors.length - 1]})`;
          break;
        }
        // Settle: the new session's start-up and the others' reaction to it are not measured.
        await runFor(o.warmupS * 1000, () => ` | ramp ${n}: settling`);
        const from = performance.now();
        const load = tracked.filter((x) => x.role === 'load' && !x.closed);
        for (const x of tracked) {
          x.startLevel(from);
          if (x.measureFrom === Number.POSITIVE_INFINITY) x.startMeasuring(from);
        }
        await runFor(o.ramp.stepS * 1000, () => ` | ramp ${n}: measuring`);
        // runFor's last tick has just consumed every frame received so far.
        const now = performance.now();
        const secs = (now - from) / 1000;
        const fps = load.map((x) => x.levelFrames / secs);
        const probe = tracked.find((x) => x.role === 'probe');
        let latencySource: RampLevel['latencySource'] = 'g2g';
        let p95s = load.map((x) => summarise(x.levelLat).p95);
        if (p95s.some((v) => Number.isNaN(v))) {
          if (probe && probe.levelLat.length) {
            latencySource = 'probe';
            p95s = [summarise(probe.levelLat).p95];
          } else {
            latencySource = 'server';
            await pollServer();
            p95s = load.map((x) => x.server?.p95 ?? Number.NaN);
          }
        }
        const levelSamples = samples.filter((s) => s.t >= (from - t0) / 1000);
        const cpuVals = levelSamples.map((s) => s.serverCpuPct).filter(Number.isFinite);
        const level: RampLevel = {
          sessions: n,
          fpsMin: Math.min(...fps),
          fpsMean: fps.reduce((a, b) => a + b, 0) / fps.length,
          p95Max: Math.max(...p95s.map((v) => (Number.isNaN(v) ? Number.POSITIVE_INFINITY : v))),
          latencySource,
          serverCpuPct: cpuVals.length ? cpuVals.reduce((a, b) => a + b, 0) / cpuVals.length : Number.NaN,
          ...(nodeWatch ? { perNode: countByNode(load.map((x) => x.sessionId)) } : {}),
          ok: true,
        };
        const why: string[] = [];
        if (level.fpsMin < o.slo.minFps) why.push(`a session's out fps ${level.fpsMin.toFixed(1)} < ${o.slo.minFps}`);
        if (!(level.p95Max <= o.slo.maxP95Ms)) why.push(`${latencySource} latency p95 ${f(level.p95Max)} ms > ${o.slo.maxP95Ms} ms`);
        level.ok = why.length === 0;
        if (!level.ok) level.why = why.join('; ');
        levels.push(level);
        log(`ramp ${n} session(s): fps min ${level.fpsMin.toFixed(1)} mean ${level.fpsMean.toFixed(1)}, ${latencySource} p95 ${f(level.p95Max)} ms, server CPU ${f(level.serverCpuPct)} % → ${level.ok ? 'meets the SLO' : `misses the SLO (${level.why})`}`);
        if (!level.ok) {
          limitedBy = level.why!;
          break;
        }
      }
      // Capacity: the largest level that met the SLO with every level below it meeting it too.
      let capacity = 0;
      for (const l of levels) {
        if (!l.ok) break;
        capacity = l.sessions;
      }
      ramp = { levels, capacity, limitedBy };
      log(`capacity: ${capacity} session(s) (${limitedBy})`);
    }
  } finally {
    const end = performance.now();
    for (const t of tracked) if (t.measureTo === Number.POSITIVE_INFINITY) t.stopMeasuring(end, o.freezeMs);
    await pollServer();
    await Promise.all(
      tracked.map(async (t) => {
        t.closed = true;
        const status = await t.peer.close().catch((e: Error) => e.message);
        if (status !== 204) errors.push(`session ${t.index}: DELETE answered ${status}`);
      }),
    );
  }

  const summaries = tracked.map((t) => t.summary(t0, t.role === 'probe' || patternIds));
  const load = summaries.filter((s) => s.role === 'load');
  const probe = summaries.find((s) => s.role === 'probe');
  const pooled = tracked.filter((t) => t.role === 'load').flatMap((t) => t.lat);
  const cpuVals = samples.map((s) => s.serverCpuPct).filter(Number.isFinite);
  const rss = samples.map((s) => s.serverRssMiB).filter(Number.isFinite);
  const lostVals = load.map((s) => s.lost).filter((v): v is number => v !== null);
  const udpFirst = metricSamples[0]?.udpDrops, udpLast = metricSamples[metricSamples.length - 1]?.udpDrops;
  const delVals = load.map((s) => s.deliveredPct).filter((v): v is number => v !== null);
  const lg = samples.map((s) => s.loadgenCpuPct).filter(Number.isFinite);
  const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : Number.NaN);
  return {
    startedAt,
    options: { ...o, progress: undefined, driving: { name: o.driving.name, width: o.driving.width, height: o.driving.height, fps: o.driving.fps } } as LoadResult['options'],
    samples,
    sessions: summaries,
    aggregate: {
      sessions: load.length,
      outFpsMean: mean(load.map((s) => s.outFps)),
      outFpsMin: load.length ? Math.min(...load.map((s) => s.outFps)) : Number.NaN,
      g2g: summarise(pooled),
      serverP95Max: Math.max(...load.map((s) => s.server?.p95 ?? Number.NEGATIVE_INFINITY)),
      probeG2g: probe ? probe.g2g : null,
      freezes: load.reduce((a, s) => a + s.freezes, 0),
      lost: lostVals.length ? lostVals.reduce((a, b) => a + b, 0) : null,
      deliveredPct: delVals.length ? mean(delVals) : null,
      serverDropped: load.reduce((a, s) => a + (s.serverDropped ?? 0), 0),
      serverUdpDrops: Number.isFinite(udpFirst) && Number.isFinite(udpLast) ? udpLast! - udpFirst! : null,
      serverCpuPctMean: mean(cpuVals),
      serverCpuPctMax: cpuVals.length ? Math.max(...cpuVals) : Number.NaN,
      serverRssMiB: { start: rss[0] ?? Number.NaN, max: rss.length ? Math.max(...rss) : Number.NaN, end: rss[rss.length - 1] ?? Number.NaN },
      loadgenCpuPctMean: mean(lg),
      errors,
    },
    ramp,
    ...(nodeWatch ? { nodes: nodeWatch.summarise(summaries) } : {}),
    durationS: (performance.now() - t0) / 1000,
  };
}

/** A driving source of the test pattern at the given size (frames drawn live by the peer). */
export function patternDriving(width: number, height: number, fps: number): Driving {
  return { name: 'id pattern', width, height, fps, frames: null };
}

export { allocI420 };
