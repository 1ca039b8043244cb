/**
 * A session's loop worker: one thread that owns the session's decoder, renderer and encoder (the
 * codecs themselves are ffmpeg processes or wasm workers; see media/codec.ts) and runs the frame
 * loop (pipeline.ts). Two channels reach it: the RPC channel (workers/rpc.ts) for set-up and live
 * changes, and a media port for frames in and out (messages.ts).
 *
 * Workers are started ahead of need by the warm pool (worker-pool.ts): `boot` loads the code and
 * the models a renderer needs, so a new session finds a worker ready.
 */
import { parentPort, type MessagePort } from 'node:worker_threads';
import type { RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import type { CodecBackend, VideoCodec, VideoDecoder, VideoEncoder } from '../media/codec.ts';
import { openDecoder, openEncoder } from '../media/open-codec.ts';
import { preloadRenderer } from '../renderers/index.ts';
import type { RgbaImage } from '../media/frame.ts';
import type { RendererOptions } from '../renderers/types.ts';
import { serveRpc } from '../workers/rpc.ts';
import type { EncodeSettings } from './encode.ts';
import type { FromWorker, ToWorker } from './messages.ts';
import { LoopPipeline } from './pipeline.ts';
import { RenderStage, type LoopParams } from './render.ts';

export interface LoopSetup {
  renderer: RendererName;
  options: RendererOptions;
  portrait: RgbaImage;
  params: LoopParams;
  codec: CodecBackend;
  output: EncodeSettings;
  /** The driving video's codec and the output's. */
  codecs: { ingest: VideoCodec; egress: VideoCodec };
  renderTimeoutMs: number;
}

const render = new RenderStage();
let pipeline: LoopPipeline | undefined;
let media: MessagePort | undefined;
/** Codecs opened by boot, for the session that takes this worker. */
let warm: { decoder?: VideoDecoder; encoder?: VideoEncoder } = {};

function live(): LoopPipeline {
  if (!pipeline) throw new XplError('internal', 'the loop worker is not set up');
  return pipeline;
}

export const methods = {
  /**
   * Gets ready for a session before there is one: the renderer's code, the face models for
   * renderers that track faces, a decoder and an encoder at the default output (started processes,
   * for the native codec).
   */
  async boot(a: { renderer: RendererName; codec: CodecBackend; output: EncodeSettings }) {
    const [decoder, encoder] = await Promise.all([
      openDecoder(a.codec),
      openEncoder(a.codec, a.output),
      preloadRenderer(a.renderer),
      // Only face-tracking renderers pay for onnxruntime (a native addon, slow to load).
      a.renderer !== 'passthrough' ? render.preloadFaceModels() : undefined,
    ]);
    decoder.prewarm();
    warm = { decoder, encoder };
    return true;
  },
  /** Sets the loop up: renderer and portrait first (they may fail), then the codecs, then frames may flow. */
  async init(a: LoopSetup & { media: MessagePort }) {
    await render.load(a.renderer, a.options, a.portrait);
    if (Object.keys(a.params).length) render.setParams(a.params);
    media = a.media;
    const port = media;
    pipeline = new LoopPipeline(render, {
      codec: a.codec,
      output: a.output,
      renderTimeoutMs: a.renderTimeoutMs,
      codecs: a.codecs,
      warm,
      send: (msg: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(msg, transfer),
    });
    warm = {};
    port.on('message', (msg: ToWorker) => pipeline?.receive(msg));
    await pipeline.open();
    return { renderer: render.name };
  },
  /** Switches the renderer (and, for an output size change, the size): the new one is ready before the old one goes. */
  async setRenderer(a: { renderer: RendererName; options: RendererOptions; portrait: RgbaImage; output: { width: number; height: number; maxFps: number } }) {
    await render.load(a.renderer, a.options, a.portrait);
    live().setOutput(a.output);
    return { renderer: render.name };
  },
  async setPortrait(a: { portrait: RgbaImage }) {
    await render.setPortrait(a.portrait);
    return true;
  },
  setOutput(a: { width: number; height: number; maxFps: number }) {
    live().setOutput(a);
    return true;
  },
  setParams(a: LoopParams) {
    render.setParams(a);
    return true;
  },
  /** The codecs' child processes: the main thread adds their CPU to the session's cost, tests kill them. */
  processes() {
    return live().processes();
  },
  reset() {
    render.reset();
    return true;
  },
  async dispose() {
    await Promise.all([warm.decoder?.close(), warm.encoder?.close()]);
    await pipeline?.close();
    pipeline = undefined;
    media?.close();
    return { faceModelsReleased: await render.dispose() };
  },
};

export type LoopMethods = typeof methods;

if (parentPort) serveRpc(parentPort, methods, { inOrder: true });
