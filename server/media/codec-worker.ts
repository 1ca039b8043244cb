/**
 * The wasm codec worker: one libvpx VP8 decoder or encoder (libav.js, WebAssembly,
 * single-threaded build) on its own thread, so codec time never blocks the event loop. Only
 * wasm-codec.ts talks to it, through workers/rpc.ts; calls are served strictly in arrival order.
 * A codec failure replies an error whose details carry the CodecErrorKind.
 */
import { parentPort } from 'node:worker_threads';
import { XplError } from '../errors.ts';
import { serveRpc, withTransfer } from '../workers/rpc.ts';
import type { CodecErrorKind, EncoderSettings } from './codec.ts';
import { i420Size } from './frame.ts';
import { parseVp8Header, Vp8HeaderError } from './vp8.ts';

/** A decoded picture, tightly packed I420 with even dimensions. */
export interface Picture {
  width: number;
  height: number;
  data: ArrayBuffer;
}

class Failure extends Error {
  constructor(
    readonly kind: CodecErrorKind,
    message: string,
  ) {
    super(message);
  }
}

/** The synchronous libav.js functions this worker uses (the package's own typings are promise-based). */
interface Libav {
  HEAPU8: Uint8Array;
  av_log_set_level_sync(level: number): void;
  ff_error_sync(code: number): string;
  ff_init_decoder_sync(name: string): [number, number, number, number];
  ff_free_decoder_sync(ctx: number, pkt: number, frame: number): void;
  ff_init_encoder_sync(
    name: string,
    opts: { ctx: Record<string, number>; time_base: [number, number]; options: Record<string, string> },
  ): [number, number, number, number, number];
  ff_free_encoder_sync(ctx: number, frame: number, pkt: number): void;
  ff_copyin_packet_sync(pkt: number, packet: { data: Uint8Array }): void;
  avcodec_send_packet_sync(ctx: number, pkt: number): number;
  avcodec_receive_frame_sync(ctx: number, frame: number): number;
  avcodec_send_frame_sync(ctx: number, frame: number): number;
  avcodec_receive_packet_sync(ctx: number, pkt: number): number;
  av_packet_unref_sync(pkt: number): void;
  av_frame_unref_sync(frame: number): void;
  av_frame_get_buffer_sync(frame: number, align: number): number;
  av_frame_make_writable_sync(frame: number): number;
  AVFrame_data_a_sync(frame: number, plane: number): number;
  AVFrame_linesize_a_sync(frame: number, plane: number): number;
  AVFrame_width_sync(frame: number): number;
  AVFrame_height_sync(frame: number): number;
  AVFrame_format_sync(frame: number): number;
  AVFrame_format_s_sync(frame: number, v: number): void;
  AVFrame_width_s_sync(frame: number, v: number): void;
  AVFrame_height_s_sync(frame: number, v: number): void;
  AVFrame_pts_s_sync(frame: number, lo: number): void;
  AVFrame_ptshi_s_sync(frame: number, hi: number): void;
  AVFrame_duration_s_sync(frame: number, v: number): void;
  AVFrame_pict_type_s_sync(frame: number, v: number): void;
  AVPacket_data_sync(pkt: number): number;
  AVPacket_size_sync(pkt: number): number;
  AVPacket_flags_sync(pkt: number): number;
}

const AV_LOG_QUIET = -8;
const AV_PIX_FMT_YUV420P = 0;
const AV_PICTURE_TYPE_NONE = 0;
const AV_PICTURE_TYPE_I = 1;
const AV_PKT_FLAG_KEY = 1;
const AVERROR_EAGAIN = -6;
const AVERROR_EOF = -541478725;

async function loadLibav(): Promise<Libav> {
  // The package's front end finds its .wasm.mjs factory and .wasm next to itself, by
  // import.meta.url and a file read, which works in Node and in Deno alike. `noworker`: we are
  // already off the main thread, and in Deno (which has a global Worker) it would otherwise start a
  // second, web-style worker. `nothreads`: the pthread build needs SharedArrayBuffer and its own
  // worker pool; one codec per worker thread is the parallelism we want.
  const mod = (await import('@libav.js/variant-webm-vp9')) as { default: { LibAV(opts: object): Promise<unknown> } };
  const lib = (await mod.default.LibAV({ noworker: true, nothreads: true })) as Libav;
  // Errors reach the caller as results; libav's own log would only add noise to the server log.
  lib.av_log_set_level_sync(AV_LOG_QUIET);
  return lib;
}

