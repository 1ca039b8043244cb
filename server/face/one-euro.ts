/**
 * One Euro filter (Casiez et al., CHI 2012) over a vector of values that move together (a
 * landmark set): one cutoff per frame from the mean speed of all values, so the shape is smoothed
 * coherently (no per-point lag differences).
 */
export interface OneEuroParams {
  /** Cutoff at rest, Hz (lower = smoother, more lag at slow speeds). */
  minCutoff: number;
  /** Cutoff increase per unit of speed (speed in `unit`s per second). */
  beta: number;
  /** Cutoff of the speed estimate, Hz. */
  dCutoff: number;
}

export const DEFAULT_ONE_EURO: OneEuroParams = { minCutoff: 1.2, beta: 8, dCutoff: 1.0 };

function alpha(cutoff: number, dt: number): number {
  const tau = 1 / (2 * Math.PI * cutoff);
  return 1 / (1 + tau / dt);
}

export class OneEuroVector {
  private x: Float64Array;
  private dx: Float64Array;
  private lastT = -1;
  private primed = false;

  constructor(
    readonly size: number,
    public params: OneEuroParams = DEFAULT_ONE_EURO,
  ) {
    this.x = new Float64Array(size);
    this.dx = new Float64Array(size);
  }

  reset(): void {
    this.primed = false;
    this.lastT = -1;
  }

  /**
   * Filters `input` in place into `out`. `unit` converts values to the speed unit (e.g. face
   * size in pixels, so beta is in face sizes per second).
   */
  filter(input: ArrayLike<number>, tMs: number, out: Float32Array | Float64Array, unit = 1): void {
    const n = this.size;
    if (!this.primed) {
      for (let i = 0; i < n; i++) {
        this.x[i] = input[i];
        this.dx[i] = 0;
        out[i] = input[i];
      }
      this.primed = true;
      this.lastT = tMs;
      return;
    }
    let dt = (tMs - this.lastT) / 1000;
    if (!(dt > 0) || dt > 1) dt = 1 / 30;
    this.lastT = tMs;
    const ad = alpha(this.params.dCutoff, dt);
    let speed = 0;
    for (let i = 0; i < n; i++) {
      const d = (input[i] - this.x[i]) / dt;
      this.dx[i] += ad * (d - this.dx[i]);
      speed += Math.abs(this.dx[i]);
    }
    speed /= n * (unit || 1);
    const a = alpha(this.params.minCutoff + this.params.beta * speed, dt);
    for (let i = 0; i < n; i++) {
      this.x[i] += a * (input[i] - this.x[i]);
      out[i] = this.x[i];
    }
  }
}
