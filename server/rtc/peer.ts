/**
 * One WebRTC peer connection (werift) of a session: video ingest (VP8, or H.264 when the offer has
 * no VP8) through the frame assembler (reordering, loss detection), and egress in the same codec
 * on the same transceiver when the offer is sendrecv; Opus audio into the session's audio relay,
 * and back out of it when the offer's audio is sendrecv. RTP feedback (NACK retransmission,
 * receiver NACK generation, TWCC) is werift's. When to ask for a keyframe is the frame loop's
 * decision (loop/keyframes.ts); this file sends the PLIs, spaced out, and forwards the remote's
 * PLIs to whoever encodes.
 */
import { ReceiverEstimatedMaxBitrate, RtcpPayloadSpecificFeedback, type MediaStreamTrack, type RTCPeerConnection, type RTCRtpTransceiver } from 'werift';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { VideoCodec } from '../media/codec.ts';
import type { IngestFrame } from '../loop/frame-loop.ts';
import type { AudioRelay } from './audio-relay.ts';
import { IceWatchdog, MEDIA_STREAM_ID, VideoEgress, createPeerConnection, gathered, localSdp, withStartBitrate, type ConnectionOptions } from './connection.ts';
import { IncomingBitrateLimit, rembFields } from './bitrate-limit.ts';
import { FrameAssembler } from './frame-assembler.ts';
import { h264Payload } from './h264-payload.ts';
import { inspectOffer, withoutUnusableFormats, type OfferSummary } from './sdp.ts';
import { correctSenderClock } from './sender-clock.ts';
import { vp8Payload } from './vp8-payload.ts';

export interface PeerOptions extends ConnectionOptions {
  log: Logger;
  /** The session's audio relay: the offer's audio goes into it, and comes back out of it when sendrecv. */
  audio?: AudioRelay;
}


/** Minimum spacing of our PLIs, so that a burst of loss does not become a burst of keyframes. */
const PLI_MIN_INTERVAL_MS = 300;

export class Peer {
  readonly pc: RTCPeerConnection;
  readonly offer: OfferSummary;
  /** True when the offer is sendrecv: output goes back on the same transceiver. */
  readonly sendsBack: boolean;
  answerSdp = '';
  onFrame: (f: IngestFrame) => void = () => {};
  /** The assembler lost packets for good: the chain is broken until the next keyframe. */
  onLoss: (reason: string) => void = () => {};
  onKeyframeRequest: () => void = () => {};
  onGone: (reason: string) => void = () => {};

  private transceiver!: RTCRtpTransceiver;
  private egress?: VideoEgress;
  /** The codec of the video, both ways: the one the offer summary chose, which the negotiation must agree on. */
  readonly videoCodec: VideoCodec;
  private remoteSsrc?: number;
  private lastPli = 0;
  private remoteUfrag?: string;
  private lossTimer?: NodeJS.Timeout;
  private assembler?: FrameAssembler;
  private readonly bitrateLimit = new IncomingBitrateLimit((bps) => this.sendRemb(bps));
  private readonly watchdog: IceWatchdog;
  private closed = false;
  private readonly log: Logger;
  private audioOut?: { remove(): void };

  private constructor(offer: OfferSummary, private readonly opts: PeerOptions) {
    this.offer = offer;
    this.sendsBack = offer.videoDirection === 'sendrecv';
    this.videoCodec = offer.videoCodec;
    this.log = opts.log;
    this.pc = createPeerConnection(opts);
    this.watchdog = new IceWatchdog(opts.iceTimeout * 1000, (reason) => {
      if (!this.closed) this.onGone(reason);
    });
  }

  /** Validates the offer, answers it, and waits for ICE gathering so the answer carries every candidate (WHIP is non-trickle by default). */
  static async answer(offerSdp: string, opts: PeerOptions, summary: OfferSummary = inspectOffer(offerSdp)): Promise<Peer> {
    const peer = new Peer(summary, opts);
    try {
      await peer.negotiate(offerSdp);
    } catch (err) {
      await peer.close();
      if (err instanceof XplError) throw err;
      throw new XplError('bad_sdp', `the offer could not be applied: ${(err as Error).message}`, { cause: err });
    }
    return peer;
  }

  private async negotiate(offerSdp: string): Promise<void> {
    const pc = this.pc;
    this.remoteUfrag = /^a=ice-ufrag:(\S+)/m.exec(offerSdp)?.[1];
    pc.onTransceiverAdded.subscribe((t) => {
      if (t.kind === 'video' && !this.transceiver) this.transceiver = t;
    });
    pc.onTrack.subscribe((track) => {
      if (track.kind === 'video') this.attachIngest(track);
      else if (track.kind === 'audio') this.opts.audio?.attachIngest(track);
    });
    pc.connectionStateChange.subscribe((state) => this.log.debug({ state }, 'peer connection state'));
    this.watchdog.watch(pc, true);
    await pc.setRemoteDescription({ type: 'offer', sdp: withoutUnusableFormats(offerSdp) });
    this.transceiver ??= pc.getTransceivers().find((t) => t.kind === 'video')!;
    if (!this.transceiver) throw new XplError('no_video', 'no video transceiver could be created for the offer');
    const agreed = this.transceiver.codecs.find((c) => /^video\/(vp8|h264)$/i.test(c.mimeType));
    if (!agreed || (/h264/i.test(agreed.mimeType) ? 'h264' : 'vp8') !== this.videoCodec) {
      throw new XplError('unsupported_codec', `the video codec could not be agreed (expected ${this.videoCodec}, negotiated ${agreed?.mimeType ?? 'none'})`);
    }
    if (this.sendsBack) {
      this.egress = new VideoEgress(this.videoCodec);
      await this.transceiver.sender.replaceTrack(this.egress.track);
      correctSenderClock(this.transceiver.sender, this.egress.track);
      this.transceiver.sender.streamId = MEDIA_STREAM_ID;
      this.transceiver.setDirection('sendrecv');
      this.transceiver.sender.onPictureLossIndication.subscribe(() => this.onKeyframeRequest());
    } else {
      this.transceiver.setDirection('recvonly');
    }
    await this.negotiateAudio();
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await gathered(pc);
    this.answerSdp = withStartBitrate(localSdp(pc, this.opts));
  }

