/**
 * The decode stage. VP8 frames depend on each other, so unlike render and encode this stage cannot
 * simply keep the latest frame; it bounds its backlog instead:
 *
 * - with temporal layers (the sender encodes L1T2/L1T3: the web app and the SDK ask for it),
 *   enhancement-layer frames are skipped while the decoder is busy, and when the rate cap refused
 *   them on arrival (a session capped at 15 fps of a 30 fps L1T2 stream decodes half its frames):
 *   nothing in the base layer refers to them, so skipping down to the next base-layer frame costs
 *   frame rate, not latency;
 * - with or without layers, a decoder that fell behind the camera (MAX_IN_FLIGHT frames owed and
 *   the oldest sent to it more than MAX_BEHIND_MS ago, or MAX_QUEUED frames owed) costs its
 *   backlog: the stage waits for a keyframe (the main thread asks the sender for one), so latency
 *   is bounded by a few frames, never by a queue.
 *
 * Why the age as well as the count: this thread also renders (onnxruntime-node runs a model
 * synchronously on the calling thread), and under load it waits for a core as well. Meanwhile
 * frames queue up in its port and the decoder's pictures wait unread (in the ffmpeg pipe or the
 * wasm worker's port). The frames then arrive here together and the count alone sees three owed
 * although the decoder kept up. Under overload that misjudgement cost a keyframe round trip (a
 * freeze of 0.3–0.5 s) several times a minute (docs/BENCHMARKS.md, "Capacity and overload").
 * For the same reason the rule is not applied on the spot: a frame that finds the decoder behind
 * waits one turn of the event loop (frames after it wait with it, in order), so that pictures
 * already waiting in the pipe or port are read first, and the rule then looks again.
 */
import { CodecError, type CodecBackend, type VideoCodec, type VideoDecoder } from '../media/codec.ts';
import type { I420Frame } from '../media/frame.ts';
import { openDecoder } from '../media/open-codec.ts';

/** Frames owed by the decoder before its backlog may be dropped: 3 frames ≈ 100 ms at 30 fps. */
export const MAX_IN_FLIGHT = 3;
/** ... and how long ago the oldest of them went to the decoder. */
export const MAX_BEHIND_MS = 50;
/** Frames owed, whatever their age, at which the backlog is dropped. */
export const MAX_QUEUED = 8;

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
  /** When each frame the decoder still owes a picture for went to it, oldest first. */
  private readonly owed: number[] = [];
  /** Frames waiting for the rule to look again (see the header), oldest first. */
  private deferred?: EncodedInput[];

  constructor(
    private readonly backend: CodecBackend,
    private readonly on: DecodeEvents,
    private readonly codec: VideoCodec = 'vp8',
    /** A decoder a warm worker opened before this session (used when it is of this codec). */
    preopened?: VideoDecoder,
    private readonly now: () => number = () => performance.now(),
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
    if (this.deferred) this.deferred.push(input);
    else this.take(input, false);
  }

  /** `lookedAgain`: the frame already waited a turn (see the header). */
  private take(input: EncodedInput, lookedAgain: boolean): void {
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
    const t0 = this.now();
    const owed = this.owed.length;
    if (!input.keyframe && (owed >= MAX_QUEUED || (owed >= MAX_IN_FLIGHT && t0 - this.owed[0] > MAX_BEHIND_MS))) {
      if (!lookedAgain) {
        this.deferred = [input];
        setImmediate(() => this.lookAgain());
        return;
      }
      this.waitKeyframe = true;
      this.on.dropped();
      this.on.needKeyframe(`decoder behind by ${owed} frames (${Math.round(t0 - this.owed[0])} ms)`, false);
      return;
    }
    this.waitKeyframe = false;
    this.owed.push(t0);
    const settled = () => {
      const i = this.owed.indexOf(t0);
      if (i >= 0) this.owed.splice(i, 1);
    };
    decoder.decode(input.data, input.arrival, { transfer: true }).then(
      (picture) => {
        settled();
        if (picture && !this.closed) this.on.picture(picture, input, this.now() - t0);
      },
      (err: Error) => {
        settled();
        this.failed(decoder, err);
      },
    );
  }

  private lookAgain(): void {
    const [first, ...rest] = this.deferred!;
    this.deferred = undefined;
    if (this.closed) return;
    this.take(first, true);
    for (const input of rest) this.push(input);
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
