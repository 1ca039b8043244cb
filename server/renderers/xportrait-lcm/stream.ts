/**
 * One session's LCM stream, wherever its engine runs. The renderer talks to an `LcmStream`, in
 * frames: the aligned driving crop (uint8 RGB, S×S) and its patch boxes in, the generated frame
 * (uint8 RGB) out — what crosses a process boundary for the torch engine (torch/stream.ts).
 * For the onnx engine:
 *
 *  - LocalStream: the pack is loaded in this thread (acquirePack shares it with other streams of
 *    the same thread) — tests, benchmarks, a renderer created without a pack port;
 *  - RemoteStream: the pack lives in the server's shared pack worker (pack-worker.ts), reached
 *    through a MessagePort, so every session on one pack shares one copy of the weights (and,
 *    on a GPU, one device) while each keeps its own caches, noise and reference K/V there.
 *
 * serveStream() is the pack worker's side of one RemoteStream.
 */
import type { MessagePort } from 'node:worker_threads';
import { RpcClient, serveRpc, withTransfer } from '../../workers/rpc.ts';
import { XplError } from '../../errors.ts';
import type { LoadedPack, LoadOptions } from './pack.ts';
import { acquirePack, releasePack } from './pack-cache.ts';
import { emptyTotals, LcmPipeline, type PipelineOptions } from './pipeline.ts';
import type { RefKv } from './reference-kv.ts';
import { localCanvas, type PatchBox } from './patches.ts';
import { chwToRgb, rgbToChw } from './pixels.ts';
import { emptyIo, type FrameIo } from './tensor-ops.ts';

/** What the stats report about the engine and this stream's share of it. */
export interface StreamInfo {
  engine: 'onnx' | 'torch';
  /** The pack folder (onnx) or the weights (torch). */
  dir: string;
  ep: LoadedPack['ep'];
  requestedEp: LoadedPack['ep'];
  fallbackReason?: string;
  precision: LoadedPack['precision'];
  loadMs: number;
  warmupMs: number;
  fileBytes: number;
  rssDeltaBytes: number;
  imageSize: number;
  cacheBytes: number;
  refKvBytes: number;
  /** Loaded in a shared worker (the pack worker thread, or the torch worker process) rather than in this thread. */
  shared: boolean;
}

/** A finished frame: uint8 RGB HWC, S×S (and the decoder's CHW floats when the stream was opened with `raw`). */
export interface StreamFrame {
  frame: number;
  image: Uint8Array;
  raw?: Float32Array;
}

export type StreamTotals = ReturnType<typeof emptyTotals>;

/** A portrait's reference, as the stream that computed it knows it. */
export type RefHandle = object;

export interface LcmStream {
  readonly info: StreamInfo;
  /** The last push's accounting, the running totals, device tensors held (as last reported). */
  readonly io: FrameIo;
  readonly totals: StreamTotals;
  readonly live: number;
  /** VAE encode + reference K/V of the portrait's model-frame crop (uint8 RGB, S×S). */
  encodeReference(crop: Uint8Array): Promise<RefHandle>;
  useReference(ref: RefHandle): Promise<void>;
  releaseReference(ref: RefHandle): void;
  /** One aligned driving crop and its eye/mouth patch boxes; the frame that finished, if any. */
  push(driving: Uint8Array, boxes: readonly PatchBox[]): Promise<StreamFrame | null>;
  reset(): void;
  inspectCache(k: number): Promise<{ cache: Float32Array; mask: Float32Array }>;
  dispose(): Promise<void>;
}

export interface StreamOptions {
  pack: string;
  load: Omit<LoadOptions, 'log'>;
  pipeline: PipelineOptions;
  /** Also return the decoder's float output (tests comparing engines). */
  raw?: boolean;
}

function infoOf(pack: LoadedPack, p: LcmPipeline, shared: boolean): StreamInfo {
  return {
    engine: 'onnx',
    dir: pack.dir,
    ep: pack.ep,
    requestedEp: pack.requestedEp,
    fallbackReason: pack.fallbackReason,
    precision: pack.precision,
    loadMs: pack.loadMs,
    warmupMs: pack.warmupMs,
    fileBytes: pack.fileBytes,
    rssDeltaBytes: pack.rssDeltaBytes,
    imageSize: pack.geometry.imageSize,
    cacheBytes: p.cacheBytes,
    refKvBytes: p.refKvBytes,
    shared,
  };
}

