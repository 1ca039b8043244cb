/**
 * A lip-sync test peer on @roamhq/wrtc (libwebrtc): it sends a dark video with a white flash and
 * silence with an audio click, the two starting in the same instant every `periodMs`, and records
 * when each comes back (the flash in the returned video, the click in the returned audio, both on
 * this process's clock after libwebrtc's jitter buffers and A/V sync). The offset of an event is
 * click arrival − flash arrival: positive when the voice is late.
 *
 * @example
 * const peer = await startAvPeer({ baseUrl, query: { renderer: 'passthrough' } });
 * await waitUntil(() => peer.offsets().length >= 4, 20_000, 'four events');
 * await peer.close();
 */
import wrtc from '@roamhq/wrtc';
import './wrtc-exit.ts';

const { RTCPeerConnection, MediaStream, nonstandard } = wrtc;

export interface AvPeerOptions {
  /** Server origin. */
  baseUrl: string;
  query?: Record<string, string>;
  apiKey?: string;
  /** Time between events (flash + click), default 1500 ms. */
  periodMs?: number;
  width?: number;
  height?: number;
}

/** What comes back: flashes in the video, clicks in the audio, both on this process's clock. */
export interface AvReceiver {
  /** Arrival times of flashes (video) and clicks (audio) seen so far. */
  readonly flashes: number[];
  readonly clicks: number[];
  /** Audio chunks (10 ms) received so far. */
  audioChunks(): number;
  /** For every flash with a click within ±500 ms: click − flash, ms. */
  offsets(): number[];
}

export interface AvPeer extends AvReceiver {
  readonly pc: RTCPeerConnection;
  readonly sessionUrl: string;
  readonly sessionId: string;
  /** Send times of the events so far. */
  readonly sent: number[];
  close(): Promise<void>;
}

export interface AvViewer extends AvReceiver {
  close(): Promise<void>;
}

const RATE = 48_000;
const CHUNK = RATE / 100;
const TICK_MS = 10;
/** One video frame every 3 ticks (33 fps); events fall on ticks that carry a frame. */
const FRAME_TICKS = 3;
const FLASH_FRAMES = 8;
const CLICK_CHUNKS = 2;
const DARK = 40;
const BRIGHT = 235;
/** A new event is only counted this long after the previous one (no double counting of one flash). */
const REARM_MS = 500;

