/**
 * The native encoder: an ffmpeg process fed raw I420 frames on stdin — libvpx VP8 out as IVF, or
 * libx264 H.264 out as FLV (flv.ts says why) — with realtime settings and no look-ahead, so each
 * frame comes out before the next goes in. ffmpeg's command line has no way to force a keyframe on
 * demand, so a keyframe is the first frame of a fresh process: a spare one is kept started
 * (about 25 MB, idle) so that switching costs no start-up time.
 */
import { checkFrame, CodecError, resolveSettings, type EncoderSettings, type VideoCodec, type VideoEncoder, type Vp8EncoderOptions } from './codec.ts';
import { CodecProcess } from './ffmpeg-process.ts';
import { FlvAvcReader } from './flv.ts';
import { i420Size, type EncodedFrame, type I420Frame } from './frame.ts';
import { IvfReader } from './ivf.ts';

const NAME: Record<VideoCodec, string> = { vp8: 'VP8', h264: 'H.264' };

/** The codec's arguments after the raw input. */
function codecArgs(codec: VideoCodec, s: EncoderSettings): string[] {
  const bitrate = String(Math.round(s.bitrate));
  const gop = String(Math.max(1, Math.round(s.fps * s.keyframeIntervalS)));
  if (codec === 'h264') {
    return [
      // Constrained Baseline (no B-frames), what every WebRTC receiver decodes; zerolatency: no look-ahead.
      '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-bf', '0',
      '-b:v', bitrate, '-maxrate', bitrate, '-bufsize', String(Math.round(s.bitrate / 2)),
      '-g', gop, '-threads', '1', '-f', 'flv', '-flush_packets', '1', 'pipe:1',
    ];
  }
  return [
    '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', String(s.cpuUsed),
    // No look-ahead: every frame comes out before the next goes in.
    '-lag-in-frames', '0', '-auto-alt-ref', '0',
    // Each frame's entropy coding starts from defaults, so one lost in the network does not
    // leave the following ones unparseable.
    '-error-resilient', 'default',
    // minrate = maxrate = b: constant bitrate, what a congestion-controlled link wants; qmax 63
    // lets the rate control reach low bitrates (this encoder never drops frames instead).
    '-b:v', bitrate, '-minrate', bitrate, '-maxrate', bitrate, '-bufsize', bitrate, '-qmax', '63',
    '-g', gop, '-threads', '1', '-f', 'ivf', '-flush_packets', '1', 'pipe:1',
  ];
}

/** One encoder process and the packets it owes. */
class EncoderProcess {
  readonly proc: CodecProcess;
  readonly pending: Array<{ timestamp: number; t0: number; resolve(f: EncodedFrame): void; reject(e: CodecError): void }> = [];
  /** Frames written so far: the first one of a process is its keyframe. */
  frames = 0;
  private readonly reader: { next(): { data: Uint8Array; keyframe: boolean } | null };

  constructor(path: string, codec: VideoCodec, s: EncoderSettings, onMs: (ms: number) => void, onCrash: (reason: string) => void) {
    // No probing of the input: at 3 fps or less ffmpeg would otherwise hold every frame until its probe was full (seconds).
    const args = ['-probesize', '32', '-analyzeduration', '0', '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${s.width}x${s.height}`, '-r', String(s.fps), '-i', 'pipe:0', ...codecArgs(codec, s)];
    this.proc = new CodecProcess(path, args, () => this.drain(onMs), (reason, crashed) => {
      const err = new CodecError('worker_failed', `${NAME[codec]} encoder: ${reason}`);
      for (const p of this.pending.splice(0)) p.reject(err);
      if (crashed) onCrash(reason);
    });
    if (codec === 'h264') this.reader = new FlvAvcReader(this.proc.out);
    else {
      const ivf = new IvfReader(this.proc.out);
      // The VP8 frame tag's P bit is 0 for a keyframe.
      this.reader = { next: () => ((d) => (d ? { data: d, keyframe: (d[0] & 1) === 0 } : null))(ivf.next()) };
    }
  }

  encode(frame: I420Frame): Promise<EncodedFrame> {
    if (this.proc.exited) return Promise.reject(new CodecError('worker_failed', 'encoder process is gone'));
    this.frames++;
    return new Promise((resolve, reject) => {
      this.pending.push({ timestamp: frame.timestamp, t0: performance.now(), resolve, reject });
      this.proc.write([frame.data.subarray(0, i420Size(frame.width, frame.height))]);
    });
  }

  private drain(onMs: (ms: number) => void): void {
    for (;;) {
      let out: { data: Uint8Array; keyframe: boolean } | null;
      try {
        out = this.reader.next();
      } catch {
        void this.proc.kill();
        return;
      }
      if (!out) return;
      const p = this.pending.shift();
      if (!p) {
        void this.proc.kill();
        return;
      }
      onMs(performance.now() - p.t0);
      p.resolve({ ...out, timestamp: p.timestamp });
    }
  }
}

/** I420 frames in, VP8 or H.264 frames out (see the file header). */
export class FfmpegEncoder implements VideoEncoder {
  readonly backend = 'native';
  lastMs = 0;
  onLost: (reason: string) => void = () => {};
  private current: EncoderSettings;
  private fixedBitrate: boolean;
  private active: EncoderProcess;
  private spare?: EncoderProcess;
  private closed = false;

