/**
 * The caller's voice, relayed behind the avatar: Opus RTP from the session's ingest audio track
 * goes out again — back to the caller on the same peer connection (sendrecv) and to every WHEP
 * viewer — each packet `delay` ms after it arrived, where the delay follows the video's processing
 * latency. Voice and avatar then leave the server together, and the RTCP sender reports of both
 * map capture time to send time the same way (a receiver's lip-sync reads them).
 *
 * Nothing is decoded: packets keep their payload, RTP timestamp and sequence number (header
 * extensions are dropped: their ids belong to the caller's negotiation); each output's sender gives
 * them its own SSRC and payload type.
 *
 * The delay target is `videoDelayMs()`, read at most every 250 ms. Audio starts when the video
 * does (until its latency is known, packets are dropped), at the video's delay: a receiver's jitter
 * buffer sized on an undelayed start would otherwise grow when the delay arrives, and stay large.
 * After that the applied delay follows the target at most 5 % faster or slower than real time (a
 * 1 ms nudge per 20 ms packet), ignoring changes under 10 ms; a change over 100 ms (the renderer
 * switched, a stall) is taken at once — one glitch rather than seconds out of sync. The delay stays
 * within 0..1000 ms. Packets leave in arrival order. At most 1 s of audio is held; the queue is a
 * fixed ring.
 */
import { MediaStreamTrack, RtpHeader, RtpPacket } from 'werift';

export interface AudioRelayOptions {
  /** The video's current server-side latency in ms (NaN while unknown). */
  videoDelayMs: () => number;
  /** Clock in ms (performance.now); injectable for tests. */
  now?: () => number;
}

export interface AudioRelayInfo {
  enabled: boolean;
  delayMs: number;
  packetsIn: number;
  packetsOut: number;
  dropped: number;
  outputs: number;
}

const MAX_DELAY_MS = 1000;
const TARGET_REFRESH_MS = 250;
/** Largest change of the applied delay per ms of real time. */
const SLEW = 0.05;
/** Differences between the applied delay and the target smaller than this are left alone. */
const DEADBAND_MS = 10;
/** Differences larger than this are not slewed but jumped. */
const JUMP_MS = 100;
/** 1 s of 10 ms packets (Opus' shortest usual frame) fits. */
const CAPACITY = 128;

export class AudioRelay {
  /** A session parameter: when false nothing is relayed (incoming packets are dropped). */
  enabled = true;
  packetsIn = 0;
  packetsOut = 0;
  dropped = 0;

  private readonly outputs = new Set<MediaStreamTrack>();
  private readonly due = new Float64Array(CAPACITY);
  private readonly packets: Array<RtpPacket | undefined> = new Array(CAPACITY);
  private head = 0;
  private count = 0;
  private delay = 0;
  private target = Number.NaN;
  private targetAt = Number.NEGATIVE_INFINITY;
  private lastArrival?: number;
  private lastDue = Number.NEGATIVE_INFINITY;
  private timer?: NodeJS.Timeout;
  private readonly unsubscribers: Array<() => void> = [];
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly opts: AudioRelayOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** Relays what arrives on a peer's incoming audio track. */
  attachIngest(track: MediaStreamTrack): void {
    const { unSubscribe } = track.onReceiveRtp.subscribe((rtp) => this.push(rtp));
    this.unsubscribers.push(unSubscribe);
  }

  /** A new outgoing audio track fed by the relay; `remove()` stops feeding it. */
  addOutput(): { track: MediaStreamTrack; remove: () => void } {
    const track = new MediaStreamTrack({ kind: 'audio' });
    this.outputs.add(track);
    return { track, remove: () => this.outputs.delete(track) };
  }

  /** One incoming RTP packet. */
  push(rtp: RtpPacket): void {
    const now = this.now();
    this.packetsIn++;
    if (this.closed || !this.enabled || this.outputs.size === 0 || !this.follow(now)) {
      this.dropped++;
      return;
    }
    const h = rtp.header;
    const packet = new RtpPacket(new RtpHeader({ payloadType: h.payloadType, sequenceNumber: h.sequenceNumber, timestamp: h.timestamp, marker: h.marker, ssrc: h.ssrc }), rtp.payload);
    const due = Math.max(now + this.delay, this.lastDue);
    this.lastDue = due;
    if (this.count === CAPACITY) {
      this.packets[this.head] = undefined;
      this.head = (this.head + 1) % CAPACITY;
      this.count--;
      this.dropped++;
    }
    const at = (this.head + this.count) % CAPACITY;
    this.due[at] = due;
    this.packets[at] = packet;
    this.count++;
    if (!this.timer) this.arm(now);
  }

  /** Moves the applied delay towards the video's latency, within the slew limit; false while that latency is unknown. */
  private follow(now: number): boolean {
    if (now - this.targetAt >= TARGET_REFRESH_MS || Number.isNaN(this.target)) {
      const v = this.opts.videoDelayMs();
      if (Number.isFinite(v)) this.target = Math.min(MAX_DELAY_MS, Math.max(0, v));
      this.targetAt = now;
    }
    if (Number.isNaN(this.target)) return false;
    const off = Math.abs(this.target - this.delay);
    if (this.lastArrival === undefined || off > JUMP_MS) {
      this.delay = this.target;
    } else if (off >= DEADBAND_MS) {
      const step = (now - this.lastArrival) * SLEW;
      this.delay += Math.max(-step, Math.min(step, this.target - this.delay));
    }
    this.lastArrival = now;
    return true;
  }

  private arm(now: number): void {
    this.timer = setTimeout(() => this.flush(), Math.max(0, this.due[this.head] - now));
  }

  private flush(): void {
    this.timer = undefined;
    const now = this.now();
    while (this.count > 0 && this.due[this.head] <= now + 0.5) {
      const packet = this.packets[this.head]!;
      this.packets[this.head] = undefined;
      this.head = (this.head + 1) % CAPACITY;
      this.count--;
      if (!this.enabled) continue;
      for (const t of this.outputs) t.writeRtp(packet);
      this.packetsOut++;
    }
    if (this.count > 0 && !this.closed) this.arm(now);
  }

  info(): AudioRelayInfo {
    return { enabled: this.enabled, delayMs: Math.round(this.delay * 10) / 10, packetsIn: this.packetsIn, packetsOut: this.packetsOut, dropped: this.dropped, outputs: this.outputs.size };
  }

  /** Idempotent: stops relaying and drops what is queued. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    for (const u of this.unsubscribers.splice(0)) u();
    this.outputs.clear();
    this.packets.fill(undefined);
    this.count = 0;
  }
}
