/**
 * What every werift peer of the server shares: the codecs it speaks (VP8, and H.264 in
 * packetization mode 1, each with NACK, PLI, FIR, REMB and TWCC feedback; Opus, relayed
 * untouched), the connection settings (extra and announced host addresses, the UDP port range),
 * waiting for ICE gathering, a watchdog that frees peers that never connect or stay disconnected,
 * and video egress on a track.
 */
import {
  H264Packetizer,
  MediaStreamTrack,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  Vp8Packetizer,
  useAbsSendTime,
} from 'werift';
import type { Config } from '../config.ts';
import type { VideoCodec } from '../media/codec.ts';
import { guardDtls } from './dtls-guard.ts';
import { keepCandidates } from './sdp.ts';
import { MIN_BPS } from './bitrate-limit.ts';

export interface ConnectionOptions {
  iceAddresses: string[];
  /** Seconds a peer may be without a working ICE connection (before its first one, or after losing it) before it counts as gone. */
  iceTimeout: number;
  /** Public address announced in place of the local host addresses (1:1 NAT). */
  announcedIp?: string;
  /** UDP ports the peer's sockets are bound in, [min, max]. */
  portRange?: [number, number];
}

/** The connection settings of the server's config. */
export function connectionOptions(config: Config): ConnectionOptions {
  return { iceAddresses: config.iceAddresses, iceTimeout: config.iceTimeout, announcedIp: config.announcedIp, portRange: config.rtcPorts };
}

const GATHER_TIMEOUT_MS = 5000;
/** The msid stream of everything the server sends on one connection: receivers sync the tracks of one stream (lip-sync). */
export const MEDIA_STREAM_ID = 'xportrait-live';
const MAX_RTP_PAYLOAD = 1100;

/**
 * No transport-cc: fed with werift's feedback, libwebrtc's delay-based estimator saw a queue that
 * was not there and held browser senders at ~0.5 Mbit/s with tens of ms in their pacers, about
 * three times the glass-to-glass latency of a sender without it (docs/ARCHITECTURE.md, "RTP ingest";
 * docs/BENCHMARKS.md, "Transport-wide congestion control"). Without it a libwebrtc sender keeps
 * the answer's start bitrate, adapts to loss, and takes the REMB of rtc/bitrate-limit.ts as a limit.
 */
const FEEDBACK = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }, { type: 'goog-remb' }];

const VIDEO: Record<VideoCodec, () => RTCRtpCodecParameters> = {
  vp8: () => new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, rtcpFeedback: FEEDBACK }),
  h264: () =>
    new RTCRtpCodecParameters({
      mimeType: 'video/H264',
      clockRate: 90000,
      rtcpFeedback: FEEDBACK,
      parameters: 'profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1',
    }),
};

/**
 * A werift peer connection speaking `video` codecs, in order of preference (werift answers with
 * the first of ours the offer has): VP8 first, H.264 for the senders that offer nothing else.
 */
export function createPeerConnection(opts: ConnectionOptions, video: VideoCodec[] = ['vp8', 'h264']): RTCPeerConnection {
  const pc = new RTCPeerConnection({
    codecs: {
      video: video.map((c) => VIDEO[c]()),
      // Accepting Opus also keeps a standard audio+video max-bundle offer answerable: a rejected
      // first (bundle-tagged) m-line leaves libwebrtc with no transport ("Failed to setup RTCP mux").
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, parameters: 'minptime=10;useinbandfec=1' })],
    },
    headerExtensions: { video: [useAbsSendTime()], audio: [] },
    iceAdditionalHostAddresses: hostAddresses(opts),
    icePortRange: opts.portRange,
    iceUseIpv6: false,
  });
  guardDtls(pc);
  return pc;
}

function hostAddresses(opts: ConnectionOptions): string[] | undefined {
  const all = [...(opts.announcedIp ? [opts.announcedIp] : []), ...opts.iceAddresses];
  return all.length ? all : undefined;
}

/**
 * The local description as it may leave the server: with an announced address, host candidates on
 * the machine's own (private) addresses are left out — they cannot be reached from outside and
 * would leak the private network. werift binds its sockets to every address, so the announced
 * one's port is a real socket: a 1:1 NAT forwards it there.
 */
export function localSdp(pc: RTCPeerConnection, opts: ConnectionOptions): string {
  const sdp = pc.localDescription!.sdp;
  if (!opts.announcedIp) return sdp;
  const keep = new Set([opts.announcedIp, ...opts.iceAddresses]);
  return keepCandidates(sdp, (address, type) => type !== 'host' || keep.has(address));
}

