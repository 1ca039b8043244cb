/**
 * The render worker: one per session. It owns the session's renderer instance and portrait state,
 * so nothing a renderer caches can be seen by another session, and a slow or crashing renderer
 * never blocks the event loop.
 */
import { parentPort } from 'node:worker_threads';
import type { RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import { allocI420, type I420Frame, type RgbaImage } from '../media/frame.ts';
import { createRenderer } from '../renderers/index.ts';
import type { PortraitState, RenderParams, Renderer, RendererOptions } from '../renderers/types.ts';
import { serveRpc, withTransfer } from '../workers/rpc.ts';

let renderer: Renderer | undefined;
let portraitState: PortraitState | undefined;
let options: RendererOptions | undefined;

async function load(name: RendererName, opts: RendererOptions, portrait: RgbaImage): Promise<void> {
  const next = await createRenderer(name, opts);
  const state = await next.prepare(portrait);
  await renderer?.dispose();
  renderer = next;
  portraitState = state;
  options = opts;
}

export const methods = {
  async init(a: { renderer: RendererName; options: RendererOptions; portrait: RgbaImage }) {
    await load(a.renderer, a.options, a.portrait);
    return { renderer: renderer!.name };
  },
  async setPortrait(a: { portrait: RgbaImage }) {
    if (!renderer) throw new XplError('internal', 'render worker not initialised');
    portraitState = await renderer.prepare(a.portrait);
    return true;
  },
  async render(a: { frame: I420Frame; index: number }) {
    if (!renderer || !portraitState || !options) throw new XplError('internal', 'render worker not initialised');
    const out = allocI420(options.outputWidth, options.outputHeight, a.frame.timestamp);
    const t0 = performance.now();
    await renderer.render(portraitState, { frame: a.frame, index: a.index }, out);
    return withTransfer({ frame: out, ms: performance.now() - t0, faceFound: renderer.lastFaceFound ?? null }, [out.data.buffer as ArrayBuffer]);
  },
  setParams(a: Partial<RenderParams>) {
    renderer?.setParams?.(a);
    return true;
  },
  reset() {
    if (renderer?.reset && portraitState) renderer.reset(portraitState);
    return true;
  },
  async dispose() {
    await renderer?.dispose();
    renderer = undefined;
    return true;
  },
};

export type RenderMethods = typeof methods;

if (parentPort) serveRpc(parentPort, methods);
