/**
 * Per-session counters and rolling latency windows (fixed-size rings: stats never grow with
 * session length). Every event also feeds the server-wide Prometheus metrics, so the frame loop
 * reports each thing once.
 */
import { metrics } from '../metrics.ts';

/**
 * The last values pushed, at most `size` of them and none older than `windowMs`: a summary then
 * says how the session is doing now. Without the age limit a slow session's window spans most of
 * a minute (256 frames at 5 fps), so start-up and past overload stay in its p95 long after.
 */
export class Ring {
  private readonly buf: Float64Array;
  private readonly at: Float64Array;
  private n = 0;
  private i = 0;
  constructor(
    size = 256,
    private readonly windowMs = Number.POSITIVE_INFINITY,
  ) {
    this.buf = new Float64Array(size);
    this.at = new Float64Array(size);
  }
  push(v: number, now = performance.now()): void {
    this.buf[this.i] = v;
    this.at[this.i] = now;
    this.i = (this.i + 1) % this.buf.length;
    if (this.n < this.buf.length) this.n++;
  }
  /** Values held, old ones included (the count is what callers wait on, not a summary). */
  get count(): number {
    return this.n;
  }
  /** Percentile (0..100) of the values within the window, by nearest rank; NaN when none. */
  percentile(p: number, now = performance.now()): number {
    const recent: number[] = [];
    for (let k = 0; k < this.n; k++) if (now - this.at[k] <= this.windowMs) recent.push(this.buf[k]);
    if (recent.length === 0) return Number.NaN;
    recent.sort((a, b) => a - b);
    const rank = Math.min(recent.length - 1, Math.max(0, Math.ceil((p / 100) * recent.length) - 1));
    return recent[rank];
  }
}

/** Events per second over a sliding window of timestamps. */
export class RateMeter {
  private readonly times: Float64Array;
  private n = 0;
  private i = 0;
  constructor(private readonly windowMs = 2000, capacity = 256) {
    this.times = new Float64Array(capacity);
  }
  mark(now = performance.now()): void {
    this.times[this.i] = now;
    this.i = (this.i + 1) % this.times.length;
    if (this.n < this.times.length) this.n++;
  }
  rate(now = performance.now()): number {
    let count = 0;
    let oldest = now;
    for (let k = 0; k < this.n; k++) {
      const t = this.times[k];
      if (now - t <= this.windowMs) {
        count++;
        if (t < oldest) oldest = t;
      }
    }
    if (count < 2) return 0;
    return ((count - 1) * 1000) / Math.max(1, now - oldest);
  }
}

export interface StageSummary {
  p50: number;
  p95: number;
}

/** What a stats subscription pushes, at the subscriber's rate. */
export interface StatsEvent {
  at: string;
  paused: boolean;
  inFps: number;
  outFps: number;
  framesIn: number;
  framesOut: number;
  dropped: number;
  /** Whether the last rendered frame had a driving face; null for renderers that do not track one. */
  faceFound: boolean | null;
  latencyMs: StageSummary;
  stageMs: { decode: StageSummary; render: StageSummary; background: StageSummary; encode: StageSummary };
  /** The frame budget's cap, fps: under the session's maxFps while the server is short of CPU. */
  frameBudgetFps: number;
  outWidth: number;
  outHeight: number;
}

export interface SessionStats {
  /** Driving frames assembled from the peer's RTP; `framesIn` of them were decoded (the others were skipped: enhancement layers the rate cap or a busy decoder did not need, or frames before a keyframe). */
  framesReceived: number;
  framesIn: number;
  framesOut: number;
  dropped: number;
  decodeErrors: number;
  keyframeRequests: number;
  /** Share of rendered frames in which the renderer found no driving face; null for renderers that do not track faces. */
  faceLostRatio: number | null;
  inFps: number;
  outFps: number;
  inWidth: number;
  inHeight: number;
  /** Temporal layers the sender encodes (1: none; 2 for L1T2): the decoder can skip the upper ones when short of CPU. */
  temporalLayers: number;
  /** The frame budget's cap, fps: under the session's maxFps while the server is short of CPU (frames spend longer than --latency-budget in it). */
  frameBudgetFps: number;
  outWidth: number;
  outHeight: number;
  decodeMs: StageSummary;
  renderMs: StageSummary;
  encodeMs: StageSummary;
  /** Server-side part of glass-to-glass: last RTP packet of a driving frame in → first packet of its output out. */
  serverLatencyMs: StageSummary;
}

/** Stage and latency summaries cover the frames of the last 10 s (at most 256). */
export const SUMMARY_WINDOW_MS = 10_000;

const summary = (r: Ring): StageSummary => ({ p50: round(r.percentile(50)), p95: round(r.percentile(95)) });
const round = (v: number) => (Number.isNaN(v) ? 0 : Math.round(v * 100) / 100);

