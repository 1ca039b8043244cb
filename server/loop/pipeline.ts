/**
 * The frame loop inside a session's loop worker, top to bottom:
 *
 *   driving frame (encoded, from the main thread)
 *     → rate cap    (rate-cap.ts: at most maxFps and the frame budget's cap, on the sender's clock;
 *                    decided on arrival, so the decoder can skip the layer frames it refused)
 *     → decode      (decode.ts: bounded backlog, temporal-layer skipping)
 *     → [render slot] → render + background (render.ts)
 *     → [encode slot] → encode (encode.ts: one encoder, forced keyframes)
 *   encoded frame (to the main thread, which fans it out)
 *
 * The two slots are latest-frame-wins (latest-slot.ts): when a stage is busy a newer frame
 * replaces the waiting one, so overload costs frame rate, never latency. Pictures never leave this
 * thread; only encoded frames cross to the main thread.
 */
import type { CodecBackend, VideoCodec, VideoDecoder, VideoEncoder } from '../media/codec.ts';
import type { I420Frame } from '../media/frame.ts';
import { DecodeStage, type EncodedInput } from './decode.ts';
import { EncodeStage, type EncodeSettings } from './encode.ts';
import { LatestSlot } from './latest-slot.ts';
import type { FromWorker, ToWorker } from './messages.ts';
import { RateCap } from './rate-cap.ts';
import type { RenderStage } from './render.ts';

/** While paused, the held output is re-sent this often, so viewers joining then get a picture. */
const HOLD_INTERVAL_MS = 500;

interface Decoded {
  frame: I420Frame;
  index: number;
  rtp: number;
  arrival: number;
  decodeMs: number;
}

interface Rendered extends Decoded {
  renderMs: number;
  backgroundMs: number;
  held: boolean;
}

export interface PipelineOptions {
  codec: CodecBackend;
  output: EncodeSettings;
  /** A render that takes longer is reported as stalled (the main thread replaces this worker). */
  renderTimeoutMs: number;
  codecs: { ingest: VideoCodec; egress: VideoCodec };
  /** Codecs a warm worker opened ahead of the session (used when they are of the session's codecs). */
  warm?: { decoder?: VideoDecoder; encoder?: VideoEncoder };
  send: (msg: FromWorker, transfer?: ArrayBuffer[]) => void;
}

export class LoopPipeline {
  private readonly decode: DecodeStage;
  private readonly rate: RateCap;
  private readonly encoder: EncodeStage;
  private readonly renderSlot: LatestSlot<Decoded>;
  private readonly encodeSlot: LatestSlot<Rendered>;
  private maxFps: number;
  private index = 0;
  private audience = false;
  private paused = false;
  private holdTimer?: NodeJS.Timeout;
  /** The last output, kept for pauses and late viewers. */
  private lastOut?: Rendered & { at: number };
  private readonly send: PipelineOptions['send'];
  private readonly renderTimeoutMs: number;

  constructor(
    private readonly renderer: RenderStage,
    opts: PipelineOptions,
  ) {
    this.send = opts.send;
    this.renderTimeoutMs = opts.renderTimeoutMs;
    this.maxFps = opts.output.fps;
    this.rate = new RateCap(opts.output.fps);
    this.decode = new DecodeStage(opts.codec, {
      picture: (frame, input, ms) => this.decoded(frame, input, ms),
      dropped: () => this.send({ t: 'dropped', stage: 'decode' }),
      needKeyframe: (reason, error) => this.send({ t: 'need-keyframe', reason, error }),
      restarted: (reason) => this.send({ t: 'codec-restart', codec: 'decoder', reason }),
    }, opts.codecs.ingest, opts.warm?.decoder);
    this.encoder = new EncodeStage(opts.codec, opts.codecs.egress, opts.output, (reason) => this.send({ t: 'codec-restart', codec: 'encoder', reason }), opts.warm?.encoder);
    this.renderSlot = new LatestSlot((d) => this.renderStep(d), () => this.send({ t: 'dropped', stage: 'render' }));
    this.encodeSlot = new LatestSlot((r) => this.encodeStep(r), () => this.send({ t: 'dropped', stage: 'encode' }));
  }

  /** Starts the codecs ahead of the first frame. */
  async open(): Promise<void> {
    await Promise.all([this.decode.open(), this.encoder.open()]);
  }

