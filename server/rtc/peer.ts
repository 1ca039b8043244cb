/**
 * One WebRTC peer connection (werift) of a session: VP8 ingest through the frame assembler
 * (reordering, loss detection), and VP8 egress on the same transceiver when the offer is sendrecv. RTP feedback
 * (NACK retransmission, receiver NACK generation, TWCC) is werift's; this file asks for
 * keyframes (PLI) when the depacketiser or the decoder needs one, and forwards the remote's
 * PLIs to whoever encodes.
 */
import {
  MediaStreamTrack,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  Vp8Packetizer,
  useTransportWideCC,
  useAbsSendTime,
  type RTCRtpTransceiver,
} from 'werift';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { MAX_SDP_BYTES, inspectOffer, type OfferSummary } from './sdp.ts';
import { Vp8Assembler } from './vp8-assembler.ts';

export interface PeerOptions {
  iceAddresses: string[];
  /** Seconds a disconnected peer may stay disconnected before it counts as gone. */
  disconnectTimeout: number;
  log: Logger;
}

export interface IngestFrame {
  data: Uint8Array;
  keyframe: boolean;
  /** Server clock (performance.now()) when the frame's last packet arrived. */
  arrival: number;
  rtpTimestamp: number;
}

const VP8 = () =>
  new RTCRtpCodecParameters({
    mimeType: 'video/VP8',
    clockRate: 90000,
    rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }, { type: 'goog-remb' }, { type: 'transport-cc' }],
  });

const GATHER_TIMEOUT_MS = 5000;
const MAX_RTP_PAYLOAD = 1100;
/** Minimum spacing of our PLIs, so that a burst of loss does not become a burst of keyframes. */
const PLI_MIN_INTERVAL_MS = 300;

export class Peer {
  readonly pc: RTCPeerConnection;
  readonly offer: OfferSummary;
  /** True when the offer is sendrecv: output goes back on the same transceiver. */
  readonly sendsBack: boolean;
  answerSdp = '';
  onFrame: (f: IngestFrame) => void = () => {};
  onKeyframeRequest: () => void = () => {};
  onGone: (reason: string) => void = () => {};

  private transceiver!: RTCRtpTransceiver;
  private egress?: MediaStreamTrack;
  private packetizer?: Vp8Packetizer;
  private remoteSsrc?: number;
  private lastPli = 0;
  private remoteUfrag?: string;
  private assembler?: Vp8Assembler;
  private lossTimer?: NodeJS.Timeout;
  private disconnectTimer?: NodeJS.Timeout;
  private closed = false;
  private readonly log: Logger;
  private readonly disconnectTimeoutMs: number;

  private constructor(offer: OfferSummary, opts: PeerOptions) {
    this.offer = offer;
    this.sendsBack = offer.videoDirection === 'sendrecv';
    this.log = opts.log;
    this.disconnectTimeoutMs = opts.disconnectTimeout * 1000;
    this.pc = new RTCPeerConnection({
      codecs: { video: [VP8()], audio: [] },
      headerExtensions: { video: [useTransportWideCC(), useAbsSendTime()], audio: [] },
      iceAdditionalHostAddresses: opts.iceAddresses.length ? opts.iceAddresses : undefined,
      iceUseIpv6: false,
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
    });
    pc.connectionStateChange.subscribe((state) => this.onConnectionState(state));
    await pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
    this.transceiver ??= pc.getTransceivers().find((t) => t.kind === 'video')!;
    if (!this.transceiver) throw new XplError('no_video', 'no video transceiver could be created for the offer');
    if (this.sendsBack) {
      this.egress = new MediaStreamTrack({ kind: 'video' });
      await this.transceiver.sender.replaceTrack(this.egress);
      this.transceiver.setDirection('sendrecv');
      this.transceiver.sender.onPictureLossIndication.subscribe(() => this.onKeyframeRequest());
    } else {
      this.transceiver.setDirection('recvonly');
    }
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await this.gathered();
    this.answerSdp = withStartBitrate(pc.localDescription!.sdp);
  }

