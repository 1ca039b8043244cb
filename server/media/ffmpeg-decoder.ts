/**
 * The native decoder: an ffmpeg process fed VP8 frames or H.264 access units (Annex B) in IVF on
 * stdin, writing y4m pictures on stdout (see ffmpeg.ts for why a process).
 *
 * IVF frames every input exactly, so ffmpeg neither probes nor waits for the next frame (a raw
 * H.264 stream would cost a frame of latency: its parser finds a frame's end only when the next
 * begins). One decoding thread (frame threads hold pictures back); `-xerror`, so that a frame it
 * cannot decode ends the process instead of silently producing no picture. Every shown frame
 * written gives exactly one picture, in order; VP8's hidden frames give none and resolve at once.
 * A keyframe of another size starts a new process (a y4m stream has one picture size).
 */
import { CodecError, type VideoCodec, type VideoDecoder } from './codec.ts';
import type { I420Frame } from './frame.ts';
import { CodecProcess } from './ffmpeg-process.ts';
import { H264InputError, inspectAccessUnit } from './h264.ts';
import { ivfFrameHeader, ivfHeader } from './ivf.ts';
import { parseVp8Header, Vp8HeaderError } from './vp8.ts';
import { Y4mReader } from './y4m.ts';

interface PendingPicture {
  timestamp: number;
  resolve(f: I420Frame | null): void;
  reject(e: CodecError): void;
}

/** What the decoder needs to know of a frame before ffmpeg sees it. */
interface FrameInfo {
  keyframe: boolean;
  shown: boolean;
  width?: number;
  height?: number;
}

const NAME: Record<VideoCodec, string> = { vp8: 'VP8', h264: 'H.264' };

function inspect(codec: VideoCodec, data: Uint8Array): FrameInfo {
  try {
    if (codec === 'vp8') return parseVp8Header(data);
    return { shown: true, ...inspectAccessUnit(data) };
  } catch (err) {
    if (err instanceof Vp8HeaderError || err instanceof H264InputError) throw new CodecError(err.kind, `${NAME[codec]} decoder: ${err.message}`);
    throw err;
  }
}

export class FfmpegDecoder implements VideoDecoder {
  readonly backend = 'native';
  lastMs = 0;
  onLost: (reason: string) => void = () => {};
  private proc?: CodecProcess;
  /**
   * IVF pts of the next frame, in seconds (the IVF time base is 1/1 here): strictly increasing
   * after ffmpeg rescales them to whatever frame rate the stream declares (H.264's SPS may say
   * 30 fps, and ticks of a 90 kHz clock would all round to 0), or its muxer aborts under -xerror.
   */
  private pts = 0;
  /** The picture size of the current process; undefined when it was started before the size was known. */
  private size?: { width: number; height: number };
  /** Pictures owed by the current process, oldest first. */
  private pending: PendingPicture[] = [];
  private closed = false;

  constructor(
    private readonly path: string,
    readonly codec: VideoCodec = 'vp8',
  ) {}

  get pendingCount(): number {
    return this.pending.length;
  }

  get pids(): number[] {
    const pid = this.proc?.exited ? undefined : this.proc?.child.pid;
    return pid ? [pid] : [];
  }

  /**
   * Starts a process before the first frame, so the first keyframe does not wait for one. The size
   * in its IVF header is a placeholder: ffmpeg sizes its output from the first decoded frame.
   */
  prewarm(): void {
    if (!this.proc && !this.closed) this.start(640, 480, false);
  }

