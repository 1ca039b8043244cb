/**
 * One ffmpeg child process with its pipes, for the native codecs (ffmpeg-decoder.ts,
 * ffmpeg-encoder.ts): stdin takes what it codes, stdout's bytes queue up for the caller's reader,
 * and the last lines it wrote to stderr say why it exited.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { ByteQueue } from './byte-queue.ts';

const STDERR_TAIL = 2048;

/** One ffmpeg process with its pipes; `onData` sees stdout, `onExit` fires once. */
export class CodecProcess {
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
