/**
 * Turns the RTP packets of one video stream into whole frames, in order, never handing the
 * decoder a frame whose references are missing. What a packet says (does it start a frame, is it
 * a keyframe) and how a frame's payloads join up is the payload format's (vp8-payload.ts,
 * h264-payload.ts); the rest is the same for every codec.
 *
 * Packets are kept by (unwrapped) sequence number, so reordering within the window is harmless
 * and NACK retransmissions (werift asks for them) fill gaps. A frame is released when all its
 * packets, from the one with the start bit to the one with the marker, are present and it
 * continues the previous frame. When a gap is still open after `lossTimeoutMs`, the chain is
 * broken: the assembler drops what it holds up to the next keyframe and reports the loss so
 * that the peer can ask for one (PLI).
 *
 * A gap is a sequence number missing below the highest one received. A frame that has every
 * packet so far but not yet its last is still arriving, however long it takes: a sender paces a
 * large keyframe over a few hundred ms when its bandwidth estimate is low. Timing that as a gap
 * (before) made 8 of the 11 "losses" of an overloaded run, each asking for yet another large
 * keyframe. Anything else that keeps the next frame from completing (a packet of another frame
 * before its marker, a frame that does not start where the last one ended) is timed like a gap,
 * so that a broken stream cannot hold the chain until the packet limit evicts it.
 *
 * Padding-only packets (no payload once werift strips the padding) carry no media but use
 * sequence numbers: without RTX (the server negotiates none) libwebrtc sends its bandwidth probes
 * as such packets between frames. They are held as fillers, so that they are no gap, and skipped.
 */

export interface RtpIn {
  sequenceNumber: number;
  timestamp: number;
  marker: boolean;
  payload: Uint8Array;
}

export interface AssembledFrame {
  data: Uint8Array;
  keyframe: boolean;
  rtpTimestamp: number;
  /** Temporal layer (TID) when the sender uses temporal scalability, else undefined. */
  tid?: number;
}

/** One packet as its payload format reads it. */
export interface ParsedPayload {
  /** The packet starts a frame. */
  start: boolean;
  /** It starts a frame that decodes on its own. */
  keyframe: boolean;
  tid?: number;
  /** The part of the payload the format joins into the frame. */
  payload: Uint8Array;
}

/** A codec's RTP payload format: reading one packet, joining a frame's packets. */
export interface PayloadFormat {
  readonly codec: 'vp8' | 'h264';
  /** Null when the packet is malformed for this format. */
  parse(payload: Uint8Array): ParsedPayload | null;
  /** The frame the codec's decoder takes, from its packets' parsed payloads in order. */
  join(parts: Uint8Array[]): Uint8Array;
}

export interface AssemblerOptions {
  /** How long a gap may stay open (waiting for a retransmission) before the chain counts as broken. */
  lossTimeoutMs: number;
  /** Packets held at most; older ones are dropped first. */
  maxPackets: number;
}

interface Packet {
  seq: number;
  /** Padding only: no media, just a sequence number to skip. */
  filler: boolean;
  timestamp: number;
  marker: boolean;
  start: boolean;
  keyframe: boolean;
  tid?: number;
  payload: Uint8Array;
  arrival: number;
}

const FILLER: ParsedPayload = { start: false, keyframe: false, payload: new Uint8Array(0) };

export class FrameAssembler {
  private readonly packets = new Map<number, Packet>();
  private highest: number | undefined;
  /** Unwrapped sequence number the next frame must start at; undefined while waiting for a keyframe. */
  private next: number | undefined;
  private gapSince: number | undefined;
  readonly counters = { frames: 0, lostChains: 0, droppedPackets: 0, malformed: 0 };

  constructor(
    private readonly format: PayloadFormat,
    private readonly onFrame: (f: AssembledFrame) => void,
    private readonly onLoss: (reason: string) => void,
    private readonly opts: AssemblerOptions = { lossTimeoutMs: 150, maxPackets: 1024 },
  ) {}

  push(rtp: RtpIn, now = performance.now()): void {
    const filler = rtp.payload.length === 0;
    const d = filler ? FILLER : this.format.parse(rtp.payload);
    if (!d) {
      this.counters.malformed++;
      return;
    }
    const seq = this.unwrap(rtp.sequenceNumber);
    if (this.next !== undefined && seq < this.next) return;
    if (!this.packets.has(seq)) {
      this.packets.set(seq, { seq, filler, timestamp: rtp.timestamp, marker: rtp.marker, start: d.start, keyframe: d.keyframe, tid: d.tid, payload: d.payload, arrival: now });
    }
    if (this.packets.size > this.opts.maxPackets) this.evictOldest();
    this.drain(now);
  }

