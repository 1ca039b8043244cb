/**
 * VP8 decoder and encoder for the frame loop. Each instance owns one worker thread
 * (codec-worker.ts) running libvpx compiled to WebAssembly, so a session's codec work runs beside
 * the event loop and sessions never share codec state.
 *
 * Calls on one instance are processed in order. Frame buffers cross the thread boundary by
 * transfer, not by copy; `lastMs` holds the codec time of the latest completed call.
 */
import type { Worker } from 'node:worker_threads';
import { XplError } from '../errors.ts';
import { spawnWorker } from '../workers/rpc.ts';
import type { CodecErrorKind, CodecOp, CodecOps, CodecRequest, CodecResponse, EncoderSettings } from './codec-worker.ts';
import { assertI420, i420Size, type EncodedFrame, type I420Frame } from './frame.ts';

export type { CodecErrorKind, EncoderSettings } from './codec-worker.ts';

const INPUT_KINDS: ReadonlySet<CodecErrorKind> = new Set(['corrupt_frame', 'awaiting_keyframe', 'bad_frame', 'bad_settings']);

/**
 * A codec call failed. `kind` says why; input problems ('corrupt_frame', 'awaiting_keyframe' —
 * ask the sender for a keyframe —, 'bad_frame', 'bad_settings') carry code 'bad_request', the rest 'internal'.
 */
export class CodecError extends XplError {
  readonly kind: CodecErrorKind;

  constructor(kind: CodecErrorKind, message: string, opts: { cause?: unknown } = {}) {
    super(INPUT_KINDS.has(kind) ? 'bad_request' : 'internal', message, { details: { kind }, cause: opts.cause });
    this.name = 'CodecError';
    this.kind = kind;
  }
}

/** VP8's frame header holds 14-bit dimensions. */
const VP8_MAX_DIMENSION = 16383;

const WORKER_URL = new URL('./codec-worker.ts', import.meta.url);

interface Pending {
  resolve(result: never): void;
  reject(err: CodecError): void;
}

/** The typed request/response channel to one codec worker. */
class CodecChannel {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Set once the channel is unusable (closed or crashed); every later call rejects with it. */
  private failure?: CodecError;
  private closing?: Promise<void>;

  constructor(private readonly label: string) {
    this.worker = spawnWorker(WORKER_URL);
    // An idle codec must not keep the process alive; pending calls do (see call()).
    this.worker.unref();
    this.worker.on('message', (res: CodecResponse) => this.settle(res));
    this.worker.on('error', (err: Error) => this.fail(new CodecError('worker_failed', `${label} worker failed: ${err.message}`, { cause: err })));
    this.worker.on('messageerror', (err: Error) => this.fail(new CodecError('worker_failed', `${label} message could not be read: ${err.message}`, { cause: err })));
    this.worker.on('exit', (code: number) => this.fail(new CodecError('worker_failed', `${label} worker exited (code ${code})`)));
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  call<K extends CodecOp>(op: K, args: CodecOps[K]['req'], transfer: ArrayBuffer[] = []): Promise<CodecOps[K]['res']> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<CodecOps[K]['res']>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve: resolve as (r: never) => void, reject });
      this.worker.postMessage({ id, op, ...args } as CodecRequest, transfer);
    });
  }

  private settle(res: CodecResponse): void {
    const p = this.pending.get(res.id);
    if (!p) return;
    this.pending.delete(res.id);
    if (this.pending.size === 0) this.worker.unref();
    if (res.ok) p.resolve(res.result as never);
    else p.reject(new CodecError(res.kind, `${this.label}: ${res.message}`));
  }

  private fail(err: CodecError): void {
    this.failure ??= err;
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const p of calls) p.reject(this.failure);
  }

  /** Rejects pending calls with a 'closed' error and ends the worker. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.fail(new CodecError('closed', `${this.label} is closed`));
      await this.worker.terminate();
    })();
    return this.closing;
  }
}

/** Decodes a VP8 stream (whole frames, as depacketized from RTP) into I420 frames. */
export class Vp8Decoder {
  /** Codec milliseconds of the latest completed decode. */
  lastMs = 0;

  private constructor(private readonly channel: CodecChannel) {}