  /** Starts the connect deadline: call it when the answer goes out (the session may still be setting up its loop before). */
  answered(): void {
    this.watchdog.start();
  }

  /** True while the assembler has no keyframe to start a chain from (at start, after a loss). */
  get waitingForKeyframe(): boolean {
    return this.assembler?.waitingForKeyframe ?? true;
  }

  /**
   * The offer's audio: sendonly (a WHIP publisher) is received only; sendrecv also gets the relayed
   * audio back, in the video's media stream so that the receiver keeps them in sync; an offer that
   * sends no audio gets none (there is nothing of its own to return).
   */
  private async negotiateAudio(): Promise<void> {
    const t = this.pc.getTransceivers().find((x) => x.kind === 'audio');
    if (!t) return;
    const dir = this.offer.audioDirection;
    if (dir === 'sendrecv' && this.opts.audio) {
      const out = this.opts.audio.addOutput();
      this.audioOut = out;
      await t.sender.replaceTrack(out.track);
      correctSenderClock(t.sender, out.track);
      t.sender.streamId = MEDIA_STREAM_ID;
      t.setDirection('sendrecv');
    } else {
      t.setDirection(dir === 'sendrecv' || dir === 'sendonly' ? 'recvonly' : 'inactive');
    }
  }

  private attachIngest(track: MediaStreamTrack): void {
    const assembler = new FrameAssembler(
      this.videoCodec === 'h264' ? h264Payload : vp8Payload,
      (f) => this.onFrame({ data: f.data, keyframe: f.keyframe, tid: f.tid, arrival: performance.now(), rtpTimestamp: f.rtpTimestamp }),
      (reason) => this.onLoss(reason),
    );
    this.assembler = assembler;
    track.onReceiveRtp.subscribe((rtp) => {
      if (this.closed) return;
      this.remoteSsrc = rtp.header.ssrc;
      this.bitrateLimit.observe(rtp.payload.length);
      assembler.push({ sequenceNumber: rtp.header.sequenceNumber, timestamp: rtp.header.timestamp, marker: rtp.header.marker, payload: rtp.payload });
    });
    // The timer lets a gap time out when packets stop.
    this.lossTimer = setInterval(() => assembler.tick(), 50);
  }

  /** Asks the remote sender for a keyframe (RTCP PLI), rate-limited. */
  requestKeyframe(reason: string): void {
    if (this.closed || this.remoteSsrc === undefined) return;
    const now = performance.now();
    if (now - this.lastPli < PLI_MIN_INTERVAL_MS) return;
    this.lastPli = now;
    this.log.debug({ reason }, 'PLI');
    this.transceiver.receiver.sendRtcpPLI(this.remoteSsrc).catch(() => {});
  }

  /**
   * The share of its frame rate the session may render now (the frame budget's cap over its own
   * maxFps): below 1 the sender is asked for that share of its bitrate (RTCP REMB, see
   * bitrate-limit.ts); 1 lifts the request.
   */
  limitIncoming(share: number): void {
    if (!this.closed) this.bitrateLimit.setShare(share);
  }

  private sendRemb(bps: number): void {
    if (this.closed || this.remoteSsrc === undefined) return;
    const receiver = this.transceiver.receiver;
    this.log.debug({ bps }, 'REMB');
    const remb = new ReceiverEstimatedMaxBitrate({ senderSsrc: receiver.rtcpSsrc, mediaSsrc: 0, ...rembFields(bps), ssrcNum: 1, ssrcFeedbacks: [this.remoteSsrc] });
    receiver.dtlsTransport.sendRtcp([new RtcpPayloadSpecificFeedback({ feedback: remb })]).catch(() => {});
  }

  /** Packetises one encoded frame and sends it back on the same transceiver. */
  sendFrame(data: Uint8Array, rtpTimestamp: number): void {
    if (this.closed || !this.egress) return;
    this.egress.send(data, rtpTimestamp);
  }

  /** Trickle ICE (WHIP PATCH): applies the candidates of an SDP fragment. ICE restarts are not supported. */
  async addRemoteCandidates(fragment: string): Promise<number> {
    if (fragment.length > 16 * 1024) throw new XplError('too_large', 'the SDP fragment is larger than 16 KiB');
    let mid = this.transceiver.mid ?? '0';
    let count = 0;
    for (const line of fragment.split(/\r?\n/)) {
      if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
      else if (line.startsWith('a=ice-ufrag:') && this.remoteUfrag && line.slice(12).trim() !== this.remoteUfrag) {
        throw new XplError('ice_restart_unsupported', 'ICE restart is not supported: create a new session instead');
      } else if (line.startsWith('a=candidate:')) {
        try {
          await this.pc.addIceCandidate({ candidate: line.slice(2).trim(), sdpMid: mid, sdpMLineIndex: 0 });
        } catch (err) {
          throw new XplError('bad_request', `bad ICE candidate "${line.slice(0, 120)}": ${(err as Error).message}`);
        }
        count++;
      }
    }
    return count;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchdog.stop();
    this.audioOut?.remove();
    clearInterval(this.lossTimer);
    this.bitrateLimit.stop();
    await this.pc.close().catch(() => {});
  }
}
