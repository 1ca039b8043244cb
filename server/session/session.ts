/**
 * A session: one peer, one portrait, one renderer, its viewers and its frame loop
 * (loop/frame-loop.ts). The session holds identity and the client's controls and steers the loop;
 * the loop moves the frames. It owns everything it creates (peer, viewers, loop worker) and
 * close() releases all of it.
 */
import { randomUUID } from 'node:crypto';
import { newSessionId } from '../cluster/ids.ts';
import type { Config, RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CodecBackend, VideoCodec } from '../media/codec.ts';
import type { RgbaImage } from '../media/frame.ts';
import { metrics } from '../metrics.ts';
import type { FrameBudget } from '../loop/frame-budget.ts';
import { FrameLoop } from '../loop/frame-loop.ts';
import type { LoopParams } from '../loop/render.ts';
import { LoopHost } from '../loop/worker-host.ts';
import type { LoopWorkerPool } from '../loop/worker-pool.ts';
import type { LoopSetup } from '../loop/worker.ts';
import type { RendererOptions } from '../renderers/types.ts';
import { AudioRelay, type AudioRelayInfo } from '../rtc/audio-relay.ts';
import { connectionOptions } from '../rtc/connection.ts';
import { Peer } from '../rtc/peer.ts';
import { inspectOffer, type OfferSummary } from '../rtc/sdp.ts';
import { ViewerPeer } from '../rtc/viewer-peer.ts';
import { checkOutput, checkRenderer, type OutputSettings } from '../schemas.ts';
import { StatsCollector, type SessionStats, type StatsEvent } from './stats.ts';

export type { OutputSettings } from '../schemas.ts';

/** Everything a client can set on a live session (all optional in a change): its look, and its audio. */
export interface SessionParams extends LoopParams {
  /** Relay the caller's audio (back to the caller and to viewers); default true. */
  audio: boolean;
}

export interface ViewerInfo {
  id: string;
  createdAt: string;
  state: string;
  framesSent: number;
}

/** What every session of a server shares: the warm loop workers, the codec chosen at start, the frame budget. */
export interface SessionRuntime {
  pool: LoopWorkerPool;
  codec: CodecBackend;
  frameBudget: FrameBudget;
}

export interface SessionInit {
  offerSdp: string;
  renderer: RendererName;
  portraitId: string;
  portrait: RgbaImage;
  config: Config;
  runtime: SessionRuntime;
  log: Logger;
}

export interface SessionInfo {
  id: string;
  renderer: RendererName;
  portraitId: string;
  createdAt: string;
  state: 'active' | 'paused' | 'closed';
  sendsBack: boolean;
  output: OutputSettings;
  params: Partial<SessionParams>;
  viewers: number;
  viewerList: ViewerInfo[];
  audio: AudioRelayInfo;
  stats: SessionStats;
}

export class Session {
  readonly id: string;
  readonly createdAt = new Date();
  readonly stats = new StatsCollector();
  /** The caller's audio, delayed to the video's processing latency, to the caller and every viewer. */
  readonly audio = new AudioRelay({ videoDelayMs: () => this.stats.videoDelayMs() });
  renderer: RendererName;
  portraitId: string;
  onClosed: (s: Session, reason: string) => void = () => {};
  /** Called after any change a client made (portrait, renderer, output, params, pause, viewers). */
  onChanged: (s: Session) => void = () => {};
  private portrait: RgbaImage;
  private output: OutputSettings;
  private params: Partial<SessionParams> = {};
  private paused = false;
  private readonly viewers = new Map<string, ViewerPeer>();
  /** Serialises renderer/portrait/output changes so two clients cannot interleave re-inits. */
  private changeChain: Promise<unknown> = Promise.resolve();
  private peer?: Peer;
  private readonly host: LoopHost;
  private readonly loop: FrameLoop;
  private readonly log: Logger;
  private readonly config: Config;
  private readonly runtime: SessionRuntime;
  /** The driving video's codec, and the output's (VP8 unless the sender offered no VP8 and wants the output back). */
  private readonly codecs: { ingest: VideoCodec; egress: VideoCodec };
  private closed = false;

  private constructor(init: SessionInit, offer: OfferSummary) {
    this.id = newSessionId(init.config.nodeId);
    const egress = offer.videoDirection === 'sendrecv' && offer.videoCodec === 'h264' ? 'h264' : 'vp8';
    this.codecs = { ingest: offer.videoCodec, egress };
    this.renderer = init.renderer;
    this.portraitId = init.portraitId;
    this.portrait = init.portrait;
    this.config = init.config;
    this.runtime = init.runtime;
    this.output = { width: init.config.output.width, height: init.config.output.height, maxFps: init.config.maxFps };
    this.log = init.log.child({ session: this.id });
    this.host = new LoopHost(init.runtime.pool, () => this.loopSetup(), init.config.renderTimeout * 1000);
    this.host.onGiveUp = (reason) => void this.close(reason);
    this.loop = new FrameLoop({
      peer: this.peerFacade(),
      viewers: this.viewers,
      host: this.host,
      stats: this.stats,
      log: this.log,
      maxFps: this.output.maxFps,
      budget: init.runtime.frameBudget,
    });
  }

