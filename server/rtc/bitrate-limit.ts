/**
 * Asking the sender for less while the frame budget holds the session below its frame rate.
 *
 * The frame budget (loop/frame-budget.ts) lowers what a session renders and encodes, but not what
 * it decodes: VP8 frames depend on each other, so every frame the sender sends is decoded
 * whatever the cap (unless the sender uses temporal layers). Under a CPU shortage that decoding
 * is the share of the work the cap cannot reach. A receiver's estimated maximum bitrate (RTCP
 * REMB; libwebrtc takes it as a ceiling on its own estimate) lets the
 * server ask for fewer bits, which a libwebrtc sender meets with a lower quality, resolution or
 * frame rate, each of which costs the decoder (and the sender's encoder) less. Measured in
 * docs/BENCHMARKS.md ("Capacity and overload"): decoding about 30 % cheaper, the same tail.
 *
 * The ceiling is the incoming bitrate measured while no limit applied, times the share of its
 * frame rate the session may render: measured again under the limit, the incoming bitrate would
 * follow the limit down to the floor. Resent every second while it applies (an RTCP packet may be
 * lost); lifted with a ceiling far above any stream, sent a few times for the same reason.
 */

/** How often the ceiling is resent while it applies, and the window of the bitrate measurement. */
export const REMB_INTERVAL_MS = 1000;
/**
 * Never ask for less. The answer tells libwebrtc senders the same floor (x-google-min-bitrate,
 * connection.ts), so that their own estimate does not start a webcam's picture blurry or let it
 * sink under loss; below it they would not go for a REMB either.
 */
export const MIN_BPS = 600_000;
/** The "no limit" ceiling, sent when the limit is lifted. */
export const LIFTED_BPS = 100_000_000;
/** How many times the lift is sent (it may be lost like any RTCP packet). */
const LIFT_REPEATS = 3;

export class IncomingBitrateLimit {
  private share = 1;
  /** Bytes since the window began, and when it began. */
  private bytes = 0;
  private windowStart = Number.NaN;
  /** The last whole window's bitrate measured without a limit, bit/s; 0 before one. */
  private unlimitedBps = 0;
  private timer?: NodeJS.Timeout;
  private liftsLeft = 0;
  /** A ceiling has been sent and not yet lifted: what comes in now is the sender obeying it. */
  private asking = false;

  /** `send` puts one REMB on the wire. */
  constructor(private readonly send: (bps: number) => void, private readonly now: () => number = () => performance.now()) {}

  /** One RTP packet of the stream, its payload's size in bytes. */
  observe(payloadBytes: number): void {
    const t = this.now();
    if (Number.isNaN(this.windowStart)) this.windowStart = t;
    this.bytes += payloadBytes;
    const elapsed = t - this.windowStart;
    if (elapsed < REMB_INTERVAL_MS) return;
    if (!this.asking) this.unlimitedBps = (this.bytes * 8 * 1000) / elapsed;
    this.bytes = 0;
    this.windowStart = t;
    // A limit set before the first measurement applies once there is one.
    if (this.share < 1 && !this.timer) this.tick();
  }

  /** The ceiling sent now, bit/s; null while none applies. */
  get ceilingBps(): number | null {
    if (this.share >= 1 || this.unlimitedBps === 0) return null;
    return Math.max(MIN_BPS, Math.round(this.share * this.unlimitedBps));
  }

  /** The share of its frame rate the session may render now (the budget's cap / its own maxFps); 1 lifts the limit. */
  setShare(share: number): void {
    const next = Math.min(1, Math.max(0, share));
    if (next === this.share) return;
    const wasLimited = this.share < 1;
    this.share = next;
    if (next < 1) {
      this.liftsLeft = 0;
      this.tick();
    } else if (wasLimited && this.asking) {
      this.liftsLeft = LIFT_REPEATS;
      this.tick();
    }
  }

  /** Whether a request is still to be resent (a ceiling applies, or lifts are left). */
  get pending(): boolean {
    return this.timer !== undefined;
  }

  private tick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const ceiling = this.ceilingBps;
    if (ceiling !== null) {
      this.asking = true;
      this.send(ceiling);
    } else if (this.liftsLeft > 0) {
      this.liftsLeft--;
      this.send(LIFTED_BPS);
      if (this.liftsLeft === 0) {
        // Measured again from here: the window under the limit is not what the sender sends freely.
        this.asking = false;
        this.bytes = 0;
        this.windowStart = Number.NaN;
        return;
      }
    } else {
      return;
    }
    this.timer = setTimeout(() => this.tick(), REMB_INTERVAL_MS);
    this.timer.unref?.();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** A REMB bitrate as RTCP writes it: an 18-bit mantissa and a 6-bit exponent. */
export function rembFields(bps: number): { brExp: number; brMantissa: number } {
  let brExp = 0;
  let m = Math.floor(bps);
  while (m >= 1 << 18) {
    m = Math.floor(m / 2);
    brExp++;
  }
  return { brExp, brMantissa: m };
}
