/**
 * VP8 decoder and encoder as ffmpeg child processes (see ffmpeg.ts for why).
 *
 * Decoder: IVF in on stdin, y4m out on stdout; ffmpeg's own VP8 decoder, one thread (frame
 * threads would hold pictures back), `-xerror` so that a frame it cannot decode ends the process
 * instead of silently producing no picture. Every shown frame written gives exactly one picture,
 * in order; hidden frames give none and resolve at once. A keyframe of another size starts a new
 * process (the picture size of a y4m stream is fixed).
 *
 * Encoder: raw I420 in, IVF out; libvpx realtime, no look-ahead, so each frame comes out before
 * the next goes in. ffmpeg's command line has no way to force a keyframe on demand, so a keyframe
 * is the first frame of a fresh process: a spare one is kept started (about 25 MB, idle) so that
 * switching costs no start-up time.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { ByteQueue } from './byte-queue.ts';
import { checkFrame, CodecError, resolveSettings, type EncoderSettings, type VideoDecoder, type VideoEncoder, type Vp8EncoderOptions } from './codec.ts';
import { i420Size, type EncodedFrame, type I420Frame } from './frame.ts';
import { IvfReader, ivfFrameHeader, ivfHeader } from './ivf.ts';
import { parseVp8Header, Vp8HeaderError } from './vp8.ts';
import { Y4mReader } from './y4m.ts';

const STDERR_TAIL = 2048;

/** One ffmpeg process with its pipes; `onData` sees stdout, `onExit` fires once. */
class CodecProcess {
  readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  readonly out = new ByteQueue();
  private stderr = '';
  exited = false;

  constructor(
    path: string,
    args: string[],
    onData: () => void,
    /** `crashed`: killed by a signal or never started, rather than ending on an error of its own. */
    private readonly onExit: (reason: string, crashed: boolean) => void,
  ) {
    this.child = spawn(path, ['-hide_banner', '-loglevel', 'error', '-nostats', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (c: Buffer) => {
      this.out.push(c);
      onData();
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (c: string) => (this.stderr = (this.stderr + c).slice(-STDERR_TAIL)));
    // A write after the process died reports EPIPE here; the exit below says why.
    this.child.stdin.on('error', () => {});
    this.child.on('error', (err) => this.exit(`could not start ${path}: ${err.message}`, true));
    this.child.on('exit', (code, signal) => {
      const said = this.stderr.trim().split('\n').slice(-3).join(' / ');
      this.exit(`ffmpeg exited (${signal ?? `code ${code}`})${said ? `: ${said}` : ''}`, signal !== null);
    });
  }

  private exit(reason: string, crashed: boolean): void {
    if (this.exited) return;
    this.exited = true;
    this.onExit(reason, crashed);
  }

  write(chunks: Uint8Array[]): void {
    if (this.exited) return;
    for (const c of chunks) this.child.stdin.write(c);
  }

  /** Lets it finish what it holds and exit (stdin closed). */
  end(): void {
    if (!this.exited) this.child.stdin.end();
  }

  kill(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill('SIGKILL');
    });
  }
}

interface PendingPicture {
  timestamp: number;
  resolve(f: I420Frame | null): void;
  reject(e: CodecError): void;
}

/** VP8 frames in, I420 pictures out (see the file header). */
export class FfmpegVp8Decoder implements VideoDecoder {
  readonly backend = 'native';
  lastMs = 0;
  private proc?: CodecProcess;
  /** IVF pts of the next frame: strictly increasing, or ffmpeg's muxer aborts the stream under -xerror. */
  private pts = 0;
  private size?: { width: number; height: number };
  /** Pictures owed by the current process, oldest first. */
  private pending: PendingPicture[] = [];
  private closed = false;

  constructor(private readonly path: string) {}

  get pendingCount(): number {
    return this.pending.length;
  }

  get pids(): number[] {
    const pid = this.proc?.exited ? undefined : this.proc?.child.pid;
    return pid ? [pid] : [];
  }

  decode(data: Uint8Array, timestamp: number): Promise<I420Frame | null> {
    if (this.closed) return Promise.reject(new CodecError('closed', 'VP8 decoder is closed'));
    let header;
    try {
      header = parseVp8Header(data);
    } catch (err) {
      if (err instanceof Vp8HeaderError) {
        // The frame is lost and later inter frames may refer to it: wait for a keyframe.
        this.stop();
        return Promise.reject(new CodecError(err.kind, `VP8 decoder: ${err.message}`));
      }
      throw err;
    }
    if (header.keyframe) this.follow(header.width!, header.height!);
    const proc = this.proc;
    if (!proc) return Promise.reject(new CodecError('awaiting_keyframe', 'VP8 inter frame dropped: waiting for a keyframe'));
    const t0 = performance.now();
    proc.write([ivfFrameHeader(data.length, this.pts++), data]);
    if (!header.shown) return Promise.resolve(null);
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

  /**
   * Starts a process before the first frame, so the first keyframe does not wait for one. The size
   * in its IVF header is a placeholder: ffmpeg sizes its output from the first decoded frame.
   */
  prewarm(): void {
    if (!this.proc && !this.closed) this.start(640, 480, false);
  }

  /** A keyframe of this size comes: keep the process if it fits (or was started before the size was known), else start another. */
  private follow(width: number, height: number): void {
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
        if (this.proc === proc) this.proc = undefined;
        // Under -xerror a frame ffmpeg cannot decode ends the process with an error code.
        const err = new CodecError(crashed ? 'worker_failed' : 'corrupt_frame', `VP8 decoder: ${reason}`);
        for (const p of pending.splice(0)) p.reject(err);
      },
    );
    reader = new Y4mReader(proc.out);
    proc.write([ivfHeader('VP80', width, height)]);
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
        const e = new CodecError('codec_failed', `VP8 decoder output: ${(err as Error).message}`);
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

