/**
 * The encode stage: one encoder per session, whatever the number of viewers (the frame is fanned
 * out encoded). It opens at the output size when the loop starts, so its start-up is not in the
 * first frame's path; a keyframe is forced when the main thread's keyframe policy asks for one;
 * an encoder that dies is replaced and the next frame is a keyframe.
 */
import { CodecError, type CodecBackend, type VideoCodec, type VideoEncoder } from '../media/codec.ts';
import type { EncodedFrame, I420Frame } from '../media/frame.ts';
import { openEncoder } from '../media/open-codec.ts';

export interface EncodeSettings {
  width: number;
  height: number;
  fps: number;
  bitrate: number;
}

export class EncodeStage {
  private encoder?: VideoEncoder;
  private opening?: Promise<VideoEncoder>;
  private forceKeyframe = true;
  private closed = false;

  constructor(
    private readonly backend: CodecBackend,
    private readonly codec: VideoCodec,
    private settings: EncodeSettings,
    private readonly onRestart: (reason: string) => void,
    /** An encoder a warm worker opened before this session (used when it has these settings). */
    preopened?: VideoEncoder,
  ) {
    const p = preopened?.settings;
    if (p && preopened?.codec === codec && p.width === settings.width && p.height === settings.height && p.fps === settings.fps && p.bitrate === settings.bitrate) {
      this.adopt(preopened);
      this.opening = Promise.resolve(preopened);
    } else {
      void preopened?.close();
    }
  }

  open(): Promise<VideoEncoder> {
    this.opening ??= openEncoder(this.backend, { ...this.settings }, this.codec).then((e) => {
      if (this.closed) {
        void e.close();
        throw new CodecError('closed', 'encode stage is closed');
      }
      return this.adopt(e);
    });
    return this.opening;
  }

  /** Takes an encoder on; its process or worker dying counts as a restart, whether or not a frame was waiting. */
  private adopt(e: VideoEncoder): VideoEncoder {
    e.onLost = (reason) => this.onRestart(reason);
    this.encoder = e;
    return e;
  }

  get pids(): number[] {
    return this.encoder?.pids ?? [];
  }

  /** The next frame will be a keyframe. */
  requestKeyframe(): void {
    this.forceKeyframe = true;
  }

  /** New output size or frame rate: applied at the next frame (a keyframe). */
  configure(next: Partial<EncodeSettings>): void {
    this.settings = { ...this.settings, ...next };
  }

  async encode(frame: I420Frame): Promise<EncodedFrame> {
    const encoder = await this.open();
    const s = this.settings;
    if (encoder.settings.fps !== s.fps || encoder.settings.width !== frame.width || encoder.settings.height !== frame.height) {
      await encoder.reconfigure({ width: frame.width, height: frame.height, fps: s.fps });
    }
    const keyframe = this.forceKeyframe;
    this.forceKeyframe = false;
    try {
      return await encoder.encode(frame, { keyframe });
    } catch (err) {
      if (err instanceof CodecError && err.kind === 'worker_failed' && !this.closed) this.replace(encoder);
      throw err;
    }
  }

  /** A failed encode: a fresh encoder for the next frame, which is a keyframe (the loss itself was counted by onLost). */
  private replace(encoder: VideoEncoder): void {
    if (encoder !== this.encoder) return;
    this.encoder = undefined;
    this.opening = undefined;
    this.forceKeyframe = true;
    encoder.onLost = () => {};
    void encoder.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    await (await this.opening?.catch(() => undefined))?.close();
  }
}
