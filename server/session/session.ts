/**
 * A session: one peer, one portrait, one renderer, one frame loop. It owns every resource it
 * creates (peer connection, codec workers, render worker) and close() releases all of them.
 *
 * Frame loop: ingest → decode (every frame: VP8 frames depend on each other) → [render slot] →
 * [encode slot] → RTP out. The two slots are latest-frame-wins, so overload drops frames
 * instead of delaying them.
 */
import { randomUUID } from 'node:crypto';
import { RENDERER_NAMES, type Config, type RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { CodecError, Vp8Decoder, Vp8Encoder } from '../media/codec.ts';
import type { I420Frame, RgbaImage } from '../media/frame.ts';
import type { RenderParams } from '../renderers/types.ts';
import { metrics } from '../metrics.ts';
import { AudioRelay, type AudioRelayInfo } from '../rtc/audio-relay.ts';
import { connectionOptions } from '../rtc/connection.ts';
import { Peer, type IngestFrame } from '../rtc/peer.ts';
import { ViewerPeer } from '../rtc/viewer-peer.ts';
import { inspectOffer } from '../rtc/sdp.ts';
import { LatestSlot } from './latest-slot.ts';
import { DEFAULT_RENDER_WORKER, RenderHost } from './render-host.ts';
import type { BackgroundMode } from './background.ts';
import { StatsCollector, type SessionStats, type StatsEvent } from './stats.ts';

/** RTP video clock rate: timestamps tick 90,000 times a second. */
const RTP_CLOCK = 90_000;
/** Decodes allowed in flight before ingest is declared overloaded and resynchronised on a keyframe. */
const MAX_DECODES_IN_FLIGHT = 8;
/** While paused, the held output frame is re-sent this often, so viewers joining then get a picture. */
const HOLD_INTERVAL_MS = 500;

export interface OutputSettings {
  width: number;
  height: number;
  /** Output frame-rate cap. */
  maxFps: number;
}

/** Everything a client can set on a live session's rendering (all optional in a change). */
export interface SessionParams extends RenderParams {
  background: BackgroundMode;
  /** Relay the caller's audio (back to the caller and to viewers); default true. */
  audio: boolean;
}

export interface ViewerInfo {
  id: string;
  createdAt: string;
  state: string;
  framesSent: number;
}

interface LoopItem {
  frame: I420Frame;
  index: number;
  arrival: number;
  rtpTimestamp: number;
}

export interface SessionInit {
  offerSdp: string;
  renderer: RendererName;
  portraitId: string;
  portrait: RgbaImage;
  config: Config;
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
  stats: SessionStats;
  audio: AudioRelayInfo;
}

export class Session {
  readonly id = randomUUID();
  readonly createdAt = new Date();
  readonly stats = new StatsCollector();
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
  private holdTimer?: NodeJS.Timeout;
  private lastOutput?: { frame: I420Frame; rtpTimestamp: number; at: number };
  private readonly viewers = new Map<string, ViewerPeer>();
  /** Serialises renderer/portrait/output changes so two clients cannot interleave re-inits. */
  private changeChain: Promise<unknown> = Promise.resolve();

  private peer!: Peer;
  private decoder!: Vp8Decoder;
  private encoder?: Vp8Encoder;
  private encoderStarting?: Promise<Vp8Encoder>;
  private decoderRestarting?: Promise<unknown>;
  private readonly render: RenderHost;
  private readonly renderSlot: LatestSlot<LoopItem>;
  private readonly encodeSlot: LatestSlot<LoopItem>;
  private readonly log: Logger;
  private readonly config: Config;
  private waitKeyframe = true;
  private forceKeyframe = true;
  private frameIndex = 0;
  private lastAcceptedRtp: number | undefined;
  private closed = false;

  private constructor(init: SessionInit) {
    this.renderer = init.renderer;
    this.portraitId = init.portraitId;
    this.portrait = init.portrait;
    this.config = init.config;
    this.output = { width: init.config.output.width, height: init.config.output.height, maxFps: init.config.maxFps };
    this.log = init.log.child({ session: this.id });
    this.render = new RenderHost(() => ({
      renderer: this.renderer,
      options: { outputWidth: this.output.width, outputHeight: this.output.height, pack: this.config.pack },
      portrait: this.portrait,
      params: renderOnly(this.params),
    }), { renderTimeoutMs: init.config.renderTimeout * 1000, workerUrl: DEFAULT_RENDER_WORKER });
    this.render.onRestart = (reason) => {
      this.log.warn({ reason }, 'render worker restarted');
      this.forceKeyframe = true;
    };
    this.render.onGiveUp = (reason) => void this.close(reason);
    this.renderSlot = new LatestSlot((item) => this.renderStep(item), () => this.stats.droppedFrame());
    this.encodeSlot = new LatestSlot((item) => this.encodeStep(item), () => this.stats.droppedFrame());
  }

  /** Answers the offer and starts the loop. On any failure everything created so far is released. */
  static async create(init: SessionInit): Promise<Session> {
    // Reject a bad offer before any worker is started for it.
    const offer = inspectOffer(init.offerSdp);
    const s = new Session(init);
    try {
      const { outputWidth, outputHeight } = s.outputSize;
      await s.render.init({ renderer: init.renderer, options: { outputWidth, outputHeight, pack: init.config.pack }, portrait: init.portrait });
      s.decoder = await Vp8Decoder.create();
      s.peer = await Peer.answer(init.offerSdp, { ...connectionOptions(init.config), audio: s.audio, log: s.log }, offer);
      s.peer.onFrame = (f) => s.onIngest(f);
      s.peer.onKeyframeRequest = () => {
        s.forceKeyframe = true;
      };
      s.peer.onGone = (reason) => void s.close(reason);
    } catch (err) {
      await s.close('setup failed');
      throw err;
    }
    s.log.info({ renderer: init.renderer, portrait: init.portraitId, sendsBack: s.peer.sendsBack }, 'session started');
    return s;
  }

  get answerSdp(): string {
    return this.peer.answerSdp;
  }

  get outputSize(): { outputWidth: number; outputHeight: number } {
    return { outputWidth: this.output.width, outputHeight: this.output.height };
  }

  /** Output goes somewhere: back to the sender (sendrecv) or to at least one viewer. */
  get hasAudience(): boolean {
    return (this.peer?.sendsBack ?? false) || this.viewers.size > 0;
  }

  private onIngest(f: IngestFrame): void {
    if (this.closed) return;
    if (this.waitKeyframe && !f.keyframe) {
      this.peer.requestKeyframe('waiting for keyframe');
      return;
    }
    if (this.decoder.pendingCount >= MAX_DECODES_IN_FLIGHT) {
      // The decoder cannot keep up; skipping frames breaks the reference chain, so resync on a keyframe.
      this.stats.droppedFrame();
      this.waitKeyframe = true;
      this.stats.keyframeRequested();
      this.peer.requestKeyframe('decoder overloaded');
      return;
    }
    this.waitKeyframe = false;
    const t0 = performance.now();
    this.decoder.decode(f.data, f.arrival).then(
      (frame) => {
        if (!frame || this.closed) return;
        this.stats.decoded(performance.now() - t0, frame.width, frame.height);
        this.acceptDecoded({ frame, index: this.frameIndex++, arrival: f.arrival, rtpTimestamp: f.rtpTimestamp });
      },
      (err: Error) => {
        if (this.closed) return;
        if (err instanceof CodecError && err.kind === 'worker_failed') this.restartDecoder(err.message);
        this.stats.decodeError();
        this.stats.keyframeRequested();
        this.waitKeyframe = true;
        this.log.debug({ err: err.message }, 'decode error; waiting for a keyframe');
        this.peer.requestKeyframe('decode error');
      },
    );
  }

  /** Frame-rate cap: output follows the input rate, but never above maxFps. */
  private acceptDecoded(item: LoopItem): void {
    // Paused: the decoder keeps its reference chain, but nothing new is rendered; the last output is held.
    if (this.paused) return;
    // Spacing is read on the sender's capture clock (RTP, 90 kHz), not on arrival: network jitter
    // bunches arrivals together, and a 30 fps stream must not lose frames to a 30 fps cap.
    if (this.lastAcceptedRtp !== undefined) {
      const gap = (item.rtpTimestamp - this.lastAcceptedRtp) >>> 0;
      const minGap = (RTP_CLOCK / this.output.maxFps) * 0.85;
      // A gap of more than 10 s is a timestamp reset or wrap, not a fast sender.
      if (gap < minGap && gap < RTP_CLOCK * 10) {
        this.stats.droppedFrame();
        return;
      }
    }
    this.lastAcceptedRtp = item.rtpTimestamp;
    this.renderSlot.offer(item);
  }

  private async renderStep(item: LoopItem): Promise<void> {
    const t0 = performance.now();
    const { frame, faceFound, backgroundMs } = await this.render.render(item.frame, item.index);
    this.stats.rendered(performance.now() - t0, faceFound, backgroundMs);
    if (this.closed) return;
    // The encoder copies its input, so the rendered frame can be kept as the held output.
    this.lastOutput = { frame, rtpTimestamp: item.rtpTimestamp, at: performance.now() };
    if (this.hasAudience) this.encodeSlot.offer({ ...item, frame });
  }

  private async encodeStep(item: LoopItem): Promise<void> {
    if (!this.hasAudience) return;
    const encoder = await this.ensureEncoder();
    if (encoder.settings.fps !== this.output.maxFps) await encoder.reconfigure({ width: item.frame.width, height: item.frame.height, fps: this.output.maxFps });
    let keyframe = this.forceKeyframe;
    for (const v of this.viewers.values()) if (v.wantsKeyframe) keyframe = true;
    this.forceKeyframe = false;
    const t0 = performance.now();
    const encoded = await encoder.encode(item.frame, { keyframe }).catch((err: Error) => {
      if (err instanceof CodecError && err.kind === 'worker_failed') this.dropEncoder(err.message);
      throw err;
    });
    const encodeMs = performance.now() - t0;
    if (this.closed) return;
    // One encode, fanned out: the same VP8 frame goes to the sender (sendrecv) and every viewer.
    if (this.peer.sendsBack) this.peer.sendFrame(encoded.data, item.rtpTimestamp);
    for (const v of this.viewers.values()) v.sendFrame(encoded.data, item.rtpTimestamp, encoded.keyframe);
    this.stats.sent(encodeMs, performance.now() - item.arrival);
  }

  /** A dead decoder worker is replaced; the stream resumes at the sender's next keyframe. */
  private restartDecoder(reason: string): void {
    if (this.decoderRestarting) return;
    this.log.warn({ reason }, 'decoder worker restarted');
    metrics.workerRestarts.inc({ worker: 'decoder' });
    const old = this.decoder;
    this.decoderRestarting = Vp8Decoder.create()
      .then((d) => {
        if (this.closed) return d.close();
        this.decoder = d;
      })
      .catch((err: Error) => this.close(`decoder worker could not be restarted: ${err.message}`))
      .finally(() => (this.decoderRestarting = undefined));
    void old.close();
  }

  /** A dead encoder worker is dropped; the next frame starts a new one, with a keyframe. */
  private dropEncoder(reason: string): void {
    this.log.warn({ reason }, 'encoder worker restarted');
    metrics.workerRestarts.inc({ worker: 'encoder' });
    void this.encoder?.close();
    this.encoder = undefined;
    this.encoderStarting = undefined;
    this.forceKeyframe = true;
  }

  private ensureEncoder(): Promise<Vp8Encoder> {
    if (this.encoder) return Promise.resolve(this.encoder);
    this.encoderStarting ??= Vp8Encoder.create({
      width: this.output.width,
      height: this.output.height,
      fps: this.output.maxFps,
      bitrate: this.config.bitrate,
    }).then((e) => (this.encoder = e));
    return this.encoderStarting;
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

  /** Switches the portrait without renegotiating: the render worker prepares it, the next frame uses it. */
  setPortrait(portraitId: string, portrait: RgbaImage): Promise<void> {
    return this.serial(async () => {
      this.assertLive();
      await this.render.setPortrait(portrait);
      this.portrait = portrait;
      this.portraitId = portraitId;
      this.log.info({ portrait: portraitId }, 'portrait switched');
      this.changed();
    });
  }

  /** Switches the renderer: the render worker loads the new one (and the portrait) and only then drops the old one. */
  setRenderer(name: RendererName): Promise<void> {
    if (!(RENDERER_NAMES as readonly string[]).includes(name)) {
      return Promise.reject(new XplError('renderer_unavailable', `unknown renderer "${name}": choose one of ${RENDERER_NAMES.join(', ')}`));
    }
    return this.serial(async () => {
      this.assertLive();
      if (name === 'xportrait-lcm' && !this.config.pack) throw new XplError('renderer_unavailable', 'the xportrait-lcm renderer needs a model pack: start the server with --pack DIR');
      await this.render.init({ renderer: name, options: { ...this.outputSize, pack: this.config.pack }, portrait: this.portrait });
      const old = this.renderer;
      this.renderer = name;
      metrics.sessions.dec({ renderer: old });
      metrics.sessions.inc({ renderer: name });
      this.log.info({ from: old, to: name }, 'renderer switched');
      this.changed();
    });
  }

  /** Output size and frame-rate cap: the render worker re-creates its buffers (and renderer) for the size; the encoder follows the frames. */
  setOutput(next: Partial<OutputSettings>): Promise<OutputSettings> {
    return this.serial(async () => {
      this.assertLive();
      const out = { ...this.output, ...next };
      if (!(out.width >= 64 && out.height >= 64 && out.width <= 1920 && out.height <= 1920 && out.width % 2 === 0 && out.height % 2 === 0)) {
        throw new XplError('bad_request', 'output width and height must be even and 64..1920');
      }
      if (!(Number.isInteger(out.maxFps) && out.maxFps >= 1 && out.maxFps <= 60)) throw new XplError('bad_request', 'maxFps must be an integer 1..60');
      if (out.width !== this.output.width || out.height !== this.output.height) {
        await this.render.init({ renderer: this.renderer, options: { outputWidth: out.width, outputHeight: out.height, pack: this.config.pack }, portrait: this.portrait });
        this.forceKeyframe = true;
      }
      this.output = out;
      this.changed();
      return { ...out };
    });
  }

  /** Render parameters (validated by the caller) and the background mode. Values persist across renderer switches. */
  async setParams(params: Partial<SessionParams>): Promise<Partial<SessionParams>> {
    this.assertLive();
    const renderParams = renderOnly(params);
    if (params.audio !== undefined) this.audio.enabled = params.audio;
    if (Object.keys(renderParams).length) await this.render.setParams(renderParams);
    this.params = { ...this.params, ...params };
    this.changed();
    return { ...this.params };
  }

  recalibrate(): Promise<boolean> {
    this.assertLive();
    return this.render.reset();
  }

  /** Stops rendering new frames and holds the last output (re-sent every 500 ms so late viewers see it). */
  pause(): void {
    this.assertLive();
    if (this.paused) return;
    this.paused = true;
    this.holdTimer = setInterval(() => this.resendHeld(), HOLD_INTERVAL_MS);
    this.log.info('paused');
    this.changed();
  }

  resume(): void {
    this.assertLive();
    if (!this.paused) return;
    this.paused = false;
    clearInterval(this.holdTimer);
    this.holdTimer = undefined;
    this.log.info('resumed');
    this.changed();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  private resendHeld(): void {
    const last = this.lastOutput;
    if (!last || this.closed || !this.hasAudience) return;
    const now = performance.now();
    // RTP time keeps running at 90 kHz while the picture is held.
    const rtpTimestamp = (last.rtpTimestamp + Math.round((now - last.at) * 90)) >>> 0;
    this.lastOutput = { ...last, rtpTimestamp, at: now };
    this.encodeSlot.offer({ frame: last.frame, index: -1, arrival: now, rtpTimestamp });
  }

  /** Adds a WHEP viewer (recvonly offer → answer). The encoder is shared: it runs once per session whatever the number of viewers. */
  async addViewer(offerSdp: string): Promise<ViewerPeer> {
    this.assertLive();
    if (this.viewers.size >= this.config.maxViewers) {
      throw new XplError('too_many_sessions', `the session has its limit of ${this.config.maxViewers} viewers`, { retryAfter: 5 });
    }
    const v = await ViewerPeer.answer(randomUUID(), offerSdp, { ...connectionOptions(this.config), audio: this.audio, log: this.log });
    if (this.closed) {
      await v.close();
      throw new XplError('not_found', `no session ${this.id}`);
    }
    v.onKeyframeRequest = () => {
      this.forceKeyframe = true;
    };
    v.onGone = (reason) => void this.removeViewer(v.id, reason).catch(() => {});
    this.viewers.set(v.id, v);
    this.forceKeyframe = true;
    this.log.info({ viewer: v.id, viewers: this.viewers.size }, 'viewer added');
    // A paused session re-sends its held frame at once for the newcomer.
    if (this.paused) this.resendHeld();
    this.changed();
    return v;
  }

  async removeViewer(viewerId: string, reason = 'closed by client'): Promise<void> {
    const v = this.viewers.get(viewerId);
    if (!v) throw new XplError('not_found', `no viewer ${viewerId} on session ${this.id}`);
    this.viewers.delete(viewerId);
    await v.close();
    this.log.info({ viewer: viewerId, reason, viewers: this.viewers.size }, 'viewer removed');
    this.changed();
  }

  /** The figures of a stats event: rates, latency, drops, face found and per-stage ms. */
  statsEvent(): StatsEvent {
    return this.stats.event({ width: this.output.width, height: this.output.height }, this.paused);
  }

  addRemoteCandidates(fragment: string): Promise<number> {
    return this.peer.addRemoteCandidates(fragment);
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
      stats: this.stats.snapshot({ width: this.output.width, height: this.output.height }),
      audio: this.audio.info(),
    };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Idempotent: releases the peer and every worker; safe to call from any failure path. */
  async close(reason = 'closed'): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.holdTimer);
    this.audio.close();
    this.renderSlot.stop();
    this.encodeSlot.stop();
    this.log.info({ reason, stats: this.stats.snapshot({ width: this.output.width, height: this.output.height }) }, 'session closed');
    const viewers = [...this.viewers.values()];
    this.viewers.clear();
    this.lastOutput = undefined;
    await Promise.allSettled([
      ...viewers.map((v) => v.close()),
      this.peer?.close(),
      this.decoder?.close(),
      this.encoderStarting?.then((e) => e.close()),
      this.render.close(),
    ]);
    this.onClosed(this, reason);
  }
}

/** The params the render worker takes: all but the session's own (audio). */
function renderOnly({ audio: _audio, ...render }: Partial<SessionParams>): Partial<SessionParams> {
  return render;
}

export function assertOpen(s: Session | undefined, id: string): Session {
  if (!s || s.isClosed) throw new XplError('not_found', `no session ${id}`);
  return s;
}
