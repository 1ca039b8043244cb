/**
 * The video codecs of the frame loop, behind one small interface with two backends:
 *
 * - `native`: ffmpeg child processes fed through pipes (ffmpeg-codec.ts) — the default wherever
 *   the executable passes its probe (ffmpeg.ts);
 * - `wasm`: libvpx compiled to WebAssembly in a worker thread (wasm-codec.ts) — the fallback that
 *   runs anywhere Node runs, at about 4× the CPU.
 *
 * Both decode whole frames (as the RTP assembler releases them) into I420 pictures and encode I420
 * frames, in call order — VP8 on both backends, H.264 (Annex B access units) on the native one; a failure is a CodecError whose `kind` tells the
 * frame loop what to do (ask the sender for a keyframe, drop the codec, …).
 */
import { XplError } from '../errors.ts';
import { assertI420, type EncodedFrame, type I420Frame } from './frame.ts';

/**
 * Why a call failed. The first four are about the input (the caller may go on: send a keyframe,
 * fix the frame or the settings); the others are about the codec or its process/worker.
 */
export type CodecErrorKind = 'corrupt_frame' | 'awaiting_keyframe' | 'bad_frame' | 'bad_settings' | 'codec_failed' | 'worker_failed' | 'closed';

const INPUT_KINDS: ReadonlySet<CodecErrorKind> = new Set(['corrupt_frame', 'awaiting_keyframe', 'bad_frame', 'bad_settings']);

/** A codec call failed; input problems carry code 'bad_request', the rest 'internal'. */
export class CodecError extends XplError {
  readonly kind: CodecErrorKind;

  constructor(kind: CodecErrorKind, message: string, opts: { cause?: unknown } = {}) {
    super(INPUT_KINDS.has(kind) ? 'bad_request' : 'internal', message, { details: { kind }, cause: opts.cause });
    this.name = 'CodecError';
    this.kind = kind;
  }
}

export type CodecBackendName = 'native' | 'wasm';

/** The video codecs the loop speaks: VP8 everywhere; H.264 with the native backend only (the wasm build has no H.264). */
export type VideoCodec = 'vp8' | 'h264';

/** Which codec the server runs, decided once at start (see server.ts). */
export type CodecBackend = { name: 'native'; ffmpegPath: string } | { name: 'wasm' };

export interface VideoDecoder {
  readonly backend: CodecBackendName;
  readonly codec: VideoCodec;
  /** Milliseconds of the latest completed decode, as the caller waited for it. */
  lastMs: number;
  /** Calls made and not yet answered. */
  readonly pendingCount: number;
  /**
   * Decodes one frame. With `transfer`, the caller gives `data`'s buffer away (the wasm backend
   * moves it to its worker instead of copying it). Resolves null for a
   * frame that produces no picture (a hidden frame). Rejects with a CodecError: 'corrupt_frame' for
   * undecodable data, 'bad_frame' for a keyframe over 4096 pixels on a side, 'awaiting_keyframe'
   * for an inter frame after either of those or before the first keyframe; the next keyframe
   * decodes normally. Pictures always have even dimensions (an odd last column or row is dropped).
   */
  decode(data: Uint8Array, timestamp: number, opts?: { transfer?: boolean }): Promise<I420Frame | null>;
  /** Gets ready for a first frame that has not come yet (the native backend starts its process). */
  prewarm(): void;
  /**
   * Called when the codec's process or worker dies (killed, crashed), whether or not a call was
   * waiting on it: the native backend starts a new process by itself, a wasm codec stays dead.
   */
  onLost: (reason: string) => void;
  /** Process ids of the codec's child processes (native backend), for CPU accounting and fault tests. */
  readonly pids: number[];
  /** Pending and later calls reject with a 'closed' CodecError. Idempotent. */
  close(): Promise<void>;
}

/** Everything that shapes the encoder; changing any of it restarts the encoder (next frame is a keyframe). */
export interface EncoderSettings {
  width: number;
  height: number;
  fps: number;
  /** Target bitrate, bits per second (constant bitrate). */
  bitrate: number;
  /** libvpx `cpu-used`, -16..16: larger |n| is faster; negative fixes the speed (VP8 only). */
  cpuUsed: number;
  /** Longest gap between automatic keyframes, seconds. */
  keyframeIntervalS: number;
}

