/**
 * A session: one peer, one portrait, one renderer, one frame loop. It owns every resource it
 * creates (peer connection, codec workers, render worker) and close() releases all of them.
 *
 * Frame loop: ingest → decode (every frame: VP8 frames depend on each other) → [render slot] →
 * [encode slot] → RTP out. The two slots are latest-frame-wins, so overload drops frames
 * instead of delaying them.
 */
import { randomUUID } from 'node:crypto';
import type { Config, RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Vp8Decoder, Vp8Encoder } from '../media/codec.ts';
import type { I420Frame, RgbaImage } from '../media/frame.ts';
import type { RenderParams } from '../renderers/types.ts';
import { Peer, type IngestFrame } from '../rtc/peer.ts';
import { inspectOffer } from '../rtc/sdp.ts';
import { RpcClient } from '../workers/rpc.ts';
import { LatestSlot } from './latest-slot.ts';
import type { RenderMethods } from './render-worker.ts';
import { StatsCollector, type SessionStats } from './stats.ts';

/** Decodes allowed in flight before ingest is declared overloaded and resynchronised on a keyframe. */
const MAX_DECODES_IN_FLIGHT = 8;

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
  state: 'active' | 'closed';
  sendsBack: boolean;
  stats: SessionStats;
}

export class Session {
  readonly id = randomUUID();
  readonly createdAt = new Date();
  readonly stats = new StatsCollector();
  renderer: RendererName;
  portraitId: string;
  onClosed: (s: Session, reason: string) => void = () => {};

  private peer!: Peer;
  private decoder!: Vp8Decoder;
  private encoder?: Vp8Encoder;
  private encoderStarting?: Promise<Vp8Encoder>;
  private readonly render: RpcClient<RenderMethods>;
  private readonly renderSlot: LatestSlot<LoopItem>;
  private readonly encodeSlot: LatestSlot<LoopItem>;
  private readonly log: Logger;
  private readonly config: Config;
  private waitKeyframe = true;
  private forceKeyframe = true;
  private frameIndex = 0;
  private lastAccepted = -Infinity;
  private closed = false;

  private constructor(init: SessionInit) {
    this.renderer = init.renderer;
    this.portraitId = init.portraitId;
    this.config = init.config;
    this.log = init.log.child({ session: this.id });
    this.render = new RpcClient<RenderMethods>(new URL('./render-worker.ts', import.meta.url), 'render');
    this.render.onCrash = (err) => void this.close(`render worker crashed: ${err.message}`);
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
      await s.render.call('init', { renderer: init.renderer, options: { outputWidth, outputHeight, pack: init.config.pack }, portrait: init.portrait });
      s.decoder = await Vp8Decoder.create();
      s.peer = await Peer.answer(init.offerSdp, {
        iceAddresses: init.config.iceAddresses,
        disconnectTimeout: init.config.iceDisconnectTimeout,
        log: s.log,
      }, offer);
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
    return { outputWidth: this.config.output.width, outputHeight: this.config.output.height };
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
    const minGap = (1000 / this.config.maxFps) * 0.85;
    if (item.arrival - this.lastAccepted < minGap) {
      this.stats.droppedFrame();
      return;
    }
    this.lastAccepted = item.arrival;
    this.renderSlot.offer(item);
  }

  private async renderStep(item: LoopItem): Promise<void> {
    const t0 = performance.now();
    const { frame, faceFound } = await this.render.call('render', { frame: item.frame, index: item.index }, [item.frame.data.buffer as ArrayBuffer]);
    this.stats.rendered(performance.now() - t0, faceFound);
    if (this.closed) return;
    if (this.peer.sendsBack) this.encodeSlot.offer({ ...item, frame });
  }

  private async encodeStep(item: LoopItem): Promise<void> {
    const encoder = await this.ensureEncoder();
    const keyframe = this.forceKeyframe;
    this.forceKeyframe = false;
    const t0 = performance.now();
    const encoded = await encoder.encode(item.frame, { keyframe });
    const encodeMs = performance.now() - t0;
    if (this.closed) return;
    this.peer.sendFrame(encoded.data, item.rtpTimestamp);
    this.stats.sent(encodeMs, performance.now() - item.arrival);
  }

  private ensureEncoder(): Promise<Vp8Encoder> {
    if (this.encoder) return Promise.resolve(this.encoder);
    this.encoderStarting ??= Vp8Encoder.create({
      width: this.config.output.width,
      height: this.config.output.height,
      fps: this.config.maxFps,
      bitrate: this.config.bitrate,
    }).then((e) => (this.encoder = e));
    return this.encoderStarting;
  }

  addRemoteCandidates(fragment: string): Promise<number> {
    return this.peer.addRemoteCandidates(fragment);
  }

  setParams(params: Partial<RenderParams>): Promise<boolean> {
    return this.render.call('setParams', params);
  }

  recalibrate(): Promise<boolean> {
    return this.render.call('reset', undefined);
  }

  info(): SessionInfo {
    return {
      id: this.id,
      renderer: this.renderer,
      portraitId: this.portraitId,
      createdAt: this.createdAt.toISOString(),
      state: this.closed ? 'closed' : 'active',
      sendsBack: this.peer?.sendsBack ?? false,
      stats: this.stats.snapshot({ width: this.config.output.width, height: this.config.output.height }),
    };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Idempotent: releases the peer and every worker; safe to call from any failure path. */
  async close(reason = 'closed'): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.renderSlot.stop();
    this.encodeSlot.stop();
    this.log.info({ reason, stats: this.stats.snapshot({ width: this.config.output.width, height: this.config.output.height }) }, 'session closed');
    await Promise.allSettled([
      this.peer?.close(),
      this.decoder?.close(),
      this.encoderStarting?.then((e) => e.close()),
      this.render.close(),
    ]);
    this.onClosed(this, reason);
  }
}

export function assertOpen(s: Session | undefined, id: string): Session {
  if (!s || s.isClosed) throw new XplError('not_found', `no session ${id}`);
  return s;
}