  static async create(): Promise<Vp8Decoder> {
    const channel = new CodecChannel('VP8 decoder');
    try {
      await channel.call('decoder.open', {});
    } catch (err) {
      await channel.close();
      throw err;
    }
    return new Vp8Decoder(channel);
  }

  /** Calls sent and not yet answered. */
  get pendingCount(): number {
    return this.channel.pendingCount;
  }

  /**
   * Decodes one frame. Resolves null when the frame produced no picture (a hidden frame).
   * Rejects with a CodecError: 'corrupt_frame' for undecodable data, 'bad_frame' for a keyframe
   * over 4096 pixels on a side, 'awaiting_keyframe' for an inter frame after either of those or
   * before the first keyframe; the decoder stays usable and the next keyframe decodes normally. The size may change from keyframe to keyframe; pictures always
   * have even dimensions (an odd last column or row is dropped).
   */
  async decode(data: Uint8Array, timestamp: number): Promise<I420Frame | null> {
    if (!(data instanceof Uint8Array) || data.length === 0) throw new CodecError('corrupt_frame', 'VP8 decoder: empty frame');
    // A copy we can transfer: `data` may be a view into a buffer the caller keeps using.
    const copy = data.slice().buffer;
    const { picture, ms } = await this.channel.call('decode', { data: copy }, [copy]);
    this.lastMs = ms;
    return picture && { width: picture.width, height: picture.height, data: new Uint8Array(picture.data), timestamp };
  }

  /** Ends the worker; pending and later calls reject with a 'closed' CodecError. Idempotent. */
  close(): Promise<void> {
    return this.channel.close();
  }
}

export interface Vp8EncoderOptions {
  width: number;
  height: number;
  /** Nominal frame rate (default 30); with the timestamps it sets the per-frame bit budget. */
  fps?: number;
  /** Bits per second (default: 1.5 Mbps at 512², scaled with the picture area, see defaultBitrate). */
  bitrate?: number;
  /**
   * libvpx speed, -16..16 (default -16). Negative: fixed speed |n|, the same cost whatever the
   * load. Positive: libvpx picks the speed from the time each frame took, so quality would vary
   * with how busy the machine is. -16 is libvpx's fastest: at 512² it costs about 2/3 of -12's
   * encode time and half its decode time, for ~3 dB less PSNR at the same bitrate.
   */
  cpuUsed?: number;
  /** Longest gap between automatic keyframes, seconds (default 10); `keyframe: true` forces one any time. */
  keyframeIntervalS?: number;
}

/**
 * Default bitrate for a picture size: 1.5 Mbps at 512², growing with area^0.75, because larger
 * pictures have more redundancy per pixel.
 */
export function defaultBitrate(width: number, height: number): number {
  return Math.round((1.5e6 * ((width * height) / (512 * 512)) ** 0.75) / 1000) * 1000;
}

/** Encodes I420 frames to VP8 with realtime settings (no look-ahead, constant bitrate, error resilient). */
export class Vp8Encoder {
  /** Codec milliseconds of the latest completed encode (including the copy into the codec). */
  lastMs = 0;
  private current: EncoderSettings;
  /** Whether the bitrate was chosen by the caller rather than derived from the size. */
  private fixedBitrate: boolean;
  /** Input buffers handed back by the worker, reused to avoid allocating a frame-sized buffer per call. */
  private readonly spare: ArrayBuffer[] = [];

  private constructor(
    private readonly channel: CodecChannel,
    settings: EncoderSettings,
    fixedBitrate: boolean,
  ) {
    this.current = settings;
    this.fixedBitrate = fixedBitrate;
  }

  static async create(opts: Vp8EncoderOptions): Promise<Vp8Encoder> {
    const settings = resolveSettings(opts);
    const channel = new CodecChannel('VP8 encoder');
    try {
      await channel.call('encoder.configure', { settings });
    } catch (err) {
      await channel.close();
      throw err;
    }
    return new Vp8Encoder(channel, settings, opts.bitrate !== undefined);
  }

  get settings(): Readonly<EncoderSettings> {
    return this.current;
  }

  get pendingCount(): number {
    return this.channel.pendingCount;
  }