export class StatsCollector {
  framesReceived = 0;
  framesIn = 0;
  framesOut = 0;
  dropped = 0;
  decodeErrors = 0;
  keyframeRequests = 0;
  inWidth = 0;
  inHeight = 0;
  /** Highest VP8 temporal layer id seen in ingest; -1 when the sender uses none. */
  maxTid = -1;
  /** Set by the frame loop (frame-budget.ts). */
  frameBudgetFps = 0;
  faceFrames = 0;
  faceLost = 0;
  lastFaceFound: boolean | null = null;
  readonly background = new Ring(64, SUMMARY_WINDOW_MS);
  readonly decode = new Ring(256, SUMMARY_WINDOW_MS);
  readonly render = new Ring(256, SUMMARY_WINDOW_MS);
  readonly encode = new Ring(256, SUMMARY_WINDOW_MS);
  readonly latency = new Ring(256, SUMMARY_WINDOW_MS);
  /** The last second or so of latencies: what the audio relay follows. */
  private readonly recentLatency = new Ring(32);
  readonly inRate = new RateMeter();
  readonly outRate = new RateMeter();

  decoded(ms: number, width: number, height: number): void {
    this.decode.push(ms);
    this.framesIn++;
    this.inRate.mark();
    this.inWidth = width;
    this.inHeight = height;
    metrics.framesIn.inc();
    metrics.stageSeconds.observe({ stage: 'decode' }, ms / 1000);
  }

  rendered(ms: number, faceFound: boolean | null, backgroundMs = 0): void {
    this.render.push(ms);
    this.background.push(backgroundMs);
    this.lastFaceFound = faceFound;
    metrics.stageSeconds.observe({ stage: 'render' }, ms / 1000);
    if (faceFound !== null) {
      this.faceFrames++;
      if (!faceFound) this.faceLost++;
      metrics.faceChecks.inc({ found: String(faceFound) });
    }
  }

  sent(encodeMs: number, latencyMs: number): void {
    this.encode.push(encodeMs);
    this.latency.push(latencyMs);
    this.recentLatency.push(latencyMs);
    this.framesOut++;
    this.outRate.mark();
    metrics.framesOut.inc();
    metrics.stageSeconds.observe({ stage: 'encode' }, encodeMs / 1000);
    metrics.stageSeconds.observe({ stage: 'server_latency' }, latencyMs / 1000);
  }

  /**
   * The video's current server-side latency (median of the last ~32 frames sent), ms; NaN until 8
   * frames have gone out (the first ones carry the encoder's start-up).
   */
  videoDelayMs(): number {
    return this.recentLatency.count >= 8 ? this.recentLatency.percentile(50) : Number.NaN;
  }

  droppedFrame(): void {
    this.droppedFrames(1);
  }

  droppedFrames(n: number): void {
    if (n <= 0) return;
    this.dropped += n;
    metrics.framesDropped.inc(n);
  }

  decodeError(): void {
    this.decodeErrors++;
    metrics.decodeErrors.inc();
  }

  keyframeRequested(): void {
    this.keyframeRequests++;
    metrics.keyframeRequests.inc();
  }

  event(out: { width: number; height: number }, paused: boolean): StatsEvent {
    return {
      at: new Date().toISOString(),
      paused,
      inFps: round(this.inRate.rate()),
      outFps: round(this.outRate.rate()),
      framesIn: this.framesIn,
      framesOut: this.framesOut,
      dropped: this.dropped,
      faceFound: this.lastFaceFound,
      latencyMs: summary(this.latency),
      stageMs: { decode: summary(this.decode), render: summary(this.render), background: summary(this.background), encode: summary(this.encode) },
      frameBudgetFps: round(this.frameBudgetFps),
      outWidth: out.width,
      outHeight: out.height,
    };
  }

  snapshot(out: { width: number; height: number }): SessionStats {
    return {
      framesReceived: this.framesReceived,
      framesIn: this.framesIn,
      framesOut: this.framesOut,
      dropped: this.dropped,
      decodeErrors: this.decodeErrors,
      keyframeRequests: this.keyframeRequests,
      faceLostRatio: this.faceFrames ? round(this.faceLost / this.faceFrames) : null,
      inFps: round(this.inRate.rate()),
      outFps: round(this.outRate.rate()),
      inWidth: this.inWidth,
      inHeight: this.inHeight,
      temporalLayers: Math.max(1, this.maxTid + 1),
      frameBudgetFps: round(this.frameBudgetFps),
      outWidth: out.width,
      outHeight: out.height,
      decodeMs: summary(this.decode),
      renderMs: summary(this.render),
      encodeMs: summary(this.encode),
      serverLatencyMs: summary(this.latency),
    };
  }
}
