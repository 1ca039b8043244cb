/**
 * The one interface every renderer implements (see docs/ARCHITECTURE.md). A renderer instance
 * belongs to one session and runs inside that session's loop worker (loop/render.ts), never on the event loop.
 */
import type { MessagePort } from 'node:worker_threads';
import type { LcmSettings } from '../config.ts';
import type { I420Frame, RgbaImage } from '../media/frame.ts';

/** What a renderer keeps about one portrait: computed once by prepare(), reused every frame. */
export interface PortraitState {
  readonly width: number;
  readonly height: number;
}

/** One driving frame as the renderer receives it. */
export interface DrivingFrame {
  /** The decoded webcam frame, at its own resolution. */
  frame: I420Frame;
  /** Monotonic frame counter within the session (gaps mean dropped frames). */
  index: number;
}

/** What of the portrait the output shows: its head (default), head and shoulders, or the whole picture. */
export const FRAMINGS = ['head', 'bust', 'full'] as const;
export type Framing = (typeof FRAMINGS)[number];

export interface RenderParams {
  expressionGain: number;
  poseGain: number;
  smoothing: number;
  gaze: boolean;
  /** mesh-warp: the crop of the portrait around its face. */
  framing: Framing;
  /** mesh-warp: magnification of that crop (1 = the framing as defined, 0.5..3). */
  zoom: number;
}

export interface Renderer<P extends PortraitState = PortraitState> {
  readonly name: string;
  prepare(portrait: RgbaImage): Promise<P>;
  /** Writes the output frame into `out` (preallocated at the session's output size). */
  render(p: P, d: DrivingFrame, out: I420Frame): Promise<void>;
  /** New neutral pose / calibration. */
  reset?(p: P): void;
  /** Whether the last render found a driving face; absent for renderers that do not track one. */
  readonly lastFaceFound?: boolean | null;
  setParams?(params: Partial<RenderParams>): void;
  /** Frees what prepare() allocated for a portrait that will not be rendered again (e.g. GPU buffers). */
  release?(p: P): void;
  dispose(): Promise<void>;
}

export interface RendererOptions {
  outputWidth: number;
  outputHeight: number;
  /** mesh-warp: the framing and zoom a session starts with (the server's --framing / --zoom). */
  framing?: Framing;
  zoom?: number;
  /** Model pack folder, for renderers that use one. */
  pack?: string;
  /**
   * xportrait-lcm: a port to this session's stream in the shared pack worker (attached in the main
   * thread by rendererChannels); without it the renderer loads the pack in its own thread.
   */
  packPort?: MessagePort;
  /** xportrait-lcm: the engine and pipeline settings (the config's `lcm` section). */
  lcm?: LcmSettings;
  /** xportrait-lcm --engine torch: the socket of the torch worker process (started by rendererChannels). */
  torchSocket?: string;
}

export type RendererFactory = (opts: RendererOptions) => Promise<Renderer>;