export class LocalStream implements LcmStream {
  readonly info: StreamInfo;
  private readonly size: number;
  private readonly driving: Float32Array;
  private readonly local: Float32Array;

  private constructor(
    private readonly pack: LoadedPack,
    readonly pipeline: LcmPipeline,
    shared: boolean,
    private readonly raw: boolean,
  ) {
    this.info = infoOf(pack, pipeline, shared);
    this.size = pack.geometry.imageSize;
    this.driving = new Float32Array(pack.geometry.imageLen);
    this.local = new Float32Array(pack.geometry.imageLen);
  }

  static async open(o: StreamOptions, log?: LoadOptions['log'], shared = false): Promise<LocalStream> {
    const pack = await acquirePack(o.pack, { ...o.load, log });
    try {
      return new LocalStream(pack, new LcmPipeline(pack, o.pipeline), shared, !!o.raw);
    } catch (err) {
      await releasePack(pack);
      throw err;
    }
  }

  get io(): FrameIo {
    return this.pipeline.io;
  }

  get totals(): StreamTotals {
    return this.pipeline.totals;
  }

  get live(): number {
    return this.pipeline.ops.live;
  }

  private checkFrame(rgb: Uint8Array): void {
    if (rgb.length !== 3 * this.size * this.size) throw new XplError('bad_request', `xportrait-lcm: a frame must be ${this.size}×${this.size} RGB (${3 * this.size * this.size} bytes), got ${rgb.length}`);
  }

  async encodeReference(crop: Uint8Array): Promise<RefHandle> {
    this.checkFrame(crop);
    return this.pipeline.computeReference(await this.pipeline.encode(rgbToChw(crop, this.size)));
  }

  async useReference(ref: RefHandle): Promise<void> {
    this.pipeline.useReference(ref as RefKv);
  }

  releaseReference(ref: RefHandle): void {
    this.pipeline.releaseReference(ref as RefKv);
  }

  async push(driving: Uint8Array, boxes: readonly PatchBox[]): Promise<StreamFrame | null> {
    this.checkFrame(driving);
    rgbToChw(driving, this.size, this.driving);
    localCanvas(this.driving, this.size, boxes, this.local);
    const r = await this.pipeline.push(this.driving, this.local);
    if (!r) return null;
    return { frame: r.frame, image: chwToRgb(r.image, this.size), ...(this.raw ? { raw: r.image } : {}) };
  }

  reset(): void {
    this.pipeline.reset();
  }

  inspectCache(k: number): Promise<{ cache: Float32Array; mask: Float32Array }> {
    return this.pipeline.inspectCache(k);
  }

  async dispose(): Promise<void> {
    this.pipeline.dispose();
    await releasePack(this.pack);
  }
}

// ---------------------------------------------------------------------------------------------
// The pack worker's side of one stream, and the loop worker's client.

interface PushReply {
  result: StreamFrame | null;
  io: FrameIo;
  totals: StreamTotals;
  live: number;
}

/**
 * Serves one RemoteStream on `port`, in order (a stream's calls never overlap, so a reset cannot
 * land in the middle of a frame). When the other end goes away — the session closed, or its
 * loop worker died — the stream's references, caches and pack reference are released.
 */
