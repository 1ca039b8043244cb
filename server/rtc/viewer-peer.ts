/** A WHEP viewer's peer connection (see ViewerPeer). */
import type { RTCPeerConnection } from 'werift';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { VideoCodec } from '../media/codec.ts';
import type { AudioRelay } from './audio-relay.ts';
import { IceWatchdog, MEDIA_STREAM_ID, VideoEgress, createPeerConnection, gathered, localSdp, type ConnectionOptions } from './connection.ts';
import { inspectViewerOffer, withoutUnusableFormats } from './sdp.ts';
import { correctSenderClock } from './sender-clock.ts';

export interface ViewerPeerOptions extends ConnectionOptions {
  log: Logger;
  /** The codec the session encodes: the viewer receives that one. */
  codec: VideoCodec;
  /** The session's audio relay: a viewer that offers to receive audio gets the caller's (delayed to the video). */
  audio?: AudioRelay;
}

/**
 * A WHEP viewer: a werift peer that only sends the session's encoded output (and relayed audio).
 * It never decodes or encodes anything; the session hands it each encoded frame and it packetises
 * it for its own SSRC and sequence numbers.
 */
export class ViewerPeer {
  readonly id: string;
  readonly pc: RTCPeerConnection;
  readonly createdAt = new Date();
  answerSdp = '';
  onKeyframeRequest: () => void = () => {};
  onGone: (reason: string) => void = () => {};
  framesSent = 0;

  private readonly egress: VideoEgress;
  private readonly watchdog: IceWatchdog;
  private closed = false;
  private readonly log: Logger;
  /** Frames are sent only from a keyframe on, so a decoder never starts on a delta frame. */
  private needKeyframe = true;
  private audioOut?: { remove(): void };

  private constructor(id: string, opts: ViewerPeerOptions) {
    this.id = id;
    this.log = opts.log.child({ viewer: id });
    this.egress = new VideoEgress(opts.codec);
    this.pc = createPeerConnection(opts, [opts.codec]);
    this.watchdog = new IceWatchdog(opts.iceTimeout * 1000, (reason) => {
      if (!this.closed) this.onGone(reason);
    });
  }

  static async answer(id: string, offerSdp: string, opts: ViewerPeerOptions): Promise<ViewerPeer> {
    inspectViewerOffer(offerSdp, opts.codec);
    const v = new ViewerPeer(id, opts);
    try {
      const pc = v.pc;
      pc.connectionStateChange.subscribe((state) => v.onConnectionState(state));
      v.watchdog.watch(pc);
      await pc.setRemoteDescription({ type: 'offer', sdp: withoutUnusableFormats(offerSdp) });
      const t = pc.getTransceivers().find((x) => x.kind === 'video');
      if (!t) throw new XplError('no_video', 'no video transceiver could be created for the viewer offer');
      await t.sender.replaceTrack(v.egress.track);
      correctSenderClock(t.sender, v.egress.track);
      t.sender.streamId = MEDIA_STREAM_ID;
      t.setDirection('sendonly');
      t.sender.onPictureLossIndication.subscribe(() => v.onKeyframeRequest());
      const a = pc.getTransceivers().find((x) => x.kind === 'audio');
      if (a && opts.audio) {
        const out = opts.audio.addOutput();
        v.audioOut = out;
        await a.sender.replaceTrack(out.track);
        correctSenderClock(a.sender, out.track);
        a.sender.streamId = MEDIA_STREAM_ID;
        a.setDirection('sendonly');
      } else if (a) {
        a.setDirection('inactive');
      }
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      v.answerSdp = localSdp(pc, opts);
      v.watchdog.start();
    } catch (err) {
      await v.close();
      if (err instanceof XplError) throw err;
      throw new XplError('bad_sdp', `the viewer offer could not be applied: ${(err as Error).message}`, { cause: err });
    }
    return v;
  }

  get connectionState(): string {
    return this.pc.connectionState;
  }

  /** Whether this viewer waits for a keyframe before it can be sent anything. */
  get wantsKeyframe(): boolean {
    return this.needKeyframe;
  }

  sendFrame(data: Uint8Array, rtpTimestamp: number, keyframe: boolean): void {
    if (this.closed) return;
    if (this.needKeyframe && !keyframe) return;
    this.needKeyframe = false;
    this.egress.send(data, rtpTimestamp);
    this.framesSent++;
  }

  private onConnectionState(state: string): void {
    this.log.debug({ state }, 'viewer connection state');
    if (state === 'connected') {
      // The frames sent before DTLS was up may have been dropped: start again from a keyframe.
      this.needKeyframe = true;
      this.onKeyframeRequest();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchdog.stop();
    this.audioOut?.remove();
    await this.pc.close().catch(() => {});
  }
}