/** The header check shared with the native decoder, as this worker's Failure. */
function checkVp8Header(data: Uint8Array): { keyframe: boolean } {
  try {
    return parseVp8Header(data);
  } catch (err) {
    if (err instanceof Vp8HeaderError) throw new Failure(err.kind, err.message);
    throw err;
  }
}

class Decoder {
  private ctx = 0;
  private pkt = 0;
  private frame = 0;
  /**
   * After a corrupt frame (or before the first keyframe) inter frames would decode against missing
   * or damaged references into garbage that looks valid, so they are refused until a keyframe
   * resets the references; the error tells the caller to ask the sender for one.
   */
  private awaitingKeyframe = true;

  constructor(private readonly lib: Libav) {
    this.open();
  }

  private open(): void {
    [, this.ctx, this.pkt, this.frame] = this.lib.ff_init_decoder_sync('libvpx');
  }

  decode(data: Uint8Array): Picture | null {
    let header: { keyframe: boolean };
    try {
      header = checkVp8Header(data);
    } catch (err) {
      // The frame is lost, and later inter frames may refer to it.
      this.awaitingKeyframe = true;
      throw err;
    }
    if (!header.keyframe && this.awaitingKeyframe) throw new Failure('awaiting_keyframe', 'VP8 inter frame dropped: waiting for a keyframe');
    try {
      const picture = this.run(data);
      if (header.keyframe) this.awaitingKeyframe = false;
      return picture;
    } catch (err) {
      if (!(err instanceof Failure)) throw err;
      // libvpx may keep state from a frame it half-decoded; a fresh context guarantees that the
      // next keyframe starts clean.
      this.lib.ff_free_decoder_sync(this.ctx, this.pkt, this.frame);
      this.open();
      this.awaitingKeyframe = true;
      throw err;
    }
  }

  private run(data: Uint8Array): Picture | null {
    const { lib } = this;
    lib.ff_copyin_packet_sync(this.pkt, { data });
    let ret = lib.avcodec_send_packet_sync(this.ctx, this.pkt);
    lib.av_packet_unref_sync(this.pkt);
    if (ret < 0) throw new Failure('corrupt_frame', `VP8 decode failed: ${lib.ff_error_sync(ret)}`);
    let picture: Picture | null = null;
    for (;;) {
      ret = lib.avcodec_receive_frame_sync(this.ctx, this.frame);
      if (ret === AVERROR_EAGAIN || ret === AVERROR_EOF) break;
      if (ret < 0) throw new Failure('corrupt_frame', `VP8 decode failed: ${lib.ff_error_sync(ret)}`);
      // VP8 has no reordering: at most one picture per frame; keep the last in any case.
      try {
        picture = this.copyOut();
      } finally {
        lib.av_frame_unref_sync(this.frame);
      }
    }
    return picture;
  }

  /** Copies the decoded picture out of the wasm heap, dropping a last odd column/row (I420 frames have even sizes). */
  private copyOut(): Picture {
    const { lib, frame } = this;
    if (lib.AVFrame_format_sync(frame) !== AV_PIX_FMT_YUV420P) throw new Failure('corrupt_frame', 'VP8 decoder produced a non-I420 picture');
    const width = lib.AVFrame_width_sync(frame) & ~1;
    const height = lib.AVFrame_height_sync(frame) & ~1;
    const data = new Uint8Array(i420Size(width, height));
    const heap = lib.HEAPU8;
    let o = 0;
    for (let p = 0; p < 3; p++) {
      const base = lib.AVFrame_data_a_sync(frame, p);
      const stride = lib.AVFrame_linesize_a_sync(frame, p);
      const w = p === 0 ? width : width >> 1;
      const h = p === 0 ? height : height >> 1;
      if (stride === w) {
        data.set(heap.subarray(base, base + w * h), o);
        o += w * h;
      } else {
        for (let y = 0; y < h; y++, o += w) data.set(heap.subarray(base + y * stride, base + y * stride + w), o);
      }
    }
    return { width, height, data: data.buffer };
  }
}

class Encoder {
  private ctx = 0;
  private frame = 0;
  private pkt = 0;
  private settings?: EncoderSettings;
  /** Why the latest configure failed, for the encodes that follow it. */
  private configureError = 'encoder is not configured';
  private firstTimestamp = 0;
  private lastPts = -1;

