/**
 * The render stage, inside a session's loop worker: the session's renderer and its portrait state
 * (so nothing a renderer caches can be seen by another session), then the background
 * post-process. A renderer switch creates and prepares the new renderer before the old one is
 * disposed, so a failed switch leaves the session as it was.
 */
import type { RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import { allocI420, type I420Frame, type RgbaImage } from '../media/frame.ts';
import { createRenderer } from '../renderers/index.ts';
import type { PortraitState, RenderParams, Renderer, RendererOptions } from '../renderers/types.ts';
import { BackgroundProcessor, centredEllipse, headEllipse, type BackgroundMode, type Ellipse } from './background.ts';

/** Render parameters plus the background mode: everything a client sets on a live session's look. */
export interface LoopParams extends Partial<RenderParams> {
  background?: BackgroundMode;
}

export interface Rendered {
  frame: I420Frame;
  renderMs: number;
  backgroundMs: number;
  faceFound: boolean | null;
}

export class RenderStage {
  private renderer?: Renderer;
  private portrait?: PortraitState;
  private options?: RendererOptions;
  /** Parameters survive a renderer switch: they are re-applied to every new renderer. */
  private params: Partial<RenderParams> = {};
  private background: BackgroundMode = { mode: 'keep' };
  private readonly bg = new BackgroundProcessor();
  /** Whether face models may be loaded in this thread: a face-tracking renderer ran here, or the boot preloaded them. */
  private faceModels = false;

  get name(): string | undefined {
    return this.renderer?.name;
  }

  /**
   * Loads the face models ahead of a face-tracking renderer (a warm worker's boot), so that
   * dispose frees them whatever renderer the session then runs.
   */
  async preloadFaceModels(): Promise<void> {
    this.faceModels = true;
    await (await import('../face/models.ts')).loadFaceModels();
  }

  /** Loads a renderer and prepares the portrait (first set-up, renderer switch, output size change). */
  async load(name: RendererName, options: RendererOptions, portrait: RgbaImage): Promise<void> {
    if (name !== 'passthrough') this.faceModels = true;
    const next = await createRenderer(name, options);
    try {
      if (Object.keys(this.params).length) next.setParams?.(this.params);
      const state = await next.prepare(portrait);
      await this.renderer?.dispose();
      this.renderer = next;
      this.portrait = state;
      this.options = options;
    } catch (err) {
      await next.dispose().catch(() => {});
      throw err;
    }
  }

  async setPortrait(portrait: RgbaImage): Promise<void> {
    const r = this.ready();
    const old = this.portrait;
    this.portrait = await r.prepare(portrait);
    if (old) r.release?.(old);
  }

  /** Validated by the caller; a renderer that rejects a value throws and nothing is kept. */
  setParams(p: LoopParams): void {
    const { background, ...rp } = p;
    if (Object.keys(rp).length) {
      this.renderer?.setParams?.(rp);
      this.params = { ...this.params, ...rp };
    }
    if (background) this.background = background;
  }

  reset(): void {
    if (this.renderer?.reset && this.portrait) this.renderer.reset(this.portrait);
  }

  async render(driving: I420Frame, index: number): Promise<Rendered> {
    const r = this.ready();
    const out = allocI420(this.options!.outputWidth, this.options!.outputHeight, driving.timestamp);
    const t0 = performance.now();
    await r.render(this.portrait!, { frame: driving, index }, out);
    const renderMs = performance.now() - t0;
    if (this.background.mode !== 'keep') this.bg.apply(out, this.background, this.headRegion(out.width, out.height));
    return { frame: out, renderMs, backgroundMs: performance.now() - t0 - renderMs, faceFound: r.lastFaceFound ?? null };
  }

  /** Where the head is in the output: the warped portrait landmarks when the renderer has them, else a centred ellipse. */
  private headRegion(w: number, h: number): Ellipse {
    const st = this.portrait as { targets?: { x: Float64Array; y: Float64Array } } | undefined;
    if (st?.targets && st.targets.x.length >= 468) {
      const e = headEllipse(st.targets.x, st.targets.y, 468);
      if (e) return e;
    }
    return centredEllipse(w, h);
  }

  private ready(): Renderer {
    if (!this.renderer || !this.portrait || !this.options) throw new XplError('internal', 'the loop worker has no renderer yet');
    return this.renderer;
  }

  /**
   * Lets the renderer free native resources (onnxruntime sessions) before the thread ends; resolves
   * to the number of face-model sessions freed.
   */
  async dispose(): Promise<number> {
    await this.renderer?.dispose();
    this.renderer = undefined;
    return this.faceModels ? (await import('../face/models.ts')).releaseFaceModels() : 0;
  }
}
