/**
 * A session's frame loop, read top to bottom:
 *
 *   1. ingest      (main thread) the peer's assembled VP8 frames → keyframe policy (keyframes.ts)
 *                  → the loop worker's media port; frames that come while the worker starts are
 *                  kept from the latest keyframe on and passed on once it is ready
 *   2. rate cap    ┐
 *   3. decode      │ in the loop worker (pipeline.ts): pictures never leave it
 *   4. render      │
 *   5. encode      ┘
 *   6. fan-out     (main thread) the encoded frame to the sender and every viewer (fan-out.ts);
 *                  its time in the server steers the rate cap through the frame budget
 *                  (frame-budget.ts): short of CPU, the frame rate drops, not the latency
 *
 * The main thread does only RTP and signalling: what crosses between it and the worker is the
 * encoded frames, a few kilobytes each. Keyframes in and out are decided in one place
 * (keyframes.ts); the worker handle restarts a crashed or hung worker (worker-host.ts).
 */
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';
import type { StatsCollector } from '../session/stats.ts';
import { FanOut, type Sender } from './fan-out.ts';
import { RenderFloor, type FrameBudget } from './frame-budget.ts';
import { KeyframePolicy, type KeyframeSource } from './keyframes.ts';
import type { FromWorker } from './messages.ts';
import type { LoopHost } from './worker-host.ts';
import type { ViewerPeer } from '../rtc/viewer-peer.ts';

/** One assembled driving frame from the peer. */
export interface IngestFrame {
  data: Uint8Array;
  keyframe: boolean;
  /** VP8 temporal layer; undefined when the sender uses none. */
  tid?: number;
  /** Main-thread performance.now() when its last packet arrived. */
  arrival: number;
  rtpTimestamp: number;
}

/** Frames kept while the worker starts: a second of video from the latest keyframe. */
const MAX_BACKLOG = 30;
/**
 * The first output frames of a (re)started loop carry the codecs' and the renderer's start-up
 * (hundreds of ms): they say nothing about the machine's load, so the frame budget is not told.
 */
const START_UP_MS = 1000;

/** The peer's side of the frame budget: asks the sender for less while the session is capped (rtc/bitrate-limit.ts). */
export interface IncomingLimit {
  limitIncoming(share: number): void;
}

export interface FrameLoopInit {
  peer: KeyframeSource & Sender & IncomingLimit;
  viewers: ReadonlyMap<string, ViewerPeer>;
  host: LoopHost;
  stats: StatsCollector;
  log: Logger;
  /** The session's own frame-rate cap, and the server's frame budget that may lower it. */
  maxFps: number;
  budget: FrameBudget;
}

export class FrameLoop {
  private readonly host: LoopHost;
  private readonly incoming: IncomingLimit;
  private readonly stats: StatsCollector;
  private readonly log: Logger;
  private readonly keyframes: KeyframePolicy;
  private readonly fanOut: FanOut;
  private readonly budget: FrameBudget;
  private readonly renderFloor = new RenderFloor();
  private readonly unsubscribe: () => void;
  private maxFps: number;
  private backlog: IngestFrame[] = [];
  private paused = false;
  private closed = false;
  /** When the first frame of this (re)start went out; NaN before it. */
  private firstOutAt = Number.NaN;

  constructor(init: FrameLoopInit) {
    this.host = init.host;
    this.stats = init.stats;
    this.log = init.log;
    this.fanOut = new FanOut(init.peer, init.viewers);
    this.incoming = init.peer;
    this.budget = init.budget;
    this.maxFps = init.maxFps;
    this.stats.frameBudgetFps = this.budget.capFor(this.maxFps);
    this.unsubscribe = this.budget.onChange(() => this.budgetChanged(false));
    this.keyframes = new KeyframePolicy(init.peer, () => this.host.post({ t: 'keyframe' }), () => this.stats.keyframeRequested());
    this.host.onMessage = (m) => this.fromWorker(m);
    this.host.onRestart = (reason) => {
      this.log.warn({ reason }, 'loop worker restarted');
      this.keyframes.needKeyframe('loop worker restarted');
      this.firstOutAt = Number.NaN;
      this.started();
    };
  }

  /** Sets the worker up; frames that arrived meanwhile were kept and now go on. */
  async start(): Promise<void> {
    await this.host.start();
    this.started();
  }

  private started(): void {
    this.host.post({ t: 'audience', on: this.fanOut.audience });
    if (this.paused) this.host.post({ t: 'pause', on: true });
    this.host.post({ t: 'budget', fps: this.stats.frameBudgetFps });
    // Counted and admitted when they came.
    const kept = this.backlog;
    this.backlog = [];
    for (const f of kept) this.forward(f);
  }