async function gathered(pc: RTCPeerConnection): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 5000);
    pc.addEventListener('icecandidate', (e: RTCPeerConnectionIceEvent) => {
      if (!e.candidate) {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

/** For each flash, the nearest click within 500 ms, as click − flash (ms): audio late is positive. */
export function syncOffsets(flashes: readonly number[], clicks: readonly number[]): number[] {
  const out: number[] = [];
  for (const f of flashes) {
    let best: number | undefined;
    for (const c of clicks) if (Math.abs(c - f) <= 500 && (best === undefined || Math.abs(c - f) < Math.abs(best))) best = c - f;
    if (best !== undefined) out.push(best);
  }
  return out;
}

/** Watches a peer connection's incoming tracks for flashes and clicks. */
function receive(pc: RTCPeerConnection): AvReceiver & { stop(): void } {
  const flashes: number[] = [];
  const clicks: number[] = [];
  let chunks = 0;
  let sinks: Array<{ stop(): void }> = [];
  pc.addEventListener('track', (e: RTCTrackEvent) => {
    if (e.track.kind === 'video') {
      const sink = new nonstandard.RTCVideoSink(e.track);
      sinks.push(sink);
      sink.addEventListener('frame', (ev: Event) => {
        const { frame } = ev as unknown as { frame: { width: number; height: number; data: Uint8Array } };
        const at = performance.now();
        // Mean luma of the centre row is enough: the frame is flat.
        const row = Math.floor(frame.height / 2) * frame.width;
        let sum = 0;
        for (let x = 0; x < frame.width; x += 4) sum += frame.data[row + x];
        const bright = sum / Math.ceil(frame.width / 4) > (DARK + BRIGHT) / 2;
        if (bright && (flashes.length === 0 || at - flashes[flashes.length - 1] > REARM_MS)) flashes.push(at);
      });
    } else {
      const sink = new nonstandard.RTCAudioSink(e.track);
      sinks.push(sink);
      sink.addEventListener('data', (ev: Event) => {
        const { samples } = ev as unknown as { samples: Int16Array };
        const at = performance.now();
        chunks++;
        let peak = 0;
        for (let i = 0; i < samples.length; i++) peak = Math.max(peak, Math.abs(samples[i]));
        if (peak > 4000 && (clicks.length === 0 || at - clicks[clicks.length - 1] > REARM_MS)) clicks.push(at);
      });
    }
  });
  return {
    flashes,
    clicks,
    audioChunks: () => chunks,
    offsets: () => syncOffsets(flashes, clicks),
    stop() {
      for (const s of sinks) s.stop();
      sinks = [];
    },
  };
}

/** A WHEP viewer (recvonly audio + video) of a session, watching for the same flashes and clicks. */
export async function startAvViewer(baseUrl: string, sessionId: string, opts: { apiKey?: string } = {}): Promise<AvViewer> {
  const auth: Record<string, string> = opts.apiKey ? { Authorization: `Bearer ${opts.apiKey}` } : {};
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const rx = receive(pc);
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await fetch(`${baseUrl.replace(/\/$/, '')}/v1/sessions/${sessionId}/whep`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...auth }, body: pc.localDescription!.sdp });
  const answer = await res.text();
  if (res.status !== 201) {
    rx.stop();
    pc.close();
    throw new Error(`WHEP answered ${res.status}: ${answer}`);
  }
  const location = new URL(res.headers.get('location')!, `${baseUrl}/`).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  let closed = false;
  return {
    ...rx,
    async close() {
      if (closed) return;
      closed = true;
      rx.stop();
      pc.close();
      const r = await fetch(location, { method: 'DELETE', headers: auth });
      await r.arrayBuffer();
    },
  };
}

export async function startAvPeer(opts: AvPeerOptions): Promise<AvPeer> {
  const width = opts.width ?? 320;
  const height = opts.height ?? 240;
  const periodTicks = Math.round((opts.periodMs ?? 1500) / TICK_MS / FRAME_TICKS) * FRAME_TICKS;
  const base = opts.baseUrl.replace(/\/$/, '');
  const auth: Record<string, string> = opts.apiKey ? { Authorization: `Bearer ${opts.apiKey}` } : {};

  const pc = new RTCPeerConnection({ iceServers: [] });
  let audioSource: InstanceType<typeof nonstandard.RTCAudioSource> | null = new nonstandard.RTCAudioSource();
  let videoSource: InstanceType<typeof nonstandard.RTCVideoSource> | null = new nonstandard.RTCVideoSource();
  const audioTrack = audioSource.createTrack();
  const videoTrack = videoSource.createTrack();
  const stream = new MediaStream([audioTrack, videoTrack]);
  pc.addTransceiver(audioTrack, { direction: 'sendrecv', streams: [stream] });
  pc.addTransceiver(videoTrack, { direction: 'sendrecv', streams: [stream] });

  const sent: number[] = [];
  const rx = receive(pc);

  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const query = new URLSearchParams(opts.query ?? {}).toString();
  const res = await fetch(`${base}/v1/sessions${query ? `?${query}` : ''}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...auth },
    body: pc.localDescription!.sdp,
  });
  const answer = await res.text();
  if (res.status !== 201) {
    pc.close();
    throw new Error(`POST /v1/sessions answered ${res.status}: ${answer}`);
  }
  const sessionUrl = new URL(res.headers.get('location')!, `${base}/`).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });

  // Sources: the same timer feeds both, so a flash frame and the first click chunk are handed to
  // libwebrtc in the same instant.
  const silence = new Int16Array(CHUNK);
  const click = new Int16Array(CHUNK);
  for (let i = 0; i < CHUNK; i++) click[i] = Math.round(20_000 * Math.sin((2 * Math.PI * 1000 * i) / RATE));
  const dark = new Uint8Array((width * height * 3) / 2).fill(128);
  dark.fill(DARK, 0, width * height);
  const bright = new Uint8Array(dark.length).fill(128);
  bright.fill(BRIGHT, 0, width * height);
  const t0 = performance.now();
  let tick = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const step = (): void => {
    if (closed) return;
    // Catch up on late timers so the audio clock keeps real time.
    while (t0 + tick * TICK_MS <= performance.now()) {
      const sinceEvent = tick % periodTicks;
      if (sinceEvent === 0 && tick > 0) sent.push(performance.now());
      const eventOn = tick > 0;
      audioSource?.onData({ samples: eventOn && sinceEvent < CLICK_CHUNKS ? click : silence, sampleRate: RATE, bitsPerSample: 16, channelCount: 1, numberOfFrames: CHUNK });
      if (tick % FRAME_TICKS === 0) {
        const flash = eventOn && sinceEvent < FLASH_FRAMES * FRAME_TICKS;
        videoSource?.onFrame({ width, height, data: flash ? bright : dark });
      }
      tick++;
    }
    timer = setTimeout(step, Math.max(0, t0 + tick * TICK_MS - performance.now()));
  };
  step();

  return {
    pc,
    sessionUrl,
    sessionId: sessionUrl.split('/').pop()!,
    sent,
    ...rx,
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      rx.stop();
      audioTrack.stop();
      videoTrack.stop();
      audioSource = null;
      videoSource = null;
      pc.close();
      const r = await fetch(sessionUrl, { method: 'DELETE', headers: auth });
      await r.arrayBuffer();
    },
  };
}