  /**
   * Changes size, frame rate or bitrate. Any change re-opens the encoder (libvpx through libav
   * cannot retarget a running encoder), so the next frame is a keyframe.
   */
  async reconfigure(opts: Vp8EncoderOptions): Promise<void> {
    // A bitrate the caller chose once stays until the caller changes it; otherwise it follows the size.
    const fixedBitrate = this.fixedBitrate || opts.bitrate !== undefined;
    const settings = resolveSettings({
      ...opts,
      fps: opts.fps ?? this.current.fps,
      bitrate: opts.bitrate ?? (this.fixedBitrate ? this.current.bitrate : undefined),
      cpuUsed: opts.cpuUsed ?? this.current.cpuUsed,
      keyframeIntervalS: opts.keyframeIntervalS ?? this.current.keyframeIntervalS,
    });
    this.current = settings;
    this.fixedBitrate = fixedBitrate;
    await this.channel.call('encoder.configure', { settings });
  }

  /**
   * Encodes one frame; `keyframe: true` makes it an intra frame. A frame of another size than the
   * configured one re-opens the encoder at that size first (a keyframe follows).
   */
  async encode(frame: I420Frame, opts: { keyframe?: boolean } = {}): Promise<EncodedFrame> {
    checkFrame(frame);
    const { width, height, timestamp } = frame;
    if (width !== this.current.width || height !== this.current.height) {
      // Not awaited, so that this frame's request is posted now, in call order; the worker handles
      // requests in order, so the encode below sees the new size. Should re-opening fail, that
      // encode fails with the reason.
      this.reconfigure({ width, height }).catch(() => undefined);
    }
    const size = i420Size(width, height);
    let input = this.spare.pop();
    if (!input || input.byteLength !== size) input = new ArrayBuffer(size);
    new Uint8Array(input).set(frame.data.subarray(0, size));
    const res = await this.channel.call('encode', { width, height, data: input, timestamp, keyframe: opts.keyframe === true }, [input]);
    this.lastMs = res.ms;
    if (res.input.byteLength === i420Size(this.current.width, this.current.height) && this.spare.length < 2) this.spare.push(res.input);
    return { data: new Uint8Array(res.data), keyframe: res.keyframe, timestamp };
  }

  /** Ends the worker; pending and later calls reject with a 'closed' CodecError. Idempotent. */
  close(): Promise<void> {
    return this.channel.close();
  }
}

function checkFrame(frame: I420Frame): void {
  try {
    assertI420(frame, 'VP8 encoder input');
  } catch (err) {
    throw new CodecError('bad_frame', (err as Error).message);
  }
  if (frame.width > VP8_MAX_DIMENSION || frame.height > VP8_MAX_DIMENSION) {
    throw new CodecError('bad_frame', `VP8 encoder input: ${frame.width}×${frame.height} exceeds VP8's ${VP8_MAX_DIMENSION} limit`);
  }
}

function resolveSettings(opts: Vp8EncoderOptions): EncoderSettings {
  const { width, height } = opts;
  const bad = (what: string) => new CodecError('bad_settings', `VP8 encoder: ${what}`);
  const dimension = (n: number) => Number.isInteger(n) && n >= 2 && n <= VP8_MAX_DIMENSION && n % 2 === 0;
  if (!dimension(width) || !dimension(height)) throw bad(`size must be even, 2..${VP8_MAX_DIMENSION}, got ${width}×${height}`);
  const s: EncoderSettings = {
    width,
    height,
    fps: opts.fps ?? 30,
    bitrate: opts.bitrate ?? defaultBitrate(width, height),
    cpuUsed: opts.cpuUsed ?? -16,
    keyframeIntervalS: opts.keyframeIntervalS ?? 10,
  };
  if (!(s.fps > 0 && s.fps <= 240)) throw bad(`fps must be in (0, 240], got ${s.fps}`);
  if (!(s.bitrate >= 10_000 && s.bitrate <= 100_000_000)) throw bad(`bitrate must be 10 kbps..100 Mbps, got ${s.bitrate}`);
  if (!(Number.isInteger(s.cpuUsed) && s.cpuUsed >= -16 && s.cpuUsed <= 16)) throw bad(`cpuUsed must be an integer -16..16, got ${s.cpuUsed}`);
  if (!(s.keyframeIntervalS > 0)) throw bad(`keyframeIntervalS must be positive, got ${s.keyframeIntervalS}`);
  return s;
}
