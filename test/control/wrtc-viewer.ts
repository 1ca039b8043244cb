/**
 * Test helpers on @roamhq/wrtc (libwebrtc, not the server's stack): a WHEP viewer (recvonly offer
 * → POST /v1/sessions/ID/whep) that reads the pattern id of every frame it receives, and an
 * ingest-only sender (sendonly offer, as OBS's WHIP output makes) of the id pattern.
 */
import wrtc from '@roamhq/wrtc';
import '../support/wrtc-exit.ts';
import { allocI420 } from '../../server/media/frame.ts';
import { drawPattern, readPatternId } from '../support/pattern.ts';
import { waitUntil } from '../support/wait.ts';

export { waitUntil };

const { RTCPeerConnection, nonstandard } = wrtc;

export interface Viewer {
  location: string;
  /** Pattern ids of received frames (null when unreadable), in arrival order. */
  ids: Array<number | null>;
  sizes: Set<string>;
  pc: RTCPeerConnection;
  waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void>;
  /** DELETE the viewer resource (unless `vanish`), close the peer; returns the DELETE status. */
  close(opts?: { vanish?: boolean }): Promise<number | undefined>;
}

async function gathered(pc: RTCPeerConnection, capMs = 5000): Promise<void> {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, capMs);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

export class WhepError extends Error {
  constructor(readonly status: number, readonly body: string) {
    super(`WHEP answered ${status}: ${body.slice(0, 300)}`);
  }
}

export async function startViewer(baseUrl: string, sessionId: string, auth?: string): Promise<Viewer> {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const ids: Array<number | null> = [];
  const sizes = new Set<string>();
  const sinks: Array<{ stop(): void }> = [];
  pc.addEventListener('track', (e: RTCTrackEvent) => {
    const sink = new nonstandard.RTCVideoSink(e.track);
    sinks.push(sink);
    sink.addEventListener('frame', (ev: Event) => {
      const { frame } = ev as unknown as { frame: { width: number; height: number; data: Uint8Array } };
      sizes.add(`${frame.width}x${frame.height}`);
      ids.push(readPatternId({ width: frame.width, height: frame.height, data: frame.data, timestamp: 0 }));
    });
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await fetch(`${baseUrl}/v1/sessions/${sessionId}/whep`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...(auth ? { Authorization: `Bearer ${auth}` } : {}) },
    body: pc.localDescription!.sdp,
  });
  const body = await res.text();
  if (res.status !== 201) {
    pc.close();
    throw new WhepError(res.status, body);
  }
  const location = new URL(res.headers.get('location')!, `${baseUrl}/`).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  let closed = false;
  return {
    location,
    ids,
    sizes,
    pc,
    waitFor: (pred, timeoutMs, what) => waitUntil(pred, timeoutMs, what),
    async close(opts = {}) {
      if (closed) return undefined;
      closed = true;
      for (const s of sinks) s.stop();
      pc.close();
      if (opts.vanish) return undefined;
      const r = await fetch(location, { method: 'DELETE', headers: auth ? { Authorization: `Bearer ${auth}` } : {} });
      await r.arrayBuffer();
      return r.status;
    },
  };
}

export interface Sender {
  sessionId: string;
  sessionUrl: string;
  sent(): number;
  close(): Promise<number>;
}

/** An ingest-only (sendonly) WHIP sender of the id pattern, ids = offset + seq mod `modulo`. */
export async function startSendonly(baseUrl: string, opts: { apiKey?: string; query?: string; offset?: number; modulo?: number } = {}): Promise<Sender> {
  const pc = new RTCPeerConnection({ iceServers: [] });
  let source: InstanceType<typeof nonstandard.RTCVideoSource> | null = new nonstandard.RTCVideoSource();
  const track = source.createTrack();
  pc.addTransceiver(track, { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const auth: Record<string, string> = opts.apiKey ? { Authorization: `Bearer ${opts.apiKey}` } : {};
  const res = await fetch(`${baseUrl}/v1/sessions${opts.query ? `?${opts.query}` : ''}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...auth },
    body: pc.localDescription!.sdp,
  });
  const body = await res.text();
  if (res.status !== 201) {
    track.stop();
    pc.close();
    throw new Error(`POST /v1/sessions answered ${res.status}: ${body}`);
  }
  const sessionUrl = new URL(res.headers.get('location')!, `${baseUrl}/`).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  const frame = allocI420(640, 480);
  let seq = 0;
  const timer = setInterval(() => {
    drawPattern(frame, (opts.offset ?? 0) + (seq++ % (opts.modulo ?? 4096)));
    source?.onFrame({ width: 640, height: 480, data: frame.data });
  }, 33);
  let closed = false;
  return {
    sessionId: sessionUrl.split('/').pop()!,
    sessionUrl,
    sent: () => seq,
    async close() {
      if (!closed) {
        closed = true;
        clearInterval(timer);
        track.stop();
        source = null;
        pc.close();
      }
      const r = await fetch(sessionUrl, { method: 'DELETE', headers: auth });
      await r.arrayBuffer();
      return r.status;
    },
  };
}
