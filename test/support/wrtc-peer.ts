/**
 * A WebRTC test and load peer on @roamhq/wrtc (libwebrtc), a stack independent of the server's
 * werift. It sends a synthetic video (by default the id-carrying test pattern) on one sendrecv
 * transceiver, signals with `POST /v1/sessions` (non-trickle: it waits for ICE gathering before
 * posting the offer), and records every frame that comes back: its pattern id, arrival time and
 * size, and from those the frame rate and glass-to-glass latency (arrival − send time of that id,
 * both on this process's clock).
 *
 * @example
 * const peer = await startPeer({ baseUrl, query: { renderer: 'passthrough' } });
 * await peer.waitFor((s) => s.decoded >= 30, 10_000);
 * console.log(peer.stats());
 * await peer.close();
 */
import wrtc from '@roamhq/wrtc';
import './wrtc-exit.ts';
import { allocI420, type I420Frame } from '../../server/media/frame.ts';
import { drawPattern, readPatternId, ID_MODULO } from './pattern.ts';

const { RTCPeerConnection, nonstandard } = wrtc;

/** Writes frame number `seq` (0, 1, 2, ...) into `frame`; the buffer is reused between calls. */
export type FrameProducer = (frame: I420Frame, seq: number) => void;

export interface PeerOptions {
  /** Server origin, e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  /** Query of the session request, e.g. { renderer: 'passthrough' }. */
  query?: Record<string, string> | string;
  width?: number;
  height?: number;
  fps?: number;
  apiKey?: string;
  /** Defaults to the test pattern with id = seq mod 4096. */
  producer?: FrameProducer;
  /** Decode pattern ids of received frames (default true; turn off for non-pattern producers to save CPU). */
  decodeIds?: boolean;
  /** Keep copies of the last N received frames (default 0). */
  keepFrames?: number;
  /** Called for every received frame; `frame.data` is only valid during the call. */
  onFrame?: (frame: I420Frame, info: ReceivedFrame) => void;
  /** Cap on waiting for ICE gathering before posting the offer (default 5000 ms). */
  gatherTimeoutMs?: number;
  /** Rewrites the offer SDP before it is posted (e.g. to replace its candidates with a relay's). */
  mungeOffer?: (sdp: string) => string;
  /** Rewrites the server's answer SDP before it is applied (e.g. to point its candidates at a relay). */
  mungeAnswer?: (sdp: string) => string;
  /** Peer connection configuration (ICE servers, transport policy); default: no ICE servers. */
  rtcConfig?: RTCConfiguration;
}

export interface ReceivedFrame {
  /** Arrival on this process's performance.now() clock. */
  at: number;
  width: number;
  height: number;
  /** Pattern id (mod 4096), or null when none could be read. */
  id: number | null;
  /** The sequence number of the sent frame this id maps to (the latest sent with that id). */
  seq: number | null;
  /** Arrival − send time of `seq`, in ms. */
  latencyMs: number | null;
}

export interface PeerStats {
  sent: number;
  received: number;
  /** Received frames whose id could be read. */
  decoded: number;
  distinctIds: number;
  /** Frames received in the last `windowMs`, per second. */
  fps: number;
  /** Frames received per second between the first and last received frame. */
  meanFps: number;
  /** Received frames whose seq went backwards compared with the previous decoded one. */
  outOfOrder: number;
  /** Distinct received sizes, e.g. ['512x512']. */
  sizes: string[];
  latencyMs: { count: number; mean: number; p50: number; p95: number; max: number };
  connectionState: string;
}

export interface PeerCloseOptions {
  /** Drop the connection without DELETE, as a crashed client would (default false). */
  vanish?: boolean;
}

export interface Peer {
  /** Absolute URL of the session resource (from Location). */
  readonly sessionUrl: string;
  readonly answerSdp: string;
  readonly pc: RTCPeerConnection;
  /** performance.now() when the offer was posted: the first received frame's `at` minus this is the time to first frame. */
  readonly postedAt: number;
  /** Every frame received so far, in arrival order. */
  readonly received: ReceivedFrame[];
  /** Copies of the last `keepFrames` received frames, with their info. */
  readonly kept: Array<{ frame: I420Frame; info: ReceivedFrame }>;
  /** Glass-to-glass latencies (ms) of the received frames with a known id, in arrival order. */
  latencies(): number[];
  /** Send time (performance.now()) of sent frame `seq`, if it is still remembered. */
  sendTime(seq: number): number | undefined;
  stats(windowMs?: number): PeerStats;
  /** Resolves when `pred(stats())` holds; rejects after `timeoutMs` with the stats in the message. */
  waitFor(pred: (s: PeerStats) => boolean, timeoutMs: number): Promise<PeerStats>;
  /** Stops sending (the connection stays up). */
  stopSending(): void;
  /** Changes the size of the frames sent from the next frame on (the producer draws at the new size). */
  resize(width: number, height: number): void;
  /** Idempotent. Returns the status of the DELETE (undefined when vanishing or already closed). */
  close(opts?: PeerCloseOptions): Promise<number | undefined>;
}