  /** True while no keyframe has started the chain (at start, or after a loss). */
  get waitingForKeyframe(): boolean {
    return this.next === undefined;
  }

  /** Lets a stalled gap time out even when no packet arrives (call it from a timer). */
  tick(now = performance.now()): void {
    this.drain(now);
  }

  private unwrap(seq16: number): number {
    if (this.highest === undefined) {
      this.highest = seq16;
      return seq16;
    }
    const base = this.highest & ~0xffff;
    let cand = base | seq16;
    if (cand - this.highest > 0x8000) cand -= 0x10000;
    else if (this.highest - cand > 0x8000) cand += 0x10000;
    if (cand > this.highest) this.highest = cand;
    return cand;
  }

  private drain(now: number): void {
    for (;;) {
      if (this.next === undefined && !this.resyncOnKeyframe()) return;
      this.skipFillers();
      const frame = this.frameAt(this.next!);
      if (frame !== 'arriving' && frame !== 'stuck') {
        this.gapSince = undefined;
        this.emit(frame);
        continue;
      }
      if (frame === 'arriving') {
        this.gapSince = undefined;
        return;
      }
      this.gapSince ??= now;
      if (now - this.gapSince < this.opts.lossTimeoutMs) return;
      this.counters.lostChains++;
      // The broken frame's first packet goes, so that the resync cannot pick this frame again: when
      // it was a keyframe (the one a PLI asked for, say), its start stayed the oldest keyframe start
      // held, and the chain went back to it and timed out anew every lossTimeoutMs, passing over
      // the whole keyframes that came after it until the packet limit evicted it (seconds).
      if (this.packets.delete(this.next!)) this.counters.droppedPackets++;
      this.next = undefined;
      this.gapSince = undefined;
      this.onLoss('packets lost');
    }
  }

  /** Padding between frames: the next frame starts after it. */
  private skipFillers(): void {
    for (let p = this.packets.get(this.next!); p?.filler; p = this.packets.get(this.next!)) {
      this.packets.delete(p.seq);
      this.next!++;
    }
  }

  /**
   * The frame starting at `first`: its packets when they are all there; 'arriving' while every
   * packet so far is there but not yet its last; 'stuck' when a packet is missing below the
   * highest received, or what is there cannot make a frame.
   */
  private frameAt(first: number): Packet[] | 'arriving' | 'stuck' {
    const head = this.packets.get(first);
    if (head && !head.start) return 'stuck';
    const parts: Packet[] = [];
    for (let s = first; ; s++) {
      const p = this.packets.get(s);
      if (!p) return this.hasGap(first) ? 'stuck' : 'arriving';
      if (p.filler || p.timestamp !== head!.timestamp) return 'stuck';
      parts.push(p);
      if (p.marker) return parts;
    }
  }

  /** Whether a packet from `next` up to the highest received is missing (every held packet is at or after `next`). */
  private hasGap(next: number): boolean {
    return this.highest !== undefined && this.packets.size < this.highest - next + 1;
  }

  /** Drops everything before the oldest buffered keyframe start and continues from it. */
  private resyncOnKeyframe(): boolean {
    let key: number | undefined;
    for (const p of this.packets.values()) if (p.keyframe && (key === undefined || p.seq < key)) key = p.seq;
    if (key === undefined) {
      // Nothing decodable can come from inter frames without their keyframe: hold only recent packets.
      if (this.packets.size > 256) this.evictOldest(this.packets.size - 256);
      return false;
    }
    for (const s of [...this.packets.keys()]) {
      if (s < key) {
        this.packets.delete(s);
        this.counters.droppedPackets++;
      }
    }
    this.next = key;
    return true;
  }

  private emit(parts: Packet[]): void {
    const data = this.format.join(parts.map((p) => p.payload));
    for (const p of parts) this.packets.delete(p.seq);
    this.next = parts[parts.length - 1].seq + 1;
    this.counters.frames++;
    this.onFrame({ data, keyframe: parts[0].keyframe, rtpTimestamp: parts[0].timestamp, tid: parts[0].tid });
  }

  private evictOldest(count = 1): void {
    const keys = [...this.packets.keys()].sort((a, b) => a - b);
    for (const k of keys.slice(0, count)) {
      this.packets.delete(k);
      this.counters.droppedPackets++;
    }
  }
}