/** Resolves when ICE gathering is complete (or after 5 s), so an answer can carry every candidate. */
export function gathered(pc: RTCPeerConnection): Promise<void> {
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

/** How often a publisher's packet count is read for silence. */
const SILENCE_CHECK_MS = 500;

/**
 * Declares a peer gone when ICE does not connect within the timeout after the answer, stays
 * disconnected for the timeout, fails, or (a publisher) sends nothing for the timeout. Without the
 * first rule, a client that posts an offer and never sends a packet would hold a session (and a
 * --max-sessions slot) forever.
 */
export class IceWatchdog {
  private timer?: NodeJS.Timeout;
  private silence?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly timeoutMs: number,
    private readonly onGone: (reason: string) => void,
  ) {}

  /** Starts the connect deadline; call once the answer is out. */
  start(): void {
    this.arm('ice-connect-timeout');
  }

  /**
   * Follows a peer connection: its state, and once connected its DTLS transports. A DTLS transport
   * that fails ends the peer (werift leaves the connection state at "connected" then). A clean
   * close from the client does not: its DELETE usually follows at once and must find the session;
   * ICE consent ends it otherwise.
   *
   * With `publisher`, a peer that sends no RTP or RTCP at all for the timeout is gone too: a
   * publishing client sends video many times a second and RTCP reports every few seconds, so
   * silence that long is a client that vanished (a closed laptop, a killed tab) — which ICE
   * consent alone would notice only after its fixed 30 s (RFC 7675).
   */
  watch(pc: RTCPeerConnection, publisher = false): void {
    pc.connectionStateChange.subscribe((state) => {
      this.onState(state);
      if (state !== 'connected') return;
      for (const t of pc.dtlsTransports) {
        t.onStateChange.subscribe((s) => {
          if (s === 'failed') this.fire('dtls-failed');
        });
      }
      if (publisher) this.watchSilence(pc);
    });
  }

  private watchSilence(pc: RTCPeerConnection): void {
    if (this.silence) return;
    const received = () => pc.dtlsTransports.reduce((n, t) => n + t.packetsReceived, 0);
    let last = received();
    let lastChange = performance.now();
    this.silence = setInterval(() => {
      const now = received();
      if (now !== last) {
        last = now;
        lastChange = performance.now();
      } else if (performance.now() - lastChange >= this.timeoutMs) {
        this.fire('media-timeout');
      }
    }, SILENCE_CHECK_MS);
  }

  private onState(state: string): void {
    if (state === 'connected') this.disarm();
    else if (state === 'disconnected') this.arm('ice-disconnected');
    else if (state === 'failed' || state === 'closed') this.fire(`ice-${state}`);
  }

  stop(): void {
    this.stopped = true;
    this.disarm();
    clearInterval(this.silence);
  }

  private arm(reason: string): void {
    this.disarm();
    this.timer = setTimeout(() => this.fire(reason), this.timeoutMs);
  }

  private disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private fire(reason: string): void {
    if (this.stopped) return;
    this.stop();
    this.onGone(reason);
  }
}

/** Sends whole encoded frames (VP8, or H.264 Annex B access units) on a track, packetised for RTP. */
export class VideoEgress {
  readonly track = new MediaStreamTrack({ kind: 'video' });
  // The payload type is a placeholder: the sender writes the negotiated one.
  private readonly packetizer;

  constructor(readonly codec: VideoCodec) {
    this.packetizer =
      codec === 'h264' ? new H264Packetizer({ maxPayloadSize: MAX_RTP_PAYLOAD, payloadType: 96, inputFormat: 'annexb' }) : new Vp8Packetizer({ maxPayloadSize: MAX_RTP_PAYLOAD, payloadType: 96 });
  }

  send(data: Uint8Array, rtpTimestamp: number): void {
    for (const p of this.packetizer.packetize(Buffer.from(data.buffer, data.byteOffset, data.byteLength), rtpTimestamp >>> 0)) {
      this.track.writeRtp(p);
    }
  }
}

/**
 * libwebrtc senders start at ~300 kbps and ramp slowly; a webcam feeding a face tracker wants a
 * sharp picture from the first second. Chrome and libwebrtc read these fmtp hints from the answer.
 */
export function withStartBitrate(sdp: string): string {
  const pt = /^a=rtpmap:(\d+) (?:VP8|H264)\/90000\r?$/m.exec(sdp)?.[1];
  if (!pt) return sdp;
  const hints = `x-google-start-bitrate=1500;x-google-min-bitrate=${MIN_BPS / 1000}`;
  const fmtp = new RegExp(`^(a=fmtp:${pt} [^\\r\\n]*)`, 'm');
  if (fmtp.test(sdp)) return sdp.replace(fmtp, `$1;${hints}`);
  return sdp.replace(new RegExp(`^(a=rtpmap:${pt} [^\\r\\n]*)`, 'm'), `$1\r\na=fmtp:${pt} ${hints}`);
}

/**
 * Runs werift's set-up path once (certificate, SDP, ICE gathering) and throws the connection
 * away: the first real peer of a process otherwise pays ~150 ms of first-use cost (module loading,
 * code warm-up) in its answer.
 */
export async function warmUpRtc(opts: ConnectionOptions): Promise<void> {
  const pc = createPeerConnection(opts);
  try {
    pc.addTransceiver('video', { direction: 'sendrecv' });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
  } finally {
    await pc.close().catch(() => {});
  }
}