  constructor(
    private readonly path: string,
    opts: Vp8EncoderOptions,
    readonly codec: VideoCodec = 'vp8',
  ) {
    this.current = resolveSettings(opts, 'native');
    this.fixedBitrate = opts.bitrate !== undefined;
    this.active = this.startProcess();
  }

  get settings(): Readonly<EncoderSettings> {
    return this.current;
  }

  get pendingCount(): number {
    return this.active.pending.length;
  }

  get pids(): number[] {
    return [this.active, this.spare].flatMap((p) => (p && !p.proc.exited && p.proc.child.pid ? [p.proc.child.pid] : []));
  }

  private startProcess(): EncoderProcess {
    return new EncoderProcess(this.path, this.codec, this.current, (ms) => (this.lastMs = ms), (reason) => {
      if (!this.closed) this.onLost(`${NAME[this.codec]} encoder: ${reason}`);
    });
  }

  /** Any change starts new processes at the new settings (the next frame is a keyframe). */
  async reconfigure(opts: Vp8EncoderOptions): Promise<void> {
    if (this.closed) throw new CodecError('closed', `${NAME[this.codec]} encoder is closed`);
    const fixedBitrate = this.fixedBitrate || opts.bitrate !== undefined;
    this.current = resolveSettings(
      {
        ...opts,
        fps: opts.fps ?? this.current.fps,
        bitrate: opts.bitrate ?? (this.fixedBitrate ? this.current.bitrate : undefined),
        cpuUsed: opts.cpuUsed ?? this.current.cpuUsed,
        keyframeIntervalS: opts.keyframeIntervalS ?? this.current.keyframeIntervalS,
      },
      'native',
    );
    this.fixedBitrate = fixedBitrate;
    this.active.proc.end();
    void this.spare?.proc.kill();
    this.spare = undefined;
    this.active = this.startProcess();
  }

  encode(frame: I420Frame, opts: { keyframe?: boolean } = {}): Promise<EncodedFrame> {
    if (this.closed) return Promise.reject(new CodecError('closed', `${NAME[this.codec]} encoder is closed`));
    try {
      checkFrame(frame);
    } catch (err) {
      return Promise.reject(err);
    }
    if (frame.width !== this.current.width || frame.height !== this.current.height) {
      void this.reconfigure({ width: frame.width, height: frame.height });
    } else if ((opts.keyframe && this.active.frames > 0) || this.active.proc.exited) {
      // A fresh process starts with a keyframe; the old one finishes what it holds and exits.
      this.active.proc.end();
      this.active = this.spare ?? this.startProcess();
      this.spare = undefined;
    }
    const out = this.active.encode(frame);
    // Keep a spare started for the next keyframe request, once this frame is on its way.
    if (!this.spare) setImmediate(() => {
      if (!this.closed && !this.spare) this.spare = this.startProcess();
    });
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new CodecError('closed', `${NAME[this.codec]} encoder is closed`);
    for (const p of this.active.pending.splice(0)) p.reject(err);
    await Promise.all([this.active.proc.kill(), this.spare?.proc.kill()]);
  }
}