export function serveStream(port: MessagePort, hooks: { log?: LoadOptions['log']; onOpen?: () => void; onClose?: () => void } = {}): void {
  let stream: LocalStream | null = null;
  const refs = new Map<number, RefHandle>();
  let nextRef = 1;
  let chain: Promise<unknown> = Promise.resolve();
  const s = (): LocalStream => {
    if (!stream) throw new XplError('internal', 'xportrait-lcm stream used before open()');
    return stream;
  };
  const inOrder =
    <A, R>(fn: (a: A) => R | Promise<R>) =>
    (a: A): Promise<R> => {
      const run = chain.then(() => fn(a));
      chain = run.catch(() => {});
      return run;
    };
  serveRpc(port, {
    open: inOrder(async (o: StreamOptions) => {
      if (stream) throw new XplError('internal', 'xportrait-lcm stream opened twice');
      stream = await LocalStream.open(o, hooks.log, true);
      hooks.onOpen?.();
      return stream.info;
    }),
    encodeReference: inOrder(async ({ crop }: { crop: Uint8Array }) => {
      const ref = await s().encodeReference(crop);
      const id = nextRef++;
      refs.set(id, ref);
      return { id };
    }),
    useReference: inOrder(({ id }: { id: number }) => {
      const ref = refs.get(id);
      if (!ref) throw new XplError('internal', `xportrait-lcm: unknown reference ${id}`);
      return s().useReference(ref);
    }),
    releaseReference: inOrder(({ id }: { id: number }) => {
      const ref = refs.get(id);
      refs.delete(id);
      if (ref) s().releaseReference(ref);
    }),
    push: inOrder(async ({ driving, boxes }: { driving: Uint8Array; boxes: PatchBox[] }) => {
      const st = s();
      const result = await st.push(driving, boxes);
      const reply: PushReply = { result, io: st.io, totals: { ...st.totals }, live: st.live };
      return withTransfer(reply, result ? [result.image.buffer as ArrayBuffer, ...(result.raw ? [result.raw.buffer as ArrayBuffer] : [])] : []);
    }),
    reset: inOrder(() => s().reset()),
    inspectCache: inOrder(({ k }: { k: number }) => s().inspectCache(k)),
  });
  port.on('close', () => {
    inOrder(async () => {
      const st = stream;
      if (!st) return;
      stream = null;
      try {
        for (const ref of refs.values()) st.releaseReference(ref);
        refs.clear();
        await st.dispose();
      } finally {
        hooks.onClose?.();
      }
    })(undefined).catch((err: Error) => hooks.log?.('xportrait-lcm: freeing a closed stream failed', { error: err.message }));
  });
}

type StreamMethods = {
  open(o: StreamOptions): StreamInfo;
  encodeReference(a: { crop: Uint8Array }): { id: number };
  useReference(a: { id: number }): void;
  releaseReference(a: { id: number }): void;
  push(a: { driving: Uint8Array; boxes: readonly PatchBox[] }): PushReply;
  reset(a: undefined): void;
  inspectCache(a: { k: number }): { cache: Float32Array; mask: Float32Array };
};

export class RemoteStream implements LcmStream {
  io: FrameIo = emptyIo();
  totals: StreamTotals = emptyTotals();
  live = 0;
  private closing = false;

  private constructor(
    private readonly rpc: RpcClient<StreamMethods>,
    readonly info: StreamInfo,
  ) {}

  /**
   * Opens a stream in the pack worker at the other end of `port`. `onLost` runs if that worker
   * goes away while the stream is open (the renderer cannot go on without it).
   */
  static async open(port: MessagePort, o: StreamOptions, onLost: (err: Error) => void): Promise<RemoteStream> {
    const rpc = new RpcClient<StreamMethods>(port, 'xportrait-lcm pack');
    let self: RemoteStream | null = null;
    // lost during open(): open() itself rejects, the caller fails the set-up
    rpc.onCrash = (err) => {
      if (self && !self.closing) onLost(err);
    };
    try {
      self = new RemoteStream(rpc, await rpc.call('open', o));
    } catch (err) {
      await rpc.close();
      throw err;
    }
    return self;
  }

  async encodeReference(crop: Uint8Array): Promise<RefHandle> {
    const { id } = await this.rpc.call('encodeReference', { crop });
    return { id };
  }

  useReference(ref: RefHandle): Promise<void> {
    return this.rpc.call('useReference', ref as { id: number });
  }

  releaseReference(ref: RefHandle): void {
    this.rpc.call('releaseReference', ref as { id: number }).catch(() => {});
  }

  async push(driving: Uint8Array, boxes: readonly PatchBox[]): Promise<StreamFrame | null> {
    // copied, not transferred: the renderer refills its buffer every frame
    const r = await this.rpc.call('push', { driving, boxes });
    this.io = r.io;
    this.totals = r.totals;
    this.live = r.live;
    return r.result;
  }

  reset(): void {
    this.rpc.call('reset', undefined).catch(() => {});
  }

  inspectCache(k: number): Promise<{ cache: Float32Array; mask: Float32Array }> {
    return this.rpc.call('inspectCache', { k });
  }

  async dispose(): Promise<void> {
    this.closing = true;
    await this.rpc.close();
  }
}