  private gathered(): Promise<void> {
    if (this.pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
      this.pc.iceGatheringStateChange.subscribe((s) => {
        if (s === 'complete') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  private attachIngest(track: MediaStreamTrack): void {
    const assembler = new Vp8Assembler(
      (f) => this.onFrame({ data: f.data, keyframe: f.keyframe, arrival: performance.now(), rtpTimestamp: f.rtpTimestamp }),
      (reason) => this.requestKeyframe(reason),
    );
    this.assembler = assembler;
    track.onReceiveRtp.subscribe((rtp) => {
      if (this.closed) return;
      this.remoteSsrc = rtp.header.ssrc;
      assembler.push({ sequenceNumber: rtp.header.sequenceNumber, timestamp: rtp.header.timestamp, marker: rtp.header.marker, payload: rtp.payload });
    });
    // The timer lets a gap time out when packets stop, and keeps asking for a keyframe while the
    // chain has none (at start: a decoder joining mid-stream must not wait for the sender's next one).
    this.lossTimer = setInterval(() => {
      assembler.tick();
      if (assembler.waitingForKeyframe) this.requestKeyframe('waiting for keyframe');
    }, 50);
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

  /** Packetises one encoded VP8 frame and sends it back on the same transceiver. */
  sendFrame(data: Uint8Array, rtpTimestamp: number): void {
    if (this.closed || !this.egress) return;
    this.packetizer ??= new Vp8Packetizer({ maxPayloadSize: MAX_RTP_PAYLOAD, payloadType: 96 });
    for (const p of this.packetizer.packetize(Buffer.from(data.buffer, data.byteOffset, data.byteLength), rtpTimestamp >>> 0)) {
      this.egress.writeRtp(p);
    }
  }

  /** Trickle ICE (WHIP PATCH): applies the candidates of an SDP fragment. ICE restarts are not supported. */
  async addRemoteCandidates(fragment: string): Promise<number> {
    if (fragment.length > 16 * 1024) throw new XplError('too_large', 'the SDP fragment is larger than 16 KiB');
    let mid = this.transceiver.mid ?? '0';
    let count = 0;
    for (const line of fragment.split(/\r?\n/)) {
      if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
      else if (line.startsWith('a=ice-ufrag:') && this.remoteUfrag && line.slice(12).trim() !== this.remoteUfrag) {
        throw new XplError('conflict', 'ICE restart is not supported: create a new session instead');
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

  private onConnectionState(state: string): void {
    this.log.debug({ state }, 'peer connection state');
    if (state === 'connected') {
      clearTimeout(this.disconnectTimer);
      this.disconnectTimer = undefined;
    } else if (state === 'disconnected') {
      clearTimeout(this.disconnectTimer);
      this.disconnectTimer = setTimeout(() => this.onGone('ice-disconnected'), this.disconnectTimeoutMs);
    } else if (state === 'failed' || state === 'closed') {
      if (!this.closed) this.onGone(`ice-${state}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.disconnectTimer);
    clearInterval(this.lossTimer);
    await this.pc.close().catch(() => {});
  }
}

/**
 * libwebrtc senders start at ~300 kbps and ramp slowly; a webcam feeding a face tracker wants a
 * sharp picture from the first second. Chrome and libwebrtc read these fmtp hints from the answer.
 */
function withStartBitrate(sdp: string): string {
  return sdp.replace(/^(a=rtpmap:(\d+) VP8\/90000)\r?$/m, (_m, line, pt) => `${line}\r\na=fmtp:${pt} x-google-start-bitrate=1500;x-google-min-bitrate=600\r`);
}

export interface ViewerPeerOptions {
  iceAddresses: string[];
  disconnectTimeout: number;
  log: Logger;
}

/**
 * Checks a WHEP viewer offer: an SDP with a video m-line the viewer receives (recvonly, or
 * sendrecv of which only our half is used) and VP8 among its codecs.
 */
export function inspectViewerOffer(sdp: string): void {
  if (Buffer.byteLength(sdp) > MAX_SDP_BYTES) throw new XplError('too_large', `SDP offer is larger than ${MAX_SDP_BYTES} bytes`);
  if (!/^v=0\r?\n/.test(sdp)) throw new XplError('bad_sdp', 'not an SDP offer: it must start with "v=0"');
  const sections = sdp.split(/\r?\nm=/).slice(1);
  const video = sections.find((m) => m.startsWith('video ') && !/^video 0 /.test(m));
  if (!video) throw new XplError('no_video', 'the viewer offer has no video m-line: add a recvonly video transceiver');
  const dir = /\r?\na=(sendrecv|sendonly|recvonly|inactive)\r?$/m.exec(video)?.[1] ?? 'sendrecv';
  if (dir === 'sendonly' || dir === 'inactive') {
    throw new XplError('no_video', `the viewer offer's video is "${dir}": a WHEP viewer receives, so offer recvonly`);
  }
  if (!/a=rtpmap:\d+ VP8\//i.test(video)) throw new XplError('unsupported_codec', 'the viewer offer does not include VP8, the codec this server sends');
}

/**
 * A WHEP viewer: a werift peer that only sends the session's encoded output. It never decodes or
 * encodes anything; the session hands it each encoded frame and it packetises it for its own
 * SSRC and sequence numbers.
 */
export class ViewerPeer {
  readonly id: string;
  readonly pc: RTCPeerConnection;
  readonly createdAt = new Date();
  answerSdp = '';
  onKeyframeRequest: () => void = () => {};
  onGone: (reason: string) => void = () => {};
  framesSent = 0;

  private readonly egress = new MediaStreamTrack({ kind: 'video' });
  private readonly packetizer = new Vp8Packetizer({ maxPayloadSize: MAX_RTP_PAYLOAD, payloadType: 96 });
  private disconnectTimer?: NodeJS.Timeout;
  private closed = false;
  private readonly log: Logger;
  private readonly disconnectTimeoutMs: number;
  /** Frames are sent only from a keyframe on, so a decoder never starts on a delta frame. */
  private needKeyframe = true;

  private constructor(id: string, opts: ViewerPeerOptions) {
    this.id = id;
    this.log = opts.log.child({ viewer: id });
    this.disconnectTimeoutMs = opts.disconnectTimeout * 1000;
    this.pc = new RTCPeerConnection({
      codecs: { video: [VP8()], audio: [] },
      headerExtensions: { video: [useTransportWideCC(), useAbsSendTime()], audio: [] },
      iceAdditionalHostAddresses: opts.iceAddresses.length ? opts.iceAddresses : undefined,
      iceUseIpv6: false,
    });
  }

  static async answer(id: string, offerSdp: string, opts: ViewerPeerOptions): Promise<ViewerPeer> {
    inspectViewerOffer(offerSdp);
    const v = new ViewerPeer(id, opts);
    try {
      const pc = v.pc;
      pc.connectionStateChange.subscribe((state) => v.onConnectionState(state));
      await pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
      const t = pc.getTransceivers().find((x) => x.kind === 'video');
      if (!t) throw new XplError('no_video', 'no video transceiver could be created for the viewer offer');
      await t.sender.replaceTrack(v.egress);
      t.setDirection('sendonly');
      t.sender.onPictureLossIndication.subscribe(() => v.onKeyframeRequest());
      await pc.setLocalDescription(await pc.createAnswer());
      await gatheredFor(pc);
      v.answerSdp = pc.localDescription!.sdp;
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
    for (const p of this.packetizer.packetize(Buffer.from(data.buffer, data.byteOffset, data.byteLength), rtpTimestamp >>> 0)) {
      this.egress.writeRtp(p);
    }
    this.framesSent++;
  }

  private onConnectionState(state: string): void {
    this.log.debug({ state }, 'viewer connection state');
    if (state === 'connected') {
      clearTimeout(this.disconnectTimer);
      this.disconnectTimer = undefined;
      // The frames sent before DTLS was up may have been dropped: start again from a keyframe.
      this.needKeyframe = true;
      this.onKeyframeRequest();
    } else if (state === 'disconnected') {
      clearTimeout(this.disconnectTimer);
      this.disconnectTimer = setTimeout(() => this.onGone('ice-disconnected'), this.disconnectTimeoutMs);
    } else if (state === 'failed' || state === 'closed') {
      if (!this.closed) this.onGone(`ice-${state}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.disconnectTimer);
    await this.pc.close().catch(() => {});
  }
}

function gatheredFor(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.iceGatheringStateChange.subscribe((s) => {
      if (s === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}
