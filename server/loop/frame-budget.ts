/**
 * The frame budget: when the machine runs short of CPU, the sessions' frame rate drops instead of
 * their latency growing.
 *
 * Render and encode keep only the latest frame and the decoder bounds its backlog, but when the
 * sessions together need more CPU than there is, every stage of every session waits for a core,
 * and each frame spends longer in the server although no queue grows. The cure is less work. So
 * every session reports how long its output frames spent in the server beyond what their render
 * takes on an idle machine (a slow renderer's own time is not overload: fewer frames would not
 * make it faster; a render slowed by the shortage is), and every half second the server looks at
 * the 75th percentile of those times across all sessions: over the budget, the frame-rate cap of
 * every session goes down by a factor; within it, up by a step (AIMD).
 *
 * - One cap for the whole server, because a CPU shortage is the machine's, not a session's: each
 *   session runs at the lower of its own maxFps and the cap, so sessions lose frame rate equally.
 * - The 75th percentile, because what users see is the tail (the goal is glass-to-glass p95).
 *   An overloaded mesh-warp server has a heavy one: half its frames within 73 ms of excess while
 *   a quarter took over 164 ms, so steering on the median left the slowest frames at two to four
 *   times the budget. Not the 90th: it lowered the cap more often where fewer frames did not
 *   help (on a machine busy with other work). A window holds about 15 frames per session: its
 *   three slowest (a keyframe, a garbage collection) cost nothing. Measured side by side in
 *   docs/BENCHMARKS.md, "Capacity and overload".
 * - Two windows over budget, not one: a machine shared with other work has bursts of a few
 *   hundred milliseconds that are gone before fewer frames could help, and each needless step
 *   down costs seconds of frame rate to climb back. A window over twice the budget is no burst
 *   to wait out: the cap goes down at once.
 * - The cap always moves (no band where it holds), so that it finds its way back up.
 */

import { metrics } from '../metrics.ts';

/** How often the cap is reconsidered: a window long enough to hold a few frames at the lowest rate. */
export const WINDOW_MS = 500;
/** After this long without frames (no session sending), the cap is lifted: the next sessions start free. */
const IDLE_MS = 4 * WINDOW_MS;
/** The cap is multiplied by this while over budget. */
const DECREASE = 0.75;
/** And raised by this many fps per window while within it. */
const INCREASE_FPS = 1;
/** Never below: a session is slowed, not frozen. */
export const MIN_FPS = 5;
/** Samples kept per window: 16 sessions at 60 fps. */
const MAX_SAMPLES = 512;
/** Which of a window's frames is compared with the budget (see above). */
const QUANTILE = 0.75;

export class FrameBudget {
  /** The server's cap, fps; Infinity while none applies. Fractional: the rate cap meets fractional rates on average. */
  private cap = Number.POSITIVE_INFINITY;
  private readonly samples = new Float64Array(MAX_SAMPLES);
  private count = 0;
  /** The highest maxFps among this window's frames: lowering starts from it, raising ends at it. */
  private ceiling = 0;
  private windowStart = Number.NaN;
  /** Whether the last window was over budget too. */
  private over = false;
  private readonly listeners = new Set<(cap: number) => void>();

  /** `budgetMs` 0 turns the budget off: no cap, ever. */
  constructor(private readonly budgetMs: number) {}

  /** The rate a session whose own cap is `maxFps` may run at now. */
  capFor(maxFps: number): number {
    return Math.min(maxFps, this.cap);
  }

  /** Called with the new cap whenever it changes; returns the unsubscribe. */
  onChange(listener: (cap: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * One output frame of a session whose own cap is `maxFps`, at `now` (ms): its server-side
   * latency and its render's own time (RenderFloor), ms.
   */
  observe(latencyMs: number, ownRenderMs: number, maxFps: number, now: number): void {
    if (this.budgetMs <= 0) return;
    if (Number.isNaN(this.windowStart) || now - this.windowStart > IDLE_MS) this.restart(now);
    if (this.count < MAX_SAMPLES) this.samples[this.count++] = Math.max(0, latencyMs - ownRenderMs);
    this.ceiling = Math.max(this.ceiling, maxFps);
    if (now - this.windowStart < WINDOW_MS) return;
    const late = this.quantile();
    const ceiling = this.ceiling;
    this.count = 0;
    this.ceiling = 0;
    this.windowStart = now;
    const from = Math.min(this.cap, ceiling);
    const wasOver = this.over;
    this.over = late > this.budgetMs;
    if (this.over && !wasOver && late <= 2 * this.budgetMs) return;
    if (this.over) this.set(Math.max(Math.min(MIN_FPS, ceiling), from * DECREASE));
    else this.set(from + INCREASE_FPS >= ceiling ? Number.POSITIVE_INFINITY : from + INCREASE_FPS);
  }

  /** A fresh window; after a pause with no frames at all, without the old cap. */
  private restart(now: number): void {
    const idle = !Number.isNaN(this.windowStart);
    this.count = 0;
    this.ceiling = 0;
    this.windowStart = now;
    this.over = false;
    if (idle) this.set(Number.POSITIVE_INFINITY);
  }

  private set(cap: number): void {
    if (cap === this.cap) return;
    metrics.frameBudgetChanges.inc({ direction: cap < this.cap ? 'down' : 'up' });
    metrics.frameBudgetCap.set(Number.isFinite(cap) ? cap : 0);
    this.cap = cap;
    for (const listener of this.listeners) listener(cap);
  }

  private quantile(): number {
    const window = this.samples.subarray(0, this.count).sort();
    return window[Math.floor(this.count * QUANTILE)];
  }
}

/** Render times remembered per session: about 10 s at 30 fps. */
const RENDER_HISTORY = 300;

/**
 * A session's render time on an idle machine, as the frame budget counts it: the shortest of its
 * recent renders. A renderer's own cost is in every one of them; what a CPU shortage adds is not
 * in the shortest.
 */
export class RenderFloor {
  private readonly times = new Float64Array(RENDER_HISTORY).fill(Number.POSITIVE_INFINITY);
  private next = 0;

  /** Adds a render's time, ms, and returns the floor. */
  push(renderMs: number): number {
    this.times[this.next] = renderMs;
    this.next = (this.next + 1) % RENDER_HISTORY;
    let floor = renderMs;
    for (const t of this.times) if (t < floor) floor = t;
    return floor;
  }
}