  /** The peer as the loop sees it; the peer itself is created after the loop (it needs the offer answered). */
  private peerFacade() {
    const self = this;
    return {
      get sendsBack() {
        return self.peer?.sendsBack ?? false;
      },
      get waitingForKeyframe() {
        return self.peer?.waitingForKeyframe ?? true;
      },
      requestKeyframe: (reason: string) => self.peer?.requestKeyframe(reason),
      sendFrame: (data: Uint8Array, rtp: number) => self.peer?.sendFrame(data, rtp),
      limitIncoming: (share: number) => self.peer?.limitIncoming(share),
    };
  }

  /** What a renderer is created with: the output size and the server's renderer settings. */
  private rendererOptions(width: number, height: number): RendererOptions {
    return { outputWidth: width, outputHeight: height, pack: this.config.pack, lcm: this.config.lcm, framing: this.config.framing, zoom: this.config.zoom };
  }

  private loopSetup(): LoopSetup {
    return {
      renderer: this.renderer,
      options: this.rendererOptions(this.output.width, this.output.height),
      portrait: this.portrait,
      params: renderOnly(this.params),
      codec: this.runtime.codec,
      output: { width: this.output.width, height: this.output.height, fps: this.output.maxFps, bitrate: this.config.bitrate },
      codecs: this.codecs,
      renderTimeoutMs: this.config.renderTimeout * 1000,
    };
  }

  /**
   * Answers the offer and starts the loop. The peer's negotiation and the loop worker's set-up run
   * side by side; on any failure everything created so far is released.
   */
  static async create(init: SessionInit): Promise<Session> {
    // Reject a bad offer before any worker is taken for it.
    const offer = inspectOffer(init.offerSdp);
    if (offer.videoCodec === 'h264' && init.runtime.codec.name !== 'native') {
      throw new XplError('unsupported_codec', 'this server runs the wasm codec, which has no H.264: offer VP8, or run the server with the native codec (see --codec)');
    }
    const s = new Session(init, offer);
    try {
      const answering = Peer.answer(init.offerSdp, { ...connectionOptions(init.config), audio: s.audio, log: s.log }, offer).then((peer) => {
        s.peer = peer;
        peer.onFrame = (f) => s.loop.ingest(f);
        peer.onLoss = (reason) => s.loop.lost(reason);
        peer.onKeyframeRequest = () => s.loop.keyframeOut();
        peer.onGone = (reason) => void s.close(reason);
        s.loop.peerAttached();
      });
      const [answered, started] = await Promise.allSettled([answering, s.loop.start()]);
      if (answered.status === 'rejected') throw answered.reason;
      if (started.status === 'rejected') throw started.reason;
      // A loop worker that gave up while starting closed the session: the client must not get an answer.
      if (s.closed) throw new XplError('internal', 'the session could not be set up: its loop worker failed');
      s.peer!.answered();
    } catch (err) {
      await s.close('setup failed');
      throw err;
    }
    s.log.info({ renderer: init.renderer, portrait: init.portraitId, sendsBack: s.peer!.sendsBack, video: s.codecs, codec: init.runtime.codec.name }, 'session started');
    return s;
  }

  get answerSdp(): string {
    return this.peer?.answerSdp ?? '';
  }

  private changed(): void {
    if (!this.closed) this.onChanged(this);
  }

  /** Runs one re-initialising change at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.changeChain.then(fn, fn);
    this.changeChain = run.catch(() => undefined);
    return run;
  }

  private assertLive(): void {
    if (this.closed) throw new XplError('not_found', `no session ${this.id}`);
  }

  /** Switches the portrait without renegotiating: the loop worker prepares it, the next frame uses it. */
  setPortrait(portraitId: string, portrait: RgbaImage): Promise<void> {
    return this.serial(async () => {
      this.assertLive();
      await this.host.call('setPortrait', { portrait });
      this.portrait = portrait;
      this.portraitId = portraitId;
      this.log.info({ portrait: portraitId }, 'portrait switched');
      this.changed();
    });
  }

  /** Switches the renderer: the loop worker loads the new one (and the portrait) and only then drops the old one. */
  setRenderer(name: RendererName): Promise<void> {
    return this.serial(async () => {
      this.assertLive();
      checkRenderer(name, this.config);
      await this.host.setRenderer({ renderer: name, options: this.rendererOptions(this.output.width, this.output.height), portrait: this.portrait, output: this.output });
      const old = this.renderer;
      this.renderer = name;
      metrics.sessions.dec({ renderer: old });
      metrics.sessions.inc({ renderer: name });
      this.log.info({ from: old, to: name }, 'renderer switched');
      this.changed();
    });
  }