/** Peers started and not yet closed, so a test's `after` hook can close whatever it left open. */
const openPeers = new Set<Peer>();

/** Closes (with DELETE unless `vanish`) every peer not yet closed; errors of single DELETEs are ignored. */
export async function closeAllPeers(opts: PeerCloseOptions = {}): Promise<void> {
  await Promise.all([...openPeers].map((p) => p.close(opts).catch(() => undefined)));
}

export class SessionRequestError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`POST /v1/sessions answered ${status}: ${body.slice(0, 500)}`);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function waitForGathering(pc: RTCPeerConnection, timeoutMs: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done(): void {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', onCandidate);
      resolve();
    }
    function check(): void {
      if (pc.iceGatheringState === 'complete') done();
    }
    function onCandidate(e: RTCPeerConnectionIceEvent): void {
      if (!e.candidate) done();
    }
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', onCandidate);
  });
}

export async function startPeer(opts: PeerOptions): Promise<Peer> {
  let width = opts.width ?? 640;
  let height = opts.height ?? 480;
  const fps = opts.fps ?? 30;
  const producer: FrameProducer = opts.producer ?? ((f, seq) => drawPattern(f, seq));
  const decodeIds = opts.decodeIds ?? true;
  const keepFrames = opts.keepFrames ?? 0;
  const base = opts.baseUrl.replace(/\/$/, '');
  const query = typeof opts.query === 'string' ? opts.query : new URLSearchParams(opts.query ?? {}).toString();
  const auth: Record<string, string> = opts.apiKey ? { Authorization: `Bearer ${opts.apiKey}` } : {};

  const pc = new RTCPeerConnection({ iceServers: [], ...opts.rtcConfig });
  // Nulled on close: an RTCVideoSource still reachable when node exits crashes the process
  // (SIGSEGV in the addon's cleanup), so nothing may keep it once the peer is closed.
  let source: InstanceType<typeof nonstandard.RTCVideoSource> | null = new nonstandard.RTCVideoSource();
  const track = source.createTrack();
  pc.addTransceiver(track, { direction: 'sendrecv' });

  const received: ReceivedFrame[] = [];
  const kept: Array<{ frame: I420Frame; info: ReceivedFrame }> = [];
  // Send times by id (mod 4096), and the seq each slot belongs to.
  const sendTimes = new Float64Array(ID_MODULO);
  const sendSeqs = new Float64Array(ID_MODULO).fill(-1);
  let lastSeq = -1;
  let lastDecodedSeq = -1;
  let outOfOrder = 0;
  const ids = new Set<number>();
  let sinks: Array<{ stop(): void }> = [];
  let closed = false;
  let sessionUrl = '';

  pc.addEventListener('track', (e: RTCTrackEvent) => {
    if (closed) return;
    const sink = new nonstandard.RTCVideoSink(e.track);
    sinks.push(sink);
    sink.addEventListener('frame', (ev: Event) => {
      const { frame: raw } = ev as unknown as { frame: { width: number; height: number; data: Uint8Array } };
      const at = performance.now();
      const frame: I420Frame = { width: raw.width, height: raw.height, data: raw.data, timestamp: at };
      const id = decodeIds ? readPatternId(frame) : null;
      let seq: number | null = null;
      let latencyMs: number | null = null;
      if (id !== null && lastSeq >= 0) {
        const s = lastSeq - ((((lastSeq - id) % ID_MODULO) + ID_MODULO) % ID_MODULO);
        if (s >= 0 && sendSeqs[id] === s) {
          seq = s;
          latencyMs = at - sendTimes[id];
          if (s < lastDecodedSeq) outOfOrder++;
          lastDecodedSeq = s;
          ids.add(s);
        }
      }
      const info: ReceivedFrame = { at, width: raw.width, height: raw.height, id, seq, latencyMs };
      received.push(info);
      if (keepFrames > 0) {
        kept.push({ frame: { ...frame, data: raw.data.slice() }, info });
        if (kept.length > keepFrames) kept.shift();
      }
      opts.onFrame?.(frame, info);
    });
  });

  // Frame production, paced against the clock so timer jitter does not accumulate.
  let frame = allocI420(width, height);
  const interval = 1000 / fps;
  let timer: NodeJS.Timeout | undefined;
  let sending = true;
  const t0 = performance.now();
  const tick = (): void => {
    if (!sending) return;
    const seq = ++lastSeq;
    producer(frame, seq);
    const id = seq % ID_MODULO;
    sendTimes[id] = performance.now();
    sendSeqs[id] = seq;
    source?.onFrame({ width, height, data: frame.data });
    const next = t0 + (seq + 1) * interval;
    timer = setTimeout(tick, Math.max(0, next - performance.now()));
  };

  const stopSending = (): void => {
    sending = false;
    if (timer) clearTimeout(timer);
    timer = undefined;
  };

  const shutdown = (): void => {
    if (closed) return;
    closed = true;
    stopSending();
    for (const s of sinks) s.stop();
    sinks = [];
    track.stop();
    source = null;
    pc.close();
  };

  let answerSdp: string;
  let postedAt = 0;
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc, opts.gatherTimeoutMs ?? 5000);
    postedAt = performance.now();
    const res = await fetch(`${base}/v1/sessions${query ? `?${query}` : ''}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', ...auth },
      body: opts.mungeOffer ? opts.mungeOffer(pc.localDescription!.sdp) : pc.localDescription!.sdp,
    });
    const body = await res.text();
    if (res.status !== 201) throw new SessionRequestError(res.status, body);
    const location = res.headers.get('location');
    if (!location) throw new Error('POST /v1/sessions: 201 without a Location header');
    sessionUrl = new URL(location, `${base}/`).toString();
    answerSdp = body;
    await pc.setRemoteDescription({ type: 'answer', sdp: opts.mungeAnswer ? opts.mungeAnswer(body) : body });
  } catch (err) {
    shutdown();
    throw err;
  }
  tick();

  const stats = (windowMs = 1000): PeerStats => {
    const now = performance.now();
    let inWindow = 0;
    for (let i = received.length - 1; i >= 0 && received[i].at > now - windowMs; i--) inWindow++;
    const lat: number[] = [];
    const sizes = new Set<string>();
    let decoded = 0;
    for (const r of received) {
      sizes.add(`${r.width}x${r.height}`);
      if (r.id !== null) decoded++;
      if (r.latencyMs !== null) lat.push(r.latencyMs);
    }
    lat.sort((a, b) => a - b);
    const span = received.length > 1 ? received[received.length - 1].at - received[0].at : 0;
    return {
      sent: lastSeq + 1,
      received: received.length,
      decoded,
      distinctIds: ids.size,
      fps: (inWindow * 1000) / windowMs,
      meanFps: span > 0 ? ((received.length - 1) * 1000) / span : 0,
      outOfOrder,
      sizes: [...sizes],
      latencyMs: {
        count: lat.length,
        mean: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : NaN,
        p50: percentile(lat, 0.5),
        p95: percentile(lat, 0.95),
        max: lat.length ? lat[lat.length - 1] : NaN,
      },
      connectionState: pc.connectionState,
    };
  };

  const waitFor = (pred: (s: PeerStats) => boolean, timeoutMs: number): Promise<PeerStats> =>
    new Promise((resolve, reject) => {
      const deadline = performance.now() + timeoutMs;
      const poll = (): void => {
        const s = stats();
        if (pred(s)) return resolve(s);
        if (closed) return reject(new Error(`peer closed while waiting; stats ${JSON.stringify(s)}`));
        if (performance.now() > deadline) return reject(new Error(`timed out after ${timeoutMs} ms; stats ${JSON.stringify(s)}`));
        setTimeout(poll, 50);
      };
      poll();
    });

  let closing: Promise<number | undefined> | undefined;
  const close = (o: PeerCloseOptions = {}): Promise<number | undefined> => {
    closing ??= (async () => {
      openPeers.delete(peer);
      shutdown();
      if (o.vanish) return undefined;
      const res = await fetch(sessionUrl, { method: 'DELETE', headers: auth });
      await res.arrayBuffer();
      return res.status;
    })();
    return closing;
  };

  const peer: Peer = {
    sessionUrl,
    answerSdp,
    pc,
    postedAt,
    received,
    kept,
    latencies: () => received.filter((r) => r.latencyMs !== null).map((r) => r.latencyMs!),
    sendTime: (seq) => (sendSeqs[seq % ID_MODULO] === seq ? sendTimes[seq % ID_MODULO] : undefined),
    stats,
    waitFor,
    stopSending,
    resize: (w, h) => {
      if (w === width && h === height) return;
      width = w;
      height = h;
      frame = allocI420(w, h);
    },
    close,
  };
  openPeers.add(peer);
  return peer;
}