  decode(data: Uint8Array, timestamp: number): Promise<I420Frame | null> {
    if (this.closed) return Promise.reject(new CodecError('closed', `${NAME[this.codec]} decoder is closed`));
    let info: FrameInfo;
    try {
      info = inspect(this.codec, data);
    } catch (err) {
      // The frame is lost and later frames may refer to it: wait for a keyframe.
      this.stop();
      return Promise.reject(err);
    }
    if (info.keyframe) this.follow(info);
    const proc = this.proc;
    if (!proc) return Promise.reject(new CodecError('awaiting_keyframe', `${NAME[this.codec]} inter frame dropped: waiting for a keyframe`));
    const t0 = performance.now();
    proc.write([ivfFrameHeader(data.length, this.pts++), data]);
    if (!info.shown) return Promise.resolve(null);
    return new Promise<I420Frame | null>((resolve, reject) => {
      this.pending.push({
        timestamp,
        resolve: (f) => {
          this.lastMs = performance.now() - t0;
          resolve(f);
        },
        reject,
      });
    });
  }

  /** A keyframe comes: keep the process if its size fits (or was not known yet), else start another. */
  private follow(info: FrameInfo): void {
    if (info.width === undefined || info.height === undefined) {
      // An H.264 IDR without an SPS in band: the running process has the parameter sets.
      if (!this.proc) this.start(640, 480, false);
      return;
    }
    const { width, height } = info;
    const odd = width % 2 === 1 || height % 2 === 1;
    if (this.proc && !this.size && !odd) this.size = { width, height };
    if (!this.proc || this.size?.width !== width || this.size?.height !== height) this.start(width, height, true);
  }

  private start(width: number, height: number, sized: boolean): void {
    this.stop();
    // I420 frames have even sizes: an odd last column or row is cropped, as the wasm decoder does.
    const crop = width % 2 || height % 2 ? ['-vf', `crop=${width & ~1}:${height & ~1}:0:0`] : [];
    const pending: PendingPicture[] = (this.pending = []);
    let reader: Y4mReader;
    const proc = new CodecProcess(
      this.path,
      // No probing beyond the first frame: ffmpeg would otherwise wait for several before its first picture.
      ['-xerror', '-probesize', '32', '-analyzeduration', '0', '-threads', '1', '-f', 'ivf', '-i', 'pipe:0', ...crop, '-f', 'yuv4mpegpipe', '-pix_fmt', 'yuv420p', '-vsync', 'passthrough', '-flush_packets', '1', 'pipe:1'],
      () => this.drain(proc, reader, pending),
      (reason, crashed) => {
        const current = this.proc === proc;
        if (current) this.proc = undefined;
        // Under -xerror a frame ffmpeg cannot decode ends the process with an error code.
        const err = new CodecError(crashed ? 'worker_failed' : 'corrupt_frame', `${NAME[this.codec]} decoder: ${reason}`);
        for (const p of pending.splice(0)) p.reject(err);
        if (crashed && current && !this.closed) this.onLost(reason);
      },
    );
    reader = new Y4mReader(proc.out);
    proc.write([ivfHeader(this.codec === 'vp8' ? 'VP80' : 'H264', width, height, 1)]);
    this.proc = proc;
    this.size = sized ? { width, height } : undefined;
  }

  private drain(proc: CodecProcess, reader: Y4mReader, pending: PendingPicture[]): void {
    for (;;) {
      let picture: I420Frame | null;
      try {
        picture = reader.next(pending[0]?.timestamp ?? 0);
      } catch (err) {
        void proc.kill();
        const e = new CodecError('codec_failed', `${NAME[this.codec]} decoder output: ${(err as Error).message}`);
        for (const p of pending.splice(0)) p.reject(e);
        return;
      }
      if (!picture) return;
      const p = pending.shift();
      // A picture nobody waits for means the 1:1 rule broke: the stream can no longer be trusted.
      if (!p) {
        void proc.kill();
        return;
      }
      p.resolve(picture);
    }
  }

  /** Retires the current process (it finishes the frames it holds and exits); the next frame must be a keyframe. */
  private stop(): void {
    const proc = this.proc;
    this.proc = undefined;
    this.size = undefined;
    proc?.end();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const proc = this.proc;
    this.proc = undefined;
    for (const p of this.pending.splice(0)) p.reject(new CodecError('closed', `${NAME[this.codec]} decoder is closed`));
    await proc?.kill();
  }
}