export interface Vp8EncoderOptions {
  width: number;
  height: number;
  /** Nominal frame rate (default 30); it sets the per-frame bit budget. */
  fps?: number;
  /** Bits per second (default: 1.5 Mbps at 512², scaled with the picture area, see defaultBitrate). */
  bitrate?: number;
  /** libvpx speed, -16..16 (default per backend, see DEFAULT_CPU_USED). */
  cpuUsed?: number;
  /** Longest gap between automatic keyframes, seconds (default 10); `keyframe: true` forces one any time. */
  keyframeIntervalS?: number;
}

export interface VideoEncoder {
  readonly backend: CodecBackendName;
  readonly codec: VideoCodec;
  /** Milliseconds of the latest completed encode, as the caller waited for it. */
  lastMs: number;
  readonly pendingCount: number;
  readonly settings: Readonly<EncoderSettings>;
  /** Encodes one frame (`keyframe: true` makes it an intra frame); a frame of another size restarts the encoder at that size. */
  encode(frame: I420Frame, opts?: { keyframe?: boolean }): Promise<EncodedFrame>;
  /** Process ids of the codec's child processes (native backend), for CPU accounting and fault tests. */
  readonly pids: number[];
  /** As VideoDecoder.onLost. */
  onLost: (reason: string) => void;
  /** Changes size, frame rate or bitrate; the next frame is a keyframe. */
  reconfigure(opts: Vp8EncoderOptions): Promise<void>;
  close(): Promise<void>;
}

/**
 * libvpx speed per backend. Native: -8 costs ~1.5 ms a 512² frame at 1.5 Mbps with the picture
 * quality of a WebRTC sender (bench:codec). wasm: -16, libvpx's fastest, because at -8 one 512²
 * session would spend most of a core in the encoder; it pays ~3 dB of PSNR for that.
 */
export const DEFAULT_CPU_USED: Record<CodecBackendName, number> = { native: -8, wasm: -16 };

/** Default bitrate for a picture size: 1.5 Mbps at 512², growing with area^0.75 (larger pictures have more redundancy per pixel). */
export function defaultBitrate(width: number, height: number): number {
  return Math.round((1.5e6 * ((width * height) / (512 * 512)) ** 0.75) / 1000) * 1000;
}

/** VP8's frame header holds 14-bit dimensions. */
const VP8_MAX_DIMENSION = 16383;

export function resolveSettings(opts: Vp8EncoderOptions, backend: CodecBackendName): EncoderSettings {
  const { width, height } = opts;
  const bad = (what: string) => new CodecError('bad_settings', `VP8 encoder: ${what}`);
  const dimension = (n: number) => Number.isInteger(n) && n >= 2 && n <= VP8_MAX_DIMENSION && n % 2 === 0;
  if (!dimension(width) || !dimension(height)) throw bad(`size must be even, 2..${VP8_MAX_DIMENSION}, got ${width}×${height}`);
  const s: EncoderSettings = {
    width,
    height,
    fps: opts.fps ?? 30,
    bitrate: opts.bitrate ?? defaultBitrate(width, height),
    cpuUsed: opts.cpuUsed ?? DEFAULT_CPU_USED[backend],
    keyframeIntervalS: opts.keyframeIntervalS ?? 10,
  };
  if (!(s.fps > 0 && s.fps <= 240)) throw bad(`fps must be in (0, 240], got ${s.fps}`);
  if (!(s.bitrate >= 10_000 && s.bitrate <= 100_000_000)) throw bad(`bitrate must be 10 kbps..100 Mbps, got ${s.bitrate}`);
  if (!(Number.isInteger(s.cpuUsed) && s.cpuUsed >= -16 && s.cpuUsed <= 16)) throw bad(`cpuUsed must be an integer -16..16, got ${s.cpuUsed}`);
  if (!(s.keyframeIntervalS > 0)) throw bad(`keyframeIntervalS must be positive, got ${s.keyframeIntervalS}`);
  return s;
}

/** Throws a 'bad_frame' CodecError unless `frame` is an I420 frame VP8 can carry. */
export function checkFrame(frame: I420Frame): void {
  try {
    assertI420(frame, 'VP8 encoder input');
  } catch (err) {
    throw new CodecError('bad_frame', (err as Error).message);
  }
  if (frame.width > VP8_MAX_DIMENSION || frame.height > VP8_MAX_DIMENSION) {
    throw new CodecError('bad_frame', `VP8 encoder input: ${frame.width}×${frame.height} exceeds VP8's ${VP8_MAX_DIMENSION} limit`);
  }
}
