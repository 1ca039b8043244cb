/**
 * The wasm codec backend: VP8 decoder and encoder, each in its own worker thread
 * (codec-worker.ts, libvpx compiled to WebAssembly by libav.js), reached through workers/rpc.ts.
 * The fallback when no native ffmpeg is usable: it runs wherever Node runs, at about 4× the CPU.
 * Frame buffers cross the thread boundary by transfer, not by copy.
 */
import { XplError } from '../errors.ts';
import { RpcClient } from '../workers/rpc.ts';
import type { CodecMethods } from './codec-worker.ts';
import { checkFrame, CodecError, resolveSettings, type CodecErrorKind, type EncoderSettings, type VideoDecoder, type VideoEncoder, type Vp8EncoderOptions } from './codec.ts';
import { i420Size, type EncodedFrame, type I420Frame } from './frame.ts';

export const CODEC_WORKER_URL = new URL('./codec-worker.ts', import.meta.url);

/** A call's failure as a CodecError: the worker's own kind, else the worker itself failed. */
function asCodecError(label: string, err: unknown): CodecError {
  if (err instanceof CodecError) return err;
  const kind = (err instanceof XplError && (err.details?.kind as CodecErrorKind)) || 'worker_failed';
  const message = err instanceof Error ? err.message : String(err);
  return new CodecError(/is closed$/.test(message) ? 'closed' : kind, `${label}: ${message}`, { cause: err });
}

class Channel {
  private readonly rpc: RpcClient<CodecMethods>;
  onLost: (reason: string) => void = () => {};

  constructor(private readonly label: string) {
    this.rpc = new RpcClient<CodecMethods>(CODEC_WORKER_URL, label, true);
    this.rpc.onCrash = (err) => this.onLost(`${label}: ${err.message}`);
  }

  get pendingCount(): number {
    return this.rpc.pendingCount;
  }

  async call<K extends keyof CodecMethods & string>(method: K, args: Parameters<CodecMethods[K]>[0], transfer: ArrayBuffer[] = []): Promise<Awaited<ReturnType<CodecMethods[K]>>> {
    try {
      return await this.rpc.call(method, args, transfer);
    } catch (err) {
      throw asCodecError(this.label, err);
    }
  }

  close(): Promise<void> {
    return this.rpc.close();
  }
}

export class WasmVp8Decoder implements VideoDecoder {
  readonly backend = 'wasm';
  readonly codec = 'vp8';
  readonly pids: number[] = [];
  lastMs = 0;
  onLost: (reason: string) => void = () => {};

  private constructor(private readonly channel: Channel) {
    channel.onLost = (reason) => this.onLost(reason);
  }

  static async create(): Promise<WasmVp8Decoder> {
    const channel = new Channel('VP8 decoder');
    try {
      await channel.call('decoder.open', undefined);
    } catch (err) {
      await channel.close();
      throw err;
    }
    return new WasmVp8Decoder(channel);
  }

  get pendingCount(): number {
    return this.channel.pendingCount;
  }

  /** The worker is up once created: nothing to start ahead. */
  prewarm(): void {}

  async decode(data: Uint8Array, timestamp: number, opts: { transfer?: boolean } = {}): Promise<I420Frame | null> {
    if (!(data instanceof Uint8Array) || data.length === 0) throw new CodecError('corrupt_frame', 'VP8 decoder: empty frame');
    const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    const buffer = opts.transfer && whole ? (data.buffer as ArrayBuffer) : (data.slice().buffer as ArrayBuffer);
    const { picture, ms } = await this.channel.call('decode', { data: buffer }, [buffer]);
    this.lastMs = ms;
    return picture && { width: picture.width, height: picture.height, data: new Uint8Array(picture.data), timestamp };
  }

  close(): Promise<void> {
    return this.channel.close();
  }
}

export class WasmVp8Encoder implements VideoEncoder {
  readonly backend = 'wasm';
  readonly codec = 'vp8';
  readonly pids: number[] = [];
  lastMs = 0;
  onLost: (reason: string) => void = () => {};
  private current: EncoderSettings;
  /** Whether the bitrate was chosen by the caller rather than derived from the size. */
  private fixedBitrate: boolean;
  /** Input buffers handed back by the worker, reused to avoid allocating a frame-sized buffer per call. */
  private readonly spare: ArrayBuffer[] = [];

  private constructor(
    private readonly channel: Channel,
    settings: EncoderSettings,
    fixedBitrate: boolean,
  ) {
    this.current = settings;
    this.fixedBitrate = fixedBitrate;
    channel.onLost = (reason) => this.onLost(reason);
  }

  static async create(opts: Vp8EncoderOptions): Promise<WasmVp8Encoder> {
    const settings = resolveSettings(opts, 'wasm');
    const channel = new Channel('VP8 encoder');
    try {
      await channel.call('encoder.configure', { settings });
    } catch (err) {
      await channel.close();
      throw err;
    }
    return new WasmVp8Encoder(channel, settings, opts.bitrate !== undefined);
  }

  get settings(): Readonly<EncoderSettings> {
    return this.current;
  }

  get pendingCount(): number {
    return this.channel.pendingCount;
  }

  /** Any change re-opens the encoder (libvpx through libav cannot retarget a running one), so the next frame is a keyframe. */
  async reconfigure(opts: Vp8EncoderOptions): Promise<void> {
    // A bitrate the caller chose once stays until the caller changes it; otherwise it follows the size.
    const fixedBitrate = this.fixedBitrate || opts.bitrate !== undefined;
    const settings = resolveSettings(
      {
        ...opts,
        fps: opts.fps ?? this.current.fps,
        bitrate: opts.bitrate ?? (this.fixedBitrate ? this.current.bitrate : undefined),
        cpuUsed: opts.cpuUsed ?? this.current.cpuUsed,
        keyframeIntervalS: opts.keyframeIntervalS ?? this.current.keyframeIntervalS,
      },
      'wasm',
    );
    this.current = settings;
    this.fixedBitrate = fixedBitrate;
    await this.channel.call('encoder.configure', { settings });
  }

  async encode(frame: I420Frame, opts: { keyframe?: boolean } = {}): Promise<EncodedFrame> {
    checkFrame(frame);
    const { width, height, timestamp } = frame;
    if (width !== this.current.width || height !== this.current.height) {
      // Not awaited, so that this frame's request is posted now, in call order; the worker serves
      // calls in order, so the encode below sees the new size. Should re-opening fail, that encode
      // fails with the reason.
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

  close(): Promise<void> {
    return this.channel.close();
  }
}