  /** Output size and frame-rate cap: a new size re-creates the renderer at that size; the encoder follows with a keyframe. */
  setOutput(next: Partial<OutputSettings>): Promise<OutputSettings> {
    return this.serial(async () => {
      this.assertLive();
      const out = checkOutput({ ...this.output, ...next });
      if (out.width !== this.output.width || out.height !== this.output.height) {
        await this.host.setRenderer({ renderer: this.renderer, options: this.rendererOptions(out.width, out.height), portrait: this.portrait, output: out });
      } else {
        await this.host.call('setOutput', out);
      }
      this.output = out;
      this.loop.setMaxFps(out.maxFps);
      this.changed();
      return { ...out };
    });
  }

  /** Parameters (validated by the caller): the look goes to the loop worker, audio to the relay. Values persist across renderer switches. */
  async setParams(params: Partial<SessionParams>): Promise<Partial<SessionParams>> {
    this.assertLive();
    const look = renderOnly(params);
    if (Object.keys(look).length) await this.host.call('setParams', look);
    if (params.audio !== undefined) this.audio.enabled = params.audio;
    this.params = { ...this.params, ...params };
    this.changed();
    return { ...this.params };
  }

  async recalibrate(): Promise<boolean> {
    this.assertLive();
    return this.host.call('reset', undefined);
  }

  /** Stops rendering new frames and holds the last output (re-sent every 500 ms so late viewers see it). */
  pause(): void {
    this.assertLive();
    if (this.paused) return;
    this.paused = true;
    this.loop.pause(true);
    this.log.info('paused');
    this.changed();
  }

  resume(): void {
    this.assertLive();
    if (!this.paused) return;
    this.paused = false;
    this.loop.pause(false);
    this.log.info('resumed');
    this.changed();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Adds a WHEP viewer (recvonly offer → answer). The encoder is shared: it runs once per session whatever the number of viewers. */
  async addViewer(offerSdp: string): Promise<ViewerPeer> {
    this.assertLive();
    if (this.viewers.size >= this.config.maxViewers) {
      throw new XplError('too_many_sessions', `the session has its limit of ${this.config.maxViewers} viewers`, { retryAfter: 5 });
    }
    const v = await ViewerPeer.answer(randomUUID(), offerSdp, { ...connectionOptions(this.config), audio: this.audio, log: this.log, codec: this.codecs.egress });
    if (this.closed) {
      await v.close();
      throw new XplError('not_found', `no session ${this.id}`);
    }
    v.onKeyframeRequest = () => this.loop.keyframeOut();
    v.onGone = (reason) => void this.removeViewer(v.id, reason).catch(() => {});
    this.viewers.set(v.id, v);
    this.loop.audienceChanged();
    this.loop.keyframeOut();
    this.log.info({ viewer: v.id, viewers: this.viewers.size }, 'viewer added');
    this.changed();
    return v;
  }

  async removeViewer(viewerId: string, reason = 'closed by client'): Promise<void> {
    const v = this.viewers.get(viewerId);
    if (!v) throw new XplError('not_found', `no viewer ${viewerId} on session ${this.id}`);
    this.viewers.delete(viewerId);
    this.loop.audienceChanged();
    await v.close();
    this.log.info({ viewer: viewerId, reason, viewers: this.viewers.size }, 'viewer removed');
    this.changed();
  }

  /** The figures of a stats event: rates, latency, drops, face found and per-stage ms. */
  statsEvent(): StatsEvent {
    return this.stats.event({ width: this.output.width, height: this.output.height }, this.paused);
  }

  addRemoteCandidates(fragment: string): Promise<number> {
    this.assertLive();
    return this.peer!.addRemoteCandidates(fragment);
  }

  info(): SessionInfo {
    return {
      id: this.id,
      renderer: this.renderer,
      portraitId: this.portraitId,
      createdAt: this.createdAt.toISOString(),
      state: this.closed ? 'closed' : this.paused ? 'paused' : 'active',
      sendsBack: this.peer?.sendsBack ?? false,
      output: { ...this.output },
      params: { ...this.params },
      viewers: this.viewers.size,
      viewerList: [...this.viewers.values()].map((v) => ({ id: v.id, createdAt: v.createdAt.toISOString(), state: v.connectionState, framesSent: v.framesSent })),
      audio: this.audio.info(),
      stats: this.stats.snapshot({ width: this.output.width, height: this.output.height }),
    };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Idempotent: releases the peer, the viewers and the loop worker; safe to call from any failure path. */
  async close(reason = 'closed'): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.log.info({ reason, stats: this.stats.snapshot({ width: this.output.width, height: this.output.height }) }, 'session closed');
    const viewers = [...this.viewers.values()];
    this.viewers.clear();
    this.audio.close();
    await Promise.allSettled([...viewers.map((v) => v.close()), this.peer?.close(), this.loop.close()]);
    this.onClosed(this, reason);
  }
}

export function assertOpen(s: Session | undefined, id: string): Session {
  if (!s || s.isClosed) throw new XplError('not_found', `no session ${id}`);
  return s;
}

/** The params the loop worker takes: all but the session's own (audio). */
function renderOnly({ audio: _audio, ...look }: Partial<SessionParams>): LoopParams {
  return look;
}