  constructor(private readonly lib: Libav) {}

  configure(s: EncoderSettings): void {
    const cur = this.settings;
    if (cur && (Object.keys(s) as (keyof EncoderSettings)[]).every((k) => s[k] === cur[k])) return;
    this.close();
    const { lib } = this;
    const bitrate = String(Math.round(s.bitrate));
    try {
      [, this.ctx, this.frame, this.pkt] = lib.ff_init_encoder_sync('libvpx', {
        ctx: { width: s.width, height: s.height, pix_fmt: AV_PIX_FMT_YUV420P, framerate_num: Math.round(s.fps * 1000), framerate_den: 1000 },
        // Milliseconds: the callers' clock. pts are rebased to the first frame.
        time_base: [1, 1000],
        options: {
          deadline: 'realtime',
          'cpu-used': String(s.cpuUsed),
          // No look-ahead: every frame comes out of the call that put it in.
          'lag-in-frames': '0',
          'auto-alt-ref': '0',
          // Every frame's entropy coding starts from defaults, so a frame lost in the network does
          // not leave the following ones unparseable (their picture still shows the damage).
          'error-resilient': 'default',
          // minrate = maxrate = b selects constant bitrate, what a congestion-controlled link wants.
          b: bitrate,
          minrate: bitrate,
          maxrate: bitrate,
          bufsize: bitrate,
          // libavcodec's default qmax (31 of 63) stops the rate control from reaching low bitrates.
          // WebRTC stops at 56 but drops frames instead when even that is too big; this encoder
          // never drops frames, so it may use libvpx's whole range to stay within the bitrate.
          qmax: '63',
          g: String(Math.max(1, Math.round(s.fps * s.keyframeIntervalS))),
          threads: '1',
        },
      });
    } catch (err) {
      this.ctx = this.frame = this.pkt = 0;
      throw this.configureFailed(`could not open the VP8 encoder at ${s.width}×${s.height}: ${(err as Error).message}`);
    }
    lib.AVFrame_format_s_sync(this.frame, AV_PIX_FMT_YUV420P);
    lib.AVFrame_width_s_sync(this.frame, s.width);
    lib.AVFrame_height_s_sync(this.frame, s.height);
    const ret = lib.av_frame_get_buffer_sync(this.frame, 0);
    if (ret < 0) {
      this.close();
      throw this.configureFailed(`could not allocate a ${s.width}×${s.height} frame: ${lib.ff_error_sync(ret)}`);
    }
    this.settings = { ...s };
    this.lastPts = -1;
  }

  private configureFailed(message: string): Failure {
    this.configureError = message;
    return new Failure('codec_failed', message);
  }

  encode(req: { width: number; height: number; data: ArrayBuffer; timestamp: number; keyframe: boolean }): { data: ArrayBuffer; keyframe: boolean } {
    const s = this.settings;
    if (!s) throw new Failure('codec_failed', this.configureError);
    if (req.width !== s.width || req.height !== s.height) {
      throw new Failure('bad_frame', `frame is ${req.width}×${req.height} but the encoder is configured for ${s.width}×${s.height}`);
    }
    const { lib, frame } = this;
    // The encoder may still hold a reference to the previous buffer; this copies only if so.
    let ret = lib.av_frame_make_writable_sync(frame);
    if (ret < 0) throw new Failure('codec_failed', `frame buffer: ${lib.ff_error_sync(ret)}`);
    this.copyIn(new Uint8Array(req.data), s.width, s.height);

    // pts must increase strictly; real capture times (not a frame counter) let the rate control
    // see the actual frame rate when the renderer runs slower than `fps`.
    if (this.lastPts < 0) this.firstTimestamp = req.timestamp;
    const pts = Math.max(this.lastPts + 1, Math.round(req.timestamp - this.firstTimestamp));
    this.lastPts = pts;
    lib.AVFrame_pts_s_sync(frame, pts % 0x100000000 | 0);
    lib.AVFrame_ptshi_s_sync(frame, Math.floor(pts / 0x100000000));
    lib.AVFrame_duration_s_sync(frame, Math.max(1, Math.round(1000 / s.fps)));
    // libvpxenc turns an I picture type into VPX_EFLAG_FORCE_KF.
    lib.AVFrame_pict_type_s_sync(frame, req.keyframe ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE);

    ret = lib.avcodec_send_frame_sync(this.ctx, frame);
    if (ret < 0) throw new Failure('codec_failed', `VP8 encode failed: ${lib.ff_error_sync(ret)}`);
    const chunks: ArrayBuffer[] = [];
    let keyframe = false;
    for (;;) {
      ret = lib.avcodec_receive_packet_sync(this.ctx, this.pkt);
      if (ret === AVERROR_EAGAIN || ret === AVERROR_EOF) break;
      if (ret < 0) throw new Failure('codec_failed', `VP8 encode failed: ${lib.ff_error_sync(ret)}`);
      const ptr = lib.AVPacket_data_sync(this.pkt);
      chunks.push(lib.HEAPU8.slice(ptr, ptr + lib.AVPacket_size_sync(this.pkt)).buffer);
      keyframe ||= (lib.AVPacket_flags_sync(this.pkt) & AV_PKT_FLAG_KEY) !== 0;
      lib.av_packet_unref_sync(this.pkt);
    }
    // With no look-ahead and frame dropping off (libvpx's default), each frame yields exactly one packet.
    if (chunks.length !== 1) throw new Failure('codec_failed', `VP8 encoder returned ${chunks.length} packets for one frame`);
    return { data: chunks[0], keyframe };
  }

