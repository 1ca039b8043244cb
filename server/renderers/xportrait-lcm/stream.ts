/**
 * One session's LCM stream, wherever its pack is loaded. The renderer talks to an `LcmStream`:
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
import { acquirePack, releasePack, type LoadedPack, type LoadOptions } from './pack.ts';
import { emptyTotals, LcmPipeline, type PipelineOptions, type PushResult, type RefKv } from './pipeline.ts';
import { emptyIo, type FrameIo } from './tensor-ops.ts';

/** What the stats report about the pack and this stream's share of it. */
export interface StreamInfo {
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
  /** Loaded in the shared pack worker (true) or in this thread (false). */
  shared: boolean;
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
  /** VAE encode + reference K/V of an aligned portrait crop (CHW, [-1,1]). */
  encodeReference(crop: Float32Array): Promise<{ ref: RefHandle; latent: Float32Array }>;
  useReference(ref: RefHandle): Promise<void>;
  releaseReference(ref: RefHandle): void;
  push(driving: Float32Array, local: Float32Array): Promise<PushResult | null>;
  reset(): void;
  inspectCache(k: number): Promise<{ cache: Float32Array; mask: Float32Array }>;
  dispose(): Promise<void>;
}

export interface StreamOptions {
  pack: string;
  load: Omit<LoadOptions, 'log'>;
  pipeline: PipelineOptions;
}

function infoOf(pack: LoadedPack, p: LcmPipeline, shared: boolean): StreamInfo {
  return {
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

  private constructor(
    private readonly pack: LoadedPack,
    readonly pipeline: LcmPipeline,
    shared: boolean,
  ) {
    this.info = infoOf(pack, pipeline, shared);
  }

  static async open(o: StreamOptions, log?: LoadOptions['log'], shared = false): Promise<LocalStream> {
    const pack = await acquirePack(o.pack, { ...o.load, log });
    try {
      return new LocalStream(pack, new LcmPipeline(pack, o.pipeline), shared);
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

  async encodeReference(crop: Float32Array): Promise<{ ref: RefHandle; latent: Float32Array }> {
    const latent = await this.pipeline.encode(crop);
    return { ref: await this.pipeline.computeReference(latent), latent };
  }

  async useReference(ref: RefHandle): Promise<void> {
    this.pipeline.useReference(ref as RefKv);
  }

  releaseReference(ref: RefHandle): void {
    this.pipeline.releaseReference(ref as RefKv);
  }

  push(driving: Float32Array, local: Float32Array): Promise<PushResult | null> {
    return this.pipeline.push(driving, local);
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
// The pack worker's side of one stream, and the render worker's client.

interface PushReply {
  result: PushResult | null;
  io: FrameIo;
  totals: StreamTotals;
  live: number;
}

/**
 * Serves one RemoteStream on `port`, in order (a stream's calls never overlap, so a reset cannot
 * land in the middle of a frame). When the other end goes away — the session closed, or its
 * render worker died — the stream's references, caches and pack reference are released.
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
    encodeReference: inOrder(async ({ crop }: { crop: Float32Array }) => {
      const { ref, latent } = await s().encodeReference(crop);
      const id = nextRef++;
      refs.set(id, ref);
      return withTransfer({ id, latent }, [latent.buffer as ArrayBuffer]);
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
    push: inOrder(async ({ driving, local }: { driving: Float32Array; local: Float32Array }) => {
      const st = s();
      const result = await st.push(driving, local);
      const reply: PushReply = { result, io: st.io, totals: { ...st.totals }, live: st.live };
      return withTransfer(reply, result ? [result.image.buffer as ArrayBuffer] : []);
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
  encodeReference(a: { crop: Float32Array }): { id: number; latent: Float32Array };
  useReference(a: { id: number }): void;
  releaseReference(a: { id: number }): void;
  push(a: { driving: Float32Array; local: Float32Array }): PushReply;
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

  async encodeReference(crop: Float32Array): Promise<{ ref: RefHandle; latent: Float32Array }> {
    const { id, latent } = await this.rpc.call('encodeReference', { crop });
    return { ref: { id }, latent };
  }

  useReference(ref: RefHandle): Promise<void> {
    return this.rpc.call('useReference', ref as { id: number });
  }

  releaseReference(ref: RefHandle): void {
    this.rpc.call('releaseReference', ref as { id: number }).catch(() => {});
  }

  async push(driving: Float32Array, local: Float32Array): Promise<PushResult | null> {
    // copied, not transferred: the renderer refills these buffers every frame
    const r = await this.rpc.call('push', { driving, local });
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
