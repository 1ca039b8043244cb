/**
 * The frame-rate cap: output follows the input rate, but never above the session's maxFps.
 *
 * Spacing is read on the sender's capture clock (RTP, 90 kHz), not on arrival: network jitter
 * bunches arrivals together, and a 30 fps stream must not lose frames to a 30 fps cap.
 */

/** RTP video clock rate: timestamps tick 90,000 times a second. */
export const RTP_CLOCK = 90_000;

export class RateCap {
  private last: number | undefined;

  constructor(public maxFps: number) {}

  /** Whether a frame with this RTP timestamp may go on; a frame that comes too soon after the last accepted one is refused. */
  accept(rtp: number): boolean {
    if (this.last !== undefined) {
      const gap = (rtp - this.last) >>> 0;
      // 15 % slack: a sender's capture clock is not exact.
      const minGap = (RTP_CLOCK / this.maxFps) * 0.85;
      // A gap of more than 10 s is a timestamp reset or wrap, not a fast sender.
      if (gap < minGap && gap < RTP_CLOCK * 10) return false;
    }
    this.last = rtp;
    return true;
  }
}
