/**
 * The frame budget: when the machine runs short of CPU, a session's frame rate drops instead of
 * its latency growing.
 *
 * Render and encode keep only the latest frame and the decoder bounds its backlog, but when the
 * sessions together need more CPU than there is, every stage of every session waits for a core,
 * and each frame spends longer in the server although no queue grows. The cure is less work, so
 * the loop watches how long its frames spend in the server beyond their render (a slow renderer's
 * own time is not overload: fewer frames would not make it faster) and, while the median of a
 * half-second window exceeds the budget, lowers the session's frame-rate cap; while it is within
 * the budget, it raises the cap back. The median, not a high percentile: a lone slow frame (a
 * keyframe, a pause for garbage collection, a neighbour's burst) must not cost seconds of frame
 * rate; under overload every frame is late, and the median says so within one window. The
 * cap always moves (there is no band where it holds): a session held at a low rate while others
 * sit at a high one would stay there, and fairness needs every session to probe upwards. Down by a factor, up by a step (AIMD): sessions that share the
 * CPU see the same delays, and AIMD takes them to equal shares of it.
 */

/** How often the cap is reconsidered: a window long enough to hold a few frames at the lowest rate. */
export const WINDOW_MS = 500;
/** The cap is multiplied by this while over budget. */
const DECREASE = 0.75;
/** And raised by this many fps per window while within it. */
const INCREASE_FPS = 1;
/** Never below: a session is slowed, not frozen. */
export const MIN_FPS = 5;
/** Samples kept per window; at 60 fps a window holds 30. */
const MAX_SAMPLES = 64;

export class FrameBudget {
  /** The current cap, fps; fractional (the rate cap meets fractional rates on average). */
  fps: number;
  private readonly samples = new Float64Array(MAX_SAMPLES);
  private count = 0;
  private windowStart = Number.NaN;

  /** `budgetMs` 0 turns the budget off: the cap stays at maxFps. */
  constructor(
    private readonly budgetMs: number,
    private maxFps: number,
  ) {
    this.fps = maxFps;
  }

  /** The session's own cap changed: the budget never goes above it, and starts again from it. */
  setMaxFps(maxFps: number): void {
    this.maxFps = maxFps;
    this.fps = maxFps;
    this.count = 0;
    this.windowStart = Number.NaN;
  }

  /**
   * One output frame: its server-side latency and its render time, ms, at `now` (ms). Returns the
   * new cap when this frame closed a window that changed it.
   */
  observe(latencyMs: number, renderMs: number, now: number): number | undefined {
    if (this.budgetMs <= 0) return undefined;
    if (Number.isNaN(this.windowStart)) this.windowStart = now;
    if (this.count < MAX_SAMPLES) this.samples[this.count++] = Math.max(0, latencyMs - renderMs);
    if (now - this.windowStart < WINDOW_MS) return undefined;
    const median = this.median();
    this.count = 0;
    this.windowStart = now;
    const before = this.fps;
    if (median > this.budgetMs) this.fps = Math.max(Math.min(MIN_FPS, this.maxFps), this.fps * DECREASE);
    else this.fps = Math.min(this.maxFps, this.fps + INCREASE_FPS);
    return this.fps !== before ? this.fps : undefined;
  }

  private median(): number {
    const window = this.samples.subarray(0, this.count).sort();
    return window[this.count >> 1];
  }
}
