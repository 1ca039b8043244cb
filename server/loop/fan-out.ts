/**
 * Fan-out: one encoded output frame goes back to the sender (sendrecv offers) and to every WHEP
 * viewer; each packetises it for its own SSRC and sequence numbers, and a viewer that has not yet
 * had a keyframe skips frames until one comes (ViewerPeer.sendFrame).
 */
import type { ViewerPeer } from '../rtc/viewer-peer.ts';

export interface Sender {
  readonly sendsBack: boolean;
  sendFrame(data: Uint8Array, rtpTimestamp: number): void;
}

export class FanOut {
  constructor(
    private readonly sender: Sender,
    private readonly viewers: ReadonlyMap<string, ViewerPeer>,
  ) {}

  /** Whether anyone receives the output: without an audience the loop encodes nothing. */
  get audience(): boolean {
    return this.sender.sendsBack || this.viewers.size > 0;
  }

  send(data: Uint8Array, rtpTimestamp: number, keyframe: boolean): void {
    if (this.sender.sendsBack) this.sender.sendFrame(data, rtpTimestamp);
    for (const v of this.viewers.values()) v.sendFrame(data, rtpTimestamp, keyframe);
  }
}
