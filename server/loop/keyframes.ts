/**
 * The keyframe policy of a session, in one place.
 *
 * In: the decoder can start only on a keyframe (at start, after lost packets, after a decoder
 * failure or backlog, after a loop-worker restart). While waiting, inter frames are not passed on
 * and the sender is asked for a keyframe (RTCP PLI), and again until one comes. The peer itself
 * spaces PLIs out (rtc/peer.ts), so a burst of triggers never becomes a burst of keyframes; an ask
 * the spacing held back goes out at the next check after the spacing ends. Checking only every
 * 250 ms (before) let a held-back ask wait up to half a second while the picture stood still.
 *
 * Out: the encoder makes a keyframe when the loop starts and whenever a receiver needs one — the
 * sender's own receiver lost packets (its PLI), a viewer joined or lost packets, the output size
 * changed — by telling the loop worker (messages.ts 'keyframe').
 */

/** How often the policy checks, while waiting, whether to ask the sender (again). */
const ASK_INTERVAL_MS = 50;

export interface KeyframeSource {
  /** Asks the sender for a keyframe (rate-limited by the peer). */
  requestKeyframe(reason: string): void;
  /** True while the RTP assembler itself has no keyframe to start a chain from. */
  readonly waitingForKeyframe: boolean;
}

export class KeyframePolicy {
  private waiting = true;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly source: KeyframeSource,
    /** Tells the loop worker that the next encoded frame must be a keyframe. */
    private readonly forceOutput: () => void,
    /** Counts a keyframe request (stats). */
    private readonly counted: () => void,
  ) {
    this.timer = setInterval(() => {
      if (this.waiting || this.source.waitingForKeyframe) this.source.requestKeyframe('waiting for keyframe');
    }, ASK_INTERVAL_MS);
    this.timer.unref();
  }

  /** In: whether a driving frame may go to the decoder. */
  admit(keyframe: boolean): boolean {
    if (keyframe) this.waiting = false;
    return !this.waiting;
  }

  /** In: the decoder cannot go on without a keyframe (lost chain, decode error, backlog, new decoder). */
  needKeyframe(reason: string): void {
    this.waiting = true;
    this.counted();
    this.source.requestKeyframe(reason);
  }

  /** Out: the next output frame must be a keyframe. */
  keyframeOut(): void {
    this.forceOutput();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
