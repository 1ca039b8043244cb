/**
 * A WHEP viewer that watches the server's output at the RTP level, before any receiver's jitter
 * buffer or playout: when the last packet of a video frame showing a flash arrives, and when the
 * first audio packet carrying a click arrives. That is where the server's own A/V alignment is
 * visible on its own (a player's buffers add their own, different, delays per medium).
 *
 * Built on werift (the server's stack: a probe, not an independent client) with the server's VP8
 * frame assembler and decoder. A click is an Opus packet far larger than silence's few bytes.
 */
import { RTCPeerConnection, RTCRtpCodecParameters } from 'werift';
import { WasmVp8Decoder } from '../../server/media/wasm-codec.ts';
import { FrameAssembler } from '../../server/rtc/frame-assembler.ts';
import { vp8Payload } from '../../server/rtc/vp8-payload.ts';
import { syncOffsets } from './av-peer.ts';

export interface RtpViewer {
  readonly flashes: number[];
  readonly clicks: number[];
  /** Audio packets received so far. */
  audioPackets(): number;
  /** For every flash with a click within ±500 ms: click − flash, ms. */
  offsets(): number[];
  close(): Promise<void>;
}

/** Opus silence from libwebrtc is a few bytes a packet; a loud tone is tens to hundreds. */
const CLICK_BYTES = 40;
const REARM_MS = 500;
const BRIGHT = 137;

export async function startRtpViewer(baseUrl: string, sessionId: string, opts: { apiKey?: string } = {}): Promise<RtpViewer> {
  const auth: Record<string, string> = opts.apiKey ? { Authorization: `Bearer ${opts.apiKey}` } : {};
  const pc = new RTCPeerConnection({
    codecs: {
      video: [new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }] })],
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2 })],
    },
    iceAdditionalHostAddresses: ['127.0.0.1'],
    iceUseIpv6: false,
    // One transport for both m-lines: as an offerer werift otherwise gathers one per m-line and
    // leaves the unbundled one's sockets open after close().
    bundlePolicy: 'max-bundle',
  });
  const decoder = await WasmVp8Decoder.create();
  const flashes: number[] = [];
  const clicks: number[] = [];
  let audioPackets = 0;
  let closed = false;
  const timers: NodeJS.Timeout[] = [];

  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.onTrack.subscribe((track) => {
    if (track.kind === 'audio') {
      track.onReceiveRtp.subscribe((rtp) => {
        const at = performance.now();
        audioPackets++;
        if (rtp.payload.length > CLICK_BYTES && (clicks.length === 0 || at - clicks[clicks.length - 1] > REARM_MS)) clicks.push(at);
      });
      return;
    }
    const assembler = new FrameAssembler(
      vp8Payload,
      (f) => {
        const at = performance.now();
        decoder.decode(f.data, at).then(
          (frame) => {
            if (!frame || closed) return;
            const row = Math.floor(frame.height / 2) * frame.width;
            let sum = 0;
            for (let x = 0; x < frame.width; x += 4) sum += frame.data[row + x];
            const bright = sum / Math.ceil(frame.width / 4) > BRIGHT;
            if (bright && (flashes.length === 0 || at - flashes[flashes.length - 1] > REARM_MS)) flashes.push(at);
          },
          () => {},
        );
      },
      () => {},
    );
    track.onReceiveRtp.subscribe((rtp) => assembler.push({ sequenceNumber: rtp.header.sequenceNumber, timestamp: rtp.header.timestamp, marker: rtp.header.marker, payload: rtp.payload }));
    timers.push(setInterval(() => assembler.tick(), 50));
  });

  await pc.setLocalDescription(await pc.createOffer());
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 3000);
    pc.iceGatheringStateChange.subscribe((s) => {
      if (s === 'complete') {
        clearTimeout(t);
        resolve();
      }
    });
  });
  const res = await fetch(`${baseUrl.replace(/\/$/, '')}/v1/sessions/${sessionId}/whep`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...auth }, body: pc.localDescription!.sdp });
  const answer = await res.text();
  if (res.status !== 201) {
    await pc.close();
    await decoder.close();
    throw new Error(`WHEP answered ${res.status}: ${answer}`);
  }
  const location = new URL(res.headers.get('location')!, `${baseUrl}/`).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });

  return {
    flashes,
    clicks,
    audioPackets: () => audioPackets,
    offsets: () => syncOffsets(flashes, clicks),
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearInterval(t);
      await pc.close();
      await decoder.close();
      const r = await fetch(location, { method: 'DELETE', headers: auth });
      await r.arrayBuffer();
    },
  };
}
