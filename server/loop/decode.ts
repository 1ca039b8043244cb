/**
 * The decode stage. VP8 frames depend on each other, so unlike render and encode this stage cannot
 * simply keep the latest frame; it bounds its backlog instead:
 *
 * - with temporal layers (the sender encodes L1T2/L1T3: the web app and the SDK ask for it),
 *   enhancement-layer frames are skipped while the decoder is busy, and when the rate cap refused
 *   them on arrival (a session capped at 15 fps of a 30 fps L1T2 stream decodes half its frames):
 *   nothing in the base layer refers to them, so skipping down to the next base-layer frame costs
 *   frame rate, not latency;
 * - with or without layers, more than MAX_IN_FLIGHT frames waiting means the decoder fell behind
 *   the camera: the backlog is dropped and the stage waits for a keyframe (the main thread asks
 *   the sender for one), so latency is bounded by a few frames, never by a queue.
 */
import { CodecError, type CodecBackend, type VideoCodec, type VideoDecoder } from '../media/codec.ts';
import type { I420Frame } from '../media/frame.ts';
import { openDecoder } from '../media/open-codec.ts';

/** Frames waiting in the decoder before the backlog is dropped: 3 frames ≈ 100 ms at 30 fps. */
export const MAX_IN_FLIGHT = 3;

export interface EncodedInput {
  data: Uint8Array;
  keyframe: boolean;
  tid?: number;
  rtp: number;
  arrival: number;
  /** Whether its picture will be used (the rate cap passed it, the session is not paused); a frame nothing refers to is not decoded otherwise. */
  keep: boolean;
}

export interface DecodeEvents {
  picture(frame: I420Frame, input: EncodedInput, ms: number): void;
  dropped(): void;
  /** The stage waits for a keyframe; `error` when a decode failed rather than the stage dropping its backlog. */
  needKeyframe(reason: string, error: boolean): void;
  restarted(reason: string): void;
}

export class DecodeStage {
  private decoder?: VideoDecoder;
  private opening?: Promise<VideoDecoder>;
  private waitKeyframe = true;
  /** Set when an enhancement-layer frame was skipped: every frame above the base layer waits for the next base-layer frame. */
  private skipToBase = false;
  private closed = false;

  constructor(
    private readonly backend: CodecBackend,
    private readonly on: DecodeEvents,
    private readonly codec: VideoCodec = 'vp8',
    /** A decoder a warm worker opened before this session (used when it is of this codec). */
    preopened?: VideoDecoder,
  ) {
    if (preopened?.codec === codec) {
      this.adopt(preopened);
      this.opening = Promise.resolve(preopened);
    } else {
      void preopened?.close();
    }
  }

  get pids(): number[] {
    return this.decoder?.pids ?? [];
  }

  /** Starts the decoder ahead of the first frame, so its start-up is not in the first frame's path. */
  open(): Promise<VideoDecoder> {
    this.opening ??= openDecoder(this.backend, this.codec).then((d) => {
      if (this.closed) {
        void d.close();
        throw new CodecError('closed', 'decode stage is closed');
      }
      return this.adopt(d);
    });
    return this.opening;
  }

  /** Takes a decoder on; its process or worker dying counts as a restart, whether or not a frame was waiting. */
  private adopt(d: VideoDecoder): VideoDecoder {
    d.onLost = (reason) => this.on.restarted(reason);
    this.decoder = d;
    return d;
  }

  push(input: EncodedInput): void {
    if (this.closed) return;
    if (this.waitKeyframe && !input.keyframe) {
      this.on.dropped();
      return;
    }
    const decoder = this.decoder;
    if (!decoder) {
      // Still starting: the first keyframe waits for it (nothing else can be decoded before it).
      if (input.keyframe) void this.open().then(() => this.push(input), () => {});
      else this.on.dropped();
      return;
    }
    const busy = decoder.pendingCount;
    if (input.tid !== undefined && input.tid > 0 && (busy > 0 || this.skipToBase || !input.keep)) {
      this.skipToBase = true;
      this.on.dropped();
      return;
    }
    if (!input.tid) this.skipToBase = false;
    if (busy >= MAX_IN_FLIGHT && !input.keyframe) {
      this.waitKeyframe = true;
      this.on.dropped();
      this.on.needKeyframe(`decoder behind by ${busy} frames`, false);
      return;
    }
    this.waitKeyframe = false;
    const t0 = performance.now();
    decoder.decode(input.data, input.arrival, { transfer: true }).then(
      (picture) => {
        if (picture && !this.closed) this.on.picture(picture, input, performance.now() - t0);
      },
      (err: Error) => this.failed(decoder, err),
    );
  }

  private failed(decoder: VideoDecoder, err: Error): void {
    if (this.closed) return;
    this.waitKeyframe = true;
    // A native decoder starts a new process at the next keyframe; a dead wasm worker stays dead and is replaced here.
    if (err instanceof CodecError && err.kind === 'worker_failed' && decoder === this.decoder && decoder.backend === 'wasm') {
      this.decoder = undefined;
      this.opening = undefined;
      void decoder.close();
      void this.open().catch(() => {});
    }
    this.on.needKeyframe(err.message, true);
  }

  async close(): Promise<void> {
    this.closed = true;
    await (await this.opening?.catch(() => undefined))?.close();
  }
}
