/**
 * The frame-rate cap: output follows the input rate, but never above the session's cap, which is
 * the lower of its maxFps and its frame budget (frame-budget.ts).
 *
 * Spacing is read on the sender's capture clock (RTP, 90 kHz), not on arrival: network jitter
 * bunches arrivals together, and a 30 fps stream must not lose frames to a 30 fps cap. Each
 * accepted frame books the next slot one interval after the previous slot (not after the frame),
 * so any rate below the input's is met on average — 20 of a 30 fps input keeps 2 frames in 3 —
 * rather than only its integer fractions (30, 15, 10, …), which the frame budget needs to give
 * sessions equal shares.
 */

/** RTP video clock rate: timestamps tick 90,000 times a second. */
export const RTP_CLOCK = 90_000;

/** A frame this much of an interval early still counts as on time: a sender's capture clock is not exact. */
const SLACK = 0.15;

const RTP_WRAP = 2 ** 32;

export class RateCap {
  /** RTP time of the next slot; undefined before the first frame. */
  private due: number | undefined;
  private interval: number;
  /** With temporal layers: the base layer's frame interval (RTP ticks), from its last two frames; 0 until known. */
  private baseInterval = 0;
  private lastBase: number | undefined;

  constructor(fps: number) {
    this.interval = RTP_CLOCK / fps;
  }

  set fps(fps: number) {
    this.interval = RTP_CLOCK / fps;
  }

  /**
   * Whether a frame with this RTP timestamp (and temporal layer, when the sender encodes layers)
   * may go on; a frame that comes before its slot is refused. When the base layer alone comes as
   * often as the cap allows, enhancement-layer frames are refused outright: the frames that go on
   * are then base-layer frames, which the decoder takes anyway, and the decoder can skip the rest.
   * Slots alone would not keep to the base layer: one lost or late frame shifts them onto the
   * enhancement layer for good.
   */
  accept(rtp: number, tid?: number): boolean {
    if (tid === 0) {
      const step = this.lastBase === undefined ? 0 : (rtp - this.lastBase) | 0;
      if (step > 0 && step < RTP_CLOCK) this.baseInterval = step;
      this.lastBase = rtp;
    } else if (tid !== undefined && this.baseInterval > 0 && this.interval >= this.baseInterval * (1 - SLACK)) {
      return false;
    }
    if (this.due !== undefined) {
      // Signed distance on the 32-bit RTP clock, so a wrap reads as a small step.
      const late = (rtp - this.due) | 0;
      // More than 10 s early is a timestamp reset, not a fast sender.
      const reset = late <= -RTP_CLOCK * 10;
      if (late < -this.interval * SLACK && !reset) return false;
      // After a pause or a reset the slots restart from this frame: no burst to catch up on missed ones.
      this.due = ((late > this.interval || reset ? rtp : this.due) + this.interval) % RTP_WRAP;
      return true;
    }
    this.due = (rtp + this.interval) % RTP_WRAP;
    return true;
  }
}
