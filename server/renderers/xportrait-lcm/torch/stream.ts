/**
 * A session's stream in the torch worker process, over its own Unix-socket connection (opened by
 * the session's loop worker: frames go loop worker ⇄ torch worker, nothing through the main
 * thread). Per frame: the aligned driving crop (uint8 RGB) and the patch boxes up, the generated
 * frame (uint8 RGB) down.
 *
 * Re-attach: when the connection drops (the worker died, or was killed as hung, and the server is
 * restarting it) the stream answers frames with null — the renderer holds its last output — while
 * it reconnects in the background, opens a new stream with the same options, re-encodes every
 * portrait it holds (it keeps their crops) and re-installs the current one. The temporal caches
 * start empty again, as after a portrait change.
 */
import { XplError } from '../../../errors.ts';
import { emptyTotals } from '../pipeline.ts';
import type { PatchBox } from '../patches.ts';
import { chwToRgb } from '../pixels.ts';
import type { LcmStream, RefHandle, StreamFrame, StreamInfo, StreamTotals } from '../stream.ts';
import { emptyIo, type FrameIo } from '../tensor-ops.ts';
import { WorkerConnection } from './connection.ts';

/** What the worker's stream is opened with (models/xportrait/engine/streams.py StreamOptions). */
export interface TorchStreamOptions {
  steps: number;
  stream_batch: boolean;
  seed: number;
  noise: 'fixed' | 'fresh';
  cfg: number;
  init: 'noise' | 'portrait';
  rule: 'skip-step' | 'linspace';
  decoder: 'taesd' | 'vae';
  output: 'u8' | 'f32';
  /** Bidirectional warm-up window: the first k frames of a stream denoised together (0 = off). */
  warmup: number;
}

export interface TorchOpenOptions {
  socket: string;
  stream: TorchStreamOptions;
  /** How long open() and a re-attach keep trying while the worker (re)starts. */
  attachTimeoutMs: number;
  weights: string;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
}

interface Ref {
  crop: Uint8Array;
  remote: number;
}

const RETRY_MS = 250;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function transient(err: unknown): boolean {
  const code = (err as { code?: string; workerCode?: string }).code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || (err as { workerCode?: string }).workerCode === 'not_ready' || /connection closed/.test((err as Error).message);
}

export class TorchStream implements LcmStream {
  io: FrameIo = emptyIo();
  readonly totals: StreamTotals = emptyTotals();
  readonly live = 0;
  info!: StreamInfo;
  /** The last frame's batched call(s): how many streams shared them, their rows, the number of calls. */
  lastBatch = { streams: 0, rows: 0, calls: 0 };
  private conn: WorkerConnection | null = null;
  private remote = 0;
  private readonly refs = new Set<Ref>();
  private current: Ref | null = null;
  private attaching: Promise<void> | null = null;
  private disposed = false;
  private size = 0;

  private constructor(private readonly o: TorchOpenOptions) {}

  /** Opens a stream, waiting (up to attachTimeoutMs) for a worker that is still starting. */
  static async open(o: TorchOpenOptions): Promise<TorchStream> {
    const s = new TorchStream(o);
    await s.attach();
    return s;
  }

  private async attach(): Promise<void> {
    const deadline = Date.now() + this.o.attachTimeoutMs;
    for (;;) {
      let conn: WorkerConnection | null = null;
      try {
        conn = await WorkerConnection.connect(this.o.socket);
        const opened = await conn.call('open', { options: this.o.stream });
        const info = opened.header.info as Record<string, unknown>;
        this.size = info.image_size as number;
        this.info = {
          engine: 'torch',
          dir: this.o.weights,
          ep: String(info.device).startsWith('cuda') ? 'cuda' : 'cpu',
          requestedEp: String(info.device).startsWith('cuda') ? 'cuda' : 'cpu',
          precision: info.dtype === 'float16' ? 'fp16' : 'fp32',
          loadMs: 0,
          warmupMs: 0,
          fileBytes: 0,
          rssDeltaBytes: 0,
          imageSize: this.size,
          cacheBytes: (opened.header.rows as number) * (info.row_bytes as number),
          refKvBytes: 0,
          shared: true,
        };
        const remote = opened.header.stream as number;
        for (const r of this.refs) r.remote = (await conn.call('encode_reference', { stream: remote }, r.crop)).header.ref as number;
        if (this.current) await conn.call('use_reference', { stream: remote, ref: this.current.remote });
        conn.onLost = (err) => this.lost(err);
        this.conn = conn;
        this.remote = remote;
        return;
      } catch (err) {
        conn?.close();
        if (this.disposed) throw new XplError('internal', 'xportrait-lcm torch stream disposed');
        if (!transient(err) || Date.now() > deadline) {
          throw new XplError('renderer_unavailable', `xportrait-lcm: no torch worker at ${this.o.socket}: ${(err as Error).message}`, { cause: err });
        }
        await sleep(RETRY_MS);
      }
    }
  }