  // 1. ingest
  ingest(f: IngestFrame): void {
    this.stats.framesReceived++;
    if (f.tid !== undefined && f.tid > this.stats.maxTid) this.stats.maxTid = f.tid;
    if (this.closed || !this.keyframes.admit(f.keyframe)) return;
    this.forward(f);
  }

  /** To the worker, or kept while it is not ready. */
  private forward(f: IngestFrame): void {
    if (this.closed) return;
    const whole = f.data.byteOffset === 0 && f.data.byteLength === f.data.buffer.byteLength;
    const data = (whole ? f.data.buffer : f.data.slice().buffer) as ArrayBuffer;
    if (this.host.post({ t: 'frame', data, keyframe: f.keyframe, tid: f.tid, rtp: f.rtpTimestamp, arrival: f.arrival }, [data])) return;
    this.keep({ ...f, data: new Uint8Array(data) });
  }

  private keep(f: IngestFrame): void {
    if (f.keyframe) {
      this.stats.droppedFrames(this.backlog.length);
      this.backlog = [f];
    } else if (this.backlog.length > 0 && this.backlog.length < MAX_BACKLOG) {
      this.backlog.push(f);
    } else {
      this.stats.droppedFrame();
    }
  }

  /** The decoder must restart from a keyframe (the assembler lost packets). */
  lost(reason: string): void {
    this.keyframes.needKeyframe(reason);
  }

  // 2–5 run in the worker; what it reports:
  private fromWorker(m: FromWorker): void {
    if (this.closed) return;
    switch (m.t) {
      case 'decoded':
        this.stats.decoded(m.ms, m.width, m.height);
        break;
      case 'rendered':
        this.stats.rendered(m.renderMs, m.faceFound, m.backgroundMs);
        break;
      case 'dropped':
        this.stats.droppedFrame();
        break;
      case 'need-keyframe':
        if (m.error) this.stats.decodeError();
        this.log.debug({ reason: m.reason }, 'waiting for a keyframe');
        this.keyframes.needKeyframe(m.reason);
        break;
      case 'codec-restart':
        this.log.warn({ reason: m.reason }, `${m.codec} restarted`);
        metrics.workerRestarts.inc({ worker: m.codec });
        break;
      case 'out':
        // 6. fan-out
        this.fanOut.send(new Uint8Array(m.data), m.rtp, m.keyframe);
        this.sent(m);
        break;
    }
  }

  private sent(m: Extract<FromWorker, { t: 'out' }>): void {
    const now = performance.now();
    const latency = now - m.arrival;
    this.stats.sent(m.times.encodeMs, latency);
    if (Number.isNaN(this.firstOutAt)) this.firstOutAt = now;
    // A held frame's latency is made up (paused): it says nothing about the CPU.
    if (!m.held && now - this.firstOutAt >= START_UP_MS) this.budget.observe(latency, this.renderFloor.push(m.times.renderMs), this.maxFps, now);
  }

  /** The server's frame budget or this session's maxFps changed: the loop worker's rate cap follows. */
  private budgetChanged(always: boolean): void {
    const fps = this.budget.capFor(this.maxFps);
    if (fps === this.stats.frameBudgetFps && !always) return;
    this.stats.frameBudgetFps = fps;
    this.host.post({ t: 'budget', fps });
    this.incoming.limitIncoming(fps / this.maxFps);
  }

  /** The session's own cap changed (setOutput, which reset the worker's rate cap to it). */
  setMaxFps(maxFps: number): void {
    this.maxFps = maxFps;
    this.budgetChanged(true);
  }

  /** A receiver needs a keyframe (the sender's PLI, a viewer joined or lost packets, a new output size). */
  keyframeOut(): void {
    this.keyframes.keyframeOut();
  }

  /** The audience changed (a viewer came or went). */
  audienceChanged(): void {
    this.host.post({ t: 'audience', on: this.fanOut.audience });
  }

  /** The peer is there (it is answered after the loop is made): it sends back, and learns the cap that holds now. */
  peerAttached(): void {
    this.audienceChanged();
    this.incoming.limitIncoming(this.stats.frameBudgetFps / this.maxFps);
  }

  pause(on: boolean): void {
    this.paused = on;
    this.host.post({ t: 'pause', on });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    this.keyframes.stop();
    this.backlog = [];
    await this.host.close();
  }
}