  private copyIn(src: Uint8Array, width: number, height: number): void {
    const { lib, frame } = this;
    const heap = lib.HEAPU8;
    let o = 0;
    for (let p = 0; p < 3; p++) {
      const base = lib.AVFrame_data_a_sync(frame, p);
      const stride = lib.AVFrame_linesize_a_sync(frame, p);
      const w = p === 0 ? width : width >> 1;
      const h = p === 0 ? height : height >> 1;
      if (stride === w) {
        heap.set(src.subarray(o, o + w * h), base);
        o += w * h;
      } else {
        for (let y = 0; y < h; y++, o += w) heap.set(src.subarray(o, o + w), base + y * stride);
      }
    }
  }

  close(): void {
    if (this.ctx) this.lib.ff_free_encoder_sync(this.ctx, this.frame, this.pkt);
    this.ctx = this.frame = this.pkt = 0;
    this.settings = undefined;
  }
}

let libav: Promise<Libav> | undefined;
let decoder: Decoder | undefined;
let encoder: Encoder | undefined;

/** Runs one codec step; a Failure becomes a typed reply, anything else ends the worker. */
async function step<T>(fn: (lib: Libav) => T): Promise<T> {
  libav ??= loadLibav();
  const lib = await libav;
  try {
    return fn(lib);
  } catch (err) {
    if (err instanceof Failure) throw new XplError('bad_request', err.message, { details: { kind: err.kind } });
    // Anything else (a wasm trap) may have left the codec's memory inconsistent: end the worker so
    // that the owner sees it as failed instead of trusting later results.
    setTimeout(() => {
      throw err;
    });
    throw new XplError('internal', (err as Error).message ?? String(err), { details: { kind: 'worker_failed' satisfies CodecErrorKind } });
  }
}

export const methods = {
  'decoder.open': () => step((lib) => void (decoder ??= new Decoder(lib))),
  decode: (a: { data: ArrayBuffer }) =>
    step(() => {
      if (!decoder) throw new Failure('codec_failed', 'decoder is not open');
      const t0 = performance.now();
      const picture = decoder.decode(new Uint8Array(a.data));
      return withTransfer({ picture, ms: performance.now() - t0 }, picture ? [picture.data] : []);
    }),
  'encoder.configure': (a: { settings: EncoderSettings }) =>
    step((lib) => {
      encoder ??= new Encoder(lib);
      encoder.configure(a.settings);
    }),
  encode: (a: { width: number; height: number; data: ArrayBuffer; timestamp: number; keyframe: boolean }) =>
    step(() => {
      if (!encoder) throw new Failure('codec_failed', 'encoder is not configured');
      const t0 = performance.now();
      const out = encoder.encode(a);
      // `input` is the request's buffer handed back, so the caller can reuse it for the next frame.
      return withTransfer({ ...out, input: a.data, ms: performance.now() - t0 }, [out.data, a.data]);
    }),
};

export type CodecMethods = typeof methods;

if (!parentPort) throw new Error('codec-worker.ts runs only as a worker thread (see wasm-codec.ts)');
serveRpc(parentPort, methods, { inOrder: true });