  private lost(err: Error): void {
    this.conn = null;
    if (this.disposed) return;
    this.o.log?.('xportrait-lcm: torch worker connection lost; re-attaching', { error: err.message });
    this.reattach();
  }

  /** Starts (or joins) a re-attach; its promise rejects if the worker stays away past the timeout. */
  private reattach(): Promise<void> {
    if (this.attaching) return this.attaching;
    const run = this.attach().then(() => {
      this.totals.reattaches++;
      this.o.log?.('xportrait-lcm: re-attached to the torch worker');
    });
    this.attaching = run;
    run
      .catch((err: Error) => this.o.log?.('xportrait-lcm: re-attaching failed; will retry on the next frame', { error: err.message }))
      .finally(() => {
        this.attaching = null;
      });
    return run;
  }

  /** The connection, or null while re-attaching (in the background). */
  private ready(): WorkerConnection | null {
    if (this.disposed) throw new XplError('internal', 'xportrait-lcm: stream used after dispose');
    if (!this.conn) void this.reattach().catch(() => {});
    return this.conn;
  }

  /** The connection, waiting for a re-attach if one is needed. */
  private async connected(): Promise<WorkerConnection> {
    for (;;) {
      const c = this.ready();
      if (c) return c;
      await this.reattach();
    }
  }

  async encodeReference(crop: Uint8Array): Promise<RefHandle> {
    const ref: Ref = { crop: Uint8Array.from(crop), remote: 0 };
    for (;;) {
      const c = await this.connected();
      try {
        ref.remote = (await c.call('encode_reference', { stream: this.remote }, crop)).header.ref as number;
        this.refs.add(ref);
        return ref;
      } catch (err) {
        if (!c.closed) throw err;
      }
    }
  }

  async useReference(handle: RefHandle): Promise<void> {
    const ref = handle as Ref;
    this.current = ref;
    const c = this.ready();
    if (!c) return; // installed by the re-attach
    await c.call('use_reference', { stream: this.remote, ref: ref.remote }).catch((err: Error) => {
      if (!c.closed) throw err;
    });
  }

  releaseReference(handle: RefHandle): void {
    const ref = handle as Ref;
    this.refs.delete(ref);
    if (this.current === ref) this.current = null;
    this.conn?.call('release_reference', { stream: this.remote, ref: ref.remote }).catch(() => {});
  }

  async push(driving: Uint8Array, boxes: readonly PatchBox[]): Promise<StreamFrame | null> {
    const c = this.ready();
    if (!c) return null;
    const sent = c.sent;
    const received = c.received;
    let reply;
    try {
      reply = await c.call('push', { stream: this.remote, boxes: boxes.map((b) => [...b]) }, driving);
    } catch (err) {
      if (c.closed) return null; // lost mid-frame: held by the renderer, re-attaching
      throw err;
    }
    const h = reply.header;
    // the socket carries the frame both ways; a bus only on a GPU: the frame's pixels up and down,
    // and the per-call indices (timesteps, slots, positions, masks) — this stream's share of them
    const io = emptyIo();
    io.hostInputBytes = c.sent - sent;
    io.hostOutputBytes = c.received - received;
    if (this.info.ep === 'cuda') {
      io.frameH2dBytes = driving.length;
      io.frameD2hBytes = reply.payload.length;
      io.h2dBytes = io.frameH2dBytes + Math.round(h.other_bytes as number);
      io.d2hBytes = io.frameD2hBytes;
    }
    io.ms.worker = h.tick_ms as number;
    io.runs = h.batch_rows as number;
    this.lastBatch = { streams: h.batch_streams as number, rows: h.batch_rows as number, calls: h.batch_calls as number };
    this.io = io;
    this.totals.frames++;
    for (const k of ['h2dBytes', 'd2hBytes', 'frameH2dBytes', 'frameD2hBytes', 'hostInputBytes', 'hostOutputBytes'] as const) this.totals[k] += io[k];
    if (h.frame === null || h.frame === undefined) return null;
    if (this.o.stream.output === 'f32') {
      const raw = new Float32Array(reply.payload.buffer.slice(reply.payload.byteOffset, reply.payload.byteOffset + reply.payload.length));
      return { frame: h.frame as number, image: chwToRgb(raw, this.size), raw };
    }
    return { frame: h.frame as number, image: new Uint8Array(reply.payload.buffer, reply.payload.byteOffset, reply.payload.length) };
  }

  reset(): void {
    this.conn?.call('reset', { stream: this.remote }).catch(() => {});
  }

  async inspectCache(k: number): Promise<{ cache: Float32Array; mask: Float32Array }> {
    const r = await (await this.connected()).call('inspect_cache', { stream: this.remote, step: k });
    const p = r.payload;
    return { cache: new Float32Array(p.buffer.slice(p.byteOffset, p.byteOffset + p.length)), mask: Float32Array.from(r.header.mask as number[]) };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.conn?.close(); // the worker frees the stream, its rows and portraits with the connection
    this.conn = null;
  }
}

