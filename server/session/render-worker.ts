/**
 * The render worker: one per session. It owns the session's renderer instance and portrait state,
 * so nothing a renderer caches can be seen by another session, and a slow or crashing renderer
 * never blocks the event loop.
 */
import { parentPort } from 'node:worker_threads';
import type { RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import { allocI420, fromWire, toWire, type RgbaImage, type WireFrame } from '../media/frame.ts';
import { releaseFaceModels } from '../face/models.ts';
import { createRenderer } from '../renderers/index.ts';
import type { PortraitState, RenderParams, Renderer, RendererOptions } from '../renderers/types.ts';
import { serveRpc, withTransfer } from '../workers/rpc.ts';
import { BackgroundProcessor, centredEllipse, headEllipse, type BackgroundMode, type Ellipse } from './background.ts';

let renderer: Renderer | undefined;
let portraitState: PortraitState | undefined;
let options: RendererOptions | undefined;
/** Parameters survive a renderer switch: they are re-applied to every new renderer. */
let params: Partial<RenderParams> = {};
let background: BackgroundMode = { mode: 'keep' };
const bgProcessor = new BackgroundProcessor();

async function load(name: RendererName, opts: RendererOptions, portrait: RgbaImage): Promise<void> {
  const next = await createRenderer(name, opts);
  try {
    if (Object.keys(params).length) next.setParams?.(params);
    const state = await next.prepare(portrait);
    await renderer?.dispose();
    renderer = next;
    portraitState = state;
    options = opts;
  } catch (err) {
    await next.dispose().catch(() => {});
    throw err;
  }
}

/** Where the head is in the output: the warped portrait landmarks when the renderer has them, else a centred ellipse. */
function headRegion(w: number, h: number): Ellipse {
  const st = portraitState as { targets?: { x: Float64Array; y: Float64Array } } | undefined;
  if (st?.targets && st.targets.x.length >= 468) {
    const e = headEllipse(st.targets.x, st.targets.y, 468);
    if (e) return e;
  }
  return centredEllipse(w, h);
}

export interface WorkerParams extends Partial<RenderParams> {
  background?: BackgroundMode;
}

export const methods = {
  async init(a: { renderer: RendererName; options: RendererOptions; portrait: RgbaImage }) {
    await load(a.renderer, a.options, a.portrait);
    return { renderer: renderer!.name };
  },
  async setPortrait(a: { portrait: RgbaImage }) {
    if (!renderer) throw new XplError('internal', 'render worker not initialised');
    const old = portraitState;
    portraitState = await renderer.prepare(a.portrait);
    if (old) renderer.release?.(old);
    return true;
  },
  async render(a: { frame: WireFrame; index: number }) {
    if (!renderer || !portraitState || !options) throw new XplError('internal', 'render worker not initialised');
    const out = allocI420(options.outputWidth, options.outputHeight, a.frame.timestamp);
    const t0 = performance.now();
    await renderer.render(portraitState, { frame: fromWire(a.frame), index: a.index }, out);
    const renderMs = performance.now() - t0;
    if (background.mode !== 'keep') bgProcessor.apply(out, background, headRegion(out.width, out.height));
    const ms = performance.now() - t0;
    const wire = toWire(out);
    return withTransfer({ frame: wire, ms, renderMs, backgroundMs: ms - renderMs, faceFound: renderer.lastFaceFound ?? null }, [wire.buffer]);
  },
  /** Validated by the caller; a renderer that rejects a value throws and nothing is kept. */
  setParams(a: WorkerParams) {
    const { background: bg, ...rp } = a;
    if (Object.keys(rp).length) {
      renderer?.setParams?.(rp);
      params = { ...params, ...rp };
    }
    if (bg) background = bg;
    return true;
  },
  reset() {
    if (renderer?.reset && portraitState) renderer.reset(portraitState);
    return true;
  },
  async dispose() {
    await renderer?.dispose();
    renderer = undefined;
    await releaseFaceModels();
    return true;
  },
};

export type RenderMethods = typeof methods;

if (parentPort) serveRpc(parentPort, methods);