  /** Retires the current process; the next frame must be a keyframe. */
  private stop(): void {
    const proc = this.proc;
    this.proc = undefined;
    this.size = undefined;
    // It finishes the frames it holds and exits on its own.
    proc?.end();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const proc = this.proc;
    this.proc = undefined;
    for (const p of this.pending.splice(0)) p.reject(new CodecError('closed', 'VP8 decoder is closed'));
    await proc?.kill();
  }
}

/** One encoder process and the packets it owes. */
class EncoderProcess {
  readonly proc: CodecProcess;
  readonly pending: Array<{ timestamp: number; t0: number; resolve(f: EncodedFrame): void; reject(e: CodecError): void }> = [];
  /** Frames written so far: the first one of a process is its keyframe. */
  frames = 0;
  private readonly reader: IvfReader;

  constructor(path: string, s: EncoderSettings, onMs: (ms: number) => void) {
    const bitrate = String(Math.round(s.bitrate));
    const args = [
      '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${s.width}x${s.height}`, '-r', String(s.fps), '-i', 'pipe:0',
      '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', String(s.cpuUsed),
      // No look-ahead: every frame comes out before the next goes in.
      '-lag-in-frames', '0', '-auto-alt-ref', '0',
      // Each frame's entropy coding starts from defaults, so one lost in the network does not
      // leave the following ones unparseable.
      '-error-resilient', 'default',
      // minrate = maxrate = b: constant bitrate, what a congestion-controlled link wants; qmax 63
      // lets the rate control reach low bitrates (this encoder never drops frames instead).
      '-b:v', bitrate, '-minrate', bitrate, '-maxrate', bitrate, '-bufsize', bitrate, '-qmax', '63',
      '-g', String(Math.max(1, Math.round(s.fps * s.keyframeIntervalS))), '-threads', '1',
      '-f', 'ivf', '-flush_packets', '1', 'pipe:1',
    ];
    this.proc = new CodecProcess(path, args, () => this.drain(onMs), (reason) => {
      const err = new CodecError('worker_failed', `VP8 encoder: ${reason}`);
      for (const p of this.pending.splice(0)) p.reject(err);
    });
    this.reader = new IvfReader(this.proc.out);
  }

  encode(frame: I420Frame): Promise<EncodedFrame> {
    if (this.proc.exited) return Promise.reject(new CodecError('worker_failed', 'VP8 encoder process is gone'));
    this.frames++;
    return new Promise((resolve, reject) => {
      this.pending.push({ timestamp: frame.timestamp, t0: performance.now(), resolve, reject });
      this.proc.write([frame.data.subarray(0, i420Size(frame.width, frame.height))]);
    });
  }

  private drain(onMs: (ms: number) => void): void {
    for (;;) {
      let data: Uint8Array | null;
      try {
        data = this.reader.next();
      } catch (err) {
        void this.proc.kill();
        return;
      }
      if (!data) return;
      const p = this.pending.shift();
      if (!p) {
        void this.proc.kill();
        return;
      }
      onMs(performance.now() - p.t0);
      // The VP8 frame tag's P bit is 0 for a keyframe.
      p.resolve({ data, keyframe: (data[0] & 1) === 0, timestamp: p.timestamp });
    }
  }
}

/** I420 frames in, VP8 frames out (see the file header). */
export class FfmpegVp8Encoder implements VideoEncoder {
  readonly backend = 'native';
  lastMs = 0;
  private current: EncoderSettings;
  private fixedBitrate: boolean;
  private active: EncoderProcess;
  private spare?: EncoderProcess;
  private closed = false;

  constructor(
    private readonly path: string,
    opts: Vp8EncoderOptions,
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
    return new EncoderProcess(this.path, this.current, (ms) => (this.lastMs = ms));
  }

  /** Any change starts new processes at the new settings (the next frame is a keyframe). */
  async reconfigure(opts: Vp8EncoderOptions): Promise<void> {
    if (this.closed) throw new CodecError('closed', 'VP8 encoder is closed');
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
    if (this.closed) return Promise.reject(new CodecError('closed', 'VP8 encoder is closed'));
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
    const err = new CodecError('closed', 'VP8 encoder is closed');
    for (const p of this.active.pending.splice(0)) p.reject(err);
    await Promise.all([this.active.proc.kill(), this.spare?.proc.kill()]);
  }
}