  /** A message from the main thread's media port. */
  receive(msg: ToWorker): void {
    switch (msg.t) {
      case 'frame': {
        // The rate cap decides on arrival, in order: the decoder then skips the enhancement-layer
        // frames it refused, and how long decoding takes cannot change which frames those are.
        const keep = !this.paused && this.rate.accept(msg.rtp, msg.tid);
        this.decode.push({ data: new Uint8Array(msg.data), keyframe: msg.keyframe, tid: msg.tid, rtp: msg.rtp, arrival: msg.arrival, keep });
        break;
      }
      case 'keyframe':
        this.encoder.requestKeyframe();
        if (this.paused) this.resendHeld();
        break;
      case 'budget':
        this.rate.fps = Math.min(this.maxFps, msg.fps);
        break;
      case 'audience':
        this.audience = msg.on;
        break;
      case 'pause':
        this.setPaused(msg.on);
        break;
    }
  }

  // 1. decoded → render slot, unless the rate cap refused it on arrival
  private decoded(frame: I420Frame, input: EncodedInput, decodeMs: number): void {
    this.send({ t: 'decoded', ms: decodeMs, width: frame.width, height: frame.height });
    // Paused: the decoder keeps its reference chain, but nothing new is rendered.
    if (this.paused) return;
    if (!input.keep) {
      this.send({ t: 'dropped', stage: 'rate' });
      return;
    }
    this.renderSlot.offer({ frame, index: this.index++, rtp: input.rtp, arrival: input.arrival, decodeMs });
  }

  // 2. render → encode slot
  private async renderStep(d: Decoded): Promise<void> {
    const t0 = performance.now();
    const stalled = setTimeout(() => this.send({ t: 'stalled', ms: performance.now() - t0 }), this.renderTimeoutMs);
    const r = await this.renderer.render(d.frame, d.index).finally(() => clearTimeout(stalled));
    this.send({ t: 'rendered', renderMs: r.renderMs, backgroundMs: r.backgroundMs, faceFound: r.faceFound });
    const out: Rendered = { ...d, frame: r.frame, renderMs: r.renderMs, backgroundMs: r.backgroundMs, held: false };
    this.lastOut = { ...out, at: performance.now() };
    if (this.audience) this.encodeSlot.offer(out);
  }

  // 3. encode → main thread
  private async encodeStep(r: Rendered): Promise<void> {
    if (!this.audience) return;
    const t0 = performance.now();
    const encoded = await this.encoder.encode(r.frame);
    const encodeMs = performance.now() - t0;
    const data = encoded.data.byteOffset === 0 && encoded.data.byteLength === encoded.data.buffer.byteLength ? encoded.data.buffer : encoded.data.slice().buffer;
    this.send(
      {
        t: 'out',
        data: data as ArrayBuffer,
        keyframe: encoded.keyframe,
        rtp: r.rtp,
        arrival: r.arrival,
        times: { decodeMs: r.decodeMs, renderMs: r.renderMs, backgroundMs: r.backgroundMs, encodeMs },
        held: r.held,
      },
      [data as ArrayBuffer],
    );
  }

  /** The codecs' child processes (native backend). */
  processes(): { decoder: number[]; encoder: number[] } {
    return { decoder: this.decode.pids, encoder: this.encoder.pids };
  }

  /** New output size (the renderer was re-created at it) or frame-rate cap. */
  setOutput(o: { width: number; height: number; maxFps: number }): void {
    // The main thread's frame budget starts again from the new cap.
    this.maxFps = o.maxFps;
    this.rate.fps = o.maxFps;
    this.encoder.configure({ width: o.width, height: o.height, fps: o.maxFps });
    this.encoder.requestKeyframe();
    this.lastOut = undefined;
  }

  private setPaused(on: boolean): void {
    if (on === this.paused) return;
    this.paused = on;
    clearInterval(this.holdTimer);
    this.holdTimer = on ? setInterval(() => this.resendHeld(), HOLD_INTERVAL_MS) : undefined;
  }

  /** Re-sends the held output with RTP time running on, so a paused session keeps a picture. */
  private resendHeld(): void {
    const last = this.lastOut;
    if (!last || !this.audience) return;
    const now = performance.now();
    const elapsedMs = now - last.at;
    const rtp = (last.rtp + Math.round(elapsedMs * 90)) >>> 0;
    this.lastOut = { ...last, rtp, at: now };
    // The arrival carried back is the main thread's; shifting it by the time held keeps the latency figures honest.
    this.encodeSlot.offer({ ...last, rtp, arrival: last.arrival + elapsedMs, held: true });
  }

  async close(): Promise<void> {
    clearInterval(this.holdTimer);
    // A render still running is awaited: the worker frees the renderer's native sessions next.
    await Promise.all([this.renderSlot.stop(), this.encodeSlot.stop()]);
    await Promise.all([this.decode.close(), this.encoder.close()]);
  }
}
