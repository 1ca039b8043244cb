/**
 * Chromium as the load generator: what a web-app user's browser sees. N sessions in one headless
 * Chromium page, each sending the fake camera (a looped .y4m) with a chosen VP8 scalability mode
 * (L1T2 by default, as the web app and the SDK ask for) and receiving its output into a <video>.
 *
 * Glass-to-glass needs no ids in the picture, so it works for every renderer: the server sends each
 * output frame with the RTP timestamp of the camera frame it was made from. The page notes when
 * each encoded camera frame leaves Chromium's encoder (an encoded-frame transform on the sender),
 * and when the output frame with that timestamp is presented (requestVideoFrameCallback), both on
 * the page's clock. The wrtc load generator (run.ts) cannot do this: its sink exposes no RTP
 * timestamps, so for mesh-warp it reports the server-added latency only; and it cannot send
 * temporal layers.
 */
import { launchChromium } from '../test/support/browser.ts';
import { summarise, type LatencySummary, type LoadOptions } from './run.ts';

export type ScalabilityMode = 'L1T1' | 'L1T2' | 'L1T3';

/** The server, the sessions and the measured window, as the wrtc load generator takes them. */
export interface BrowserLoadOptions extends Pick<LoadOptions, 'url' | 'apiKey' | 'renderer' | 'portrait' | 'sessions' | 'durationS' | 'warmupS' | 'progress'> {
  mode: ScalabilityMode;
  /** The fake camera: a .y4m file Chromium loops. */
  camera: string;
  chromiumPath: string;
}

/** Chromium's own counters over the measured window (deltas of getStats). */
export interface ChromiumSide {
  /** The sender's bandwidth estimate at the end, bit/s. */
  targetBps: number;
  /** Mean time a packet waited in the sender's pacer, ms. */
  pacerMs: number;
  encodeMs: number;
  keyframesSent: number;
  /** Mean time a frame spent in the receiver's jitter buffer, ms. */
  jitterBufferMs: number;
  decodeMs: number;
  framesDropped: number;
}

export interface BrowserSessionResult {
  id: string;
  /** Output frames presented per second in the measured window. */
  fps: number;
  /** Encoded camera frame out of the sender's encoder → its output frame presented. */
  g2g: LatencySummary;
  /** Encoded camera frame out of the encoder → the last packet of its output frame received. */
  arrival: LatencySummary;
  /** The session's own figures (GET /v1/sessions/ID) at the end. */
  server: { latency: { p50: number; p95: number }; framesReceived: number; framesDecoded: number; framesOut: number; temporalLayers: number; frameBudgetFps: number; keyframeRequests: number };
  chromium: ChromiumSide;
}

export interface BrowserLoadResult {
  at: string;
  options: Omit<BrowserLoadOptions, 'apiKey' | 'progress' | 'chromiumPath'>;
  sessions: BrowserSessionResult[];
}

/** What the page keeps per session; `lat` rows are [presented at, g2g ms, arrival ms]. */
const SETUP = (n: number, mode: string, query: string, auth: string | null): string => `(async () => {
  const cam = await navigator.mediaDevices.getUserMedia({ video: true });
  const headers = { 'Content-Type': 'application/sdp' };
  if (${JSON.stringify(auth)}) headers.Authorization = ${JSON.stringify(auth)};
  window.xplLoad = [];
  for (let i = 0; i < ${n}; i++) {
    const pc = new RTCPeerConnection({ encodedInsertableStreams: true });
    const s = { pc, sent: new Map(), lat: [], url: '' };
    window.xplLoad.push(s);
    const tr = pc.addTransceiver(cam.getVideoTracks()[0].clone(), { direction: 'sendrecv', sendEncodings: [{ scalabilityMode: ${JSON.stringify(mode)} }] });
    tr.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => /vp8/i.test(c.mimeType)));
    const out = tr.sender.createEncodedStreams();
    out.readable.pipeThrough(new TransformStream({ transform(f, c) {
      s.sent.set(f.getMetadata().rtpTimestamp, performance.now());
      if (s.sent.size > 900) s.sent.delete(s.sent.keys().next().value);
      c.enqueue(f);
    } })).pipeTo(out.writable);
    pc.ontrack = (e) => {
      const back = e.receiver.createEncodedStreams();
      back.readable.pipeTo(back.writable);
      const v = document.createElement('video');
      v.muted = true; v.autoplay = true; v.playsInline = true;
      v.srcObject = new MediaStream([e.track]);
      document.body.appendChild(v);
      const seen = (now, meta) => {
        const t0 = s.sent.get(meta.rtpTimestamp);
        if (t0 !== undefined) s.lat.push([meta.presentationTime, meta.presentationTime - t0, meta.receiveTime - t0]);
        v.requestVideoFrameCallback(seen);
      };
      v.requestVideoFrameCallback(seen);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()); });
    const res = await fetch('/v1/sessions${query}', { method: 'POST', headers, body: pc.localDescription.sdp });
    const body = await res.text();
    if (res.status !== 201) throw new Error('session ' + i + ': POST /v1/sessions answered ' + res.status + ': ' + body);
    s.url = res.headers.get('location');
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  }
})()`;

/** Chromium's counters per session, to be differenced over the window. */
const COUNTERS = `Promise.all(window.xplLoad.map(async (s) => {
  const r = {};
  (await s.pc.getStats()).forEach((x) => {
    if (x.type === 'outbound-rtp' && x.kind === 'video') Object.assign(r, { target: x.targetBitrate ?? 0, pacer: x.totalPacketSendDelay ?? 0, packets: x.packetsSent ?? 0, encode: x.totalEncodeTime ?? 0, encoded: x.framesEncoded ?? 0, keys: x.keyFramesEncoded ?? 0 });
    if (x.type === 'inbound-rtp' && x.kind === 'video') Object.assign(r, { jb: x.jitterBufferDelay ?? 0, emitted: x.jitterBufferEmittedCount ?? 0, decode: x.totalDecodeTime ?? 0, decoded: x.framesDecoded ?? 0, dropped: x.framesDropped ?? 0 });
  });
  return r;
}))`;

type Counters = Record<'target' | 'pacer' | 'packets' | 'encode' | 'encoded' | 'keys' | 'jb' | 'emitted' | 'decode' | 'decoded' | 'dropped', number>;

function chromiumSide(a: Counters, b: Counters): ChromiumSide {
  const per = (num: number, den: number): number => (den > 0 ? (1000 * num) / den : Number.NaN);
  return {
    targetBps: b.target,
    pacerMs: per(b.pacer - a.pacer, b.packets - a.packets),
    encodeMs: per(b.encode - a.encode, b.encoded - a.encoded),
    keyframesSent: b.keys - a.keys,
    jitterBufferMs: per(b.jb - a.jb, b.emitted - a.emitted),
    decodeMs: per(b.decode - a.decode, b.decoded - a.decoded),
    framesDropped: b.dropped - a.dropped,
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runBrowserLoad(o: BrowserLoadOptions): Promise<BrowserLoadResult> {
  const base = o.url.replace(/\/$/, '');
  const auth = o.apiKey ? `Bearer ${o.apiKey}` : null;
  const query = `?${new URLSearchParams({ renderer: o.renderer, ...(o.portrait ? { portrait: o.portrait } : {}) })}`;
  const headers: Record<string, string> = auth ? { Authorization: auth } : {};
  const browser = await launchChromium(o.chromiumPath, { camera: o.camera });
  const urls: string[] = [];
  try {
    const page = await browser.newPage();
    // a blank page of the server's origin, so the page's POSTs are same-origin whatever the server serves at /
    const blank = `${base}/__xpl-browser-load`;
    await page.route(blank, (r) => r.fulfill({ contentType: 'text/html', body: '<!doctype html><title>xpl load</title>' }));
    await page.goto(blank);
    o.progress?.(`starting ${o.sessions} ${o.renderer} session(s) in Chromium (${o.mode}) against ${base} …`);
    try {
      await page.evaluate(SETUP(o.sessions, o.mode, query, auth));
    } finally {
      urls.push(...((await page.evaluate('(window.xplLoad ?? []).map((s) => s.url).filter(Boolean)')) as string[]));
    }
    o.progress?.(`warming up for ${o.warmupS} s, then measuring for ${o.durationS} s …`);
    await sleep(o.warmupS * 1000);
    const from = (await page.evaluate('performance.now()')) as number;
    const before = (await page.evaluate(COUNTERS)) as Counters[];
    await sleep(o.durationS * 1000);
    const to = (await page.evaluate('performance.now()')) as number;
    const after = (await page.evaluate(COUNTERS)) as Counters[];
    const rows = (await page.evaluate(`window.xplLoad.map((s) => s.lat.filter((r) => r[0] >= ${from} && r[0] <= ${to}))`)) as number[][][];
    const sessions: BrowserSessionResult[] = [];
    for (let i = 0; i < o.sessions; i++) {
      const res = await fetch(new URL(urls[i], `${base}/`), { headers });
      if (!res.ok) throw new Error(`GET ${urls[i]} answered ${res.status}: ${await res.text()}`);
      const st = (await res.json()) as { stats: Record<string, unknown> & { serverLatencyMs: { p50: number; p95: number } } };
      const s = st.stats;
      sessions.push({
        id: urls[i].split('/').pop() ?? '',
        fps: (rows[i].length * 1000) / (to - from),
        g2g: summarise(rows[i].map((r) => r[1])),
        arrival: summarise(rows[i].map((r) => r[2]).filter(Number.isFinite)),
        server: {
          latency: { p50: s.serverLatencyMs.p50, p95: s.serverLatencyMs.p95 },
          framesReceived: s.framesReceived as number,
          framesDecoded: s.framesIn as number,
          framesOut: s.framesOut as number,
          temporalLayers: s.temporalLayers as number,
          frameBudgetFps: s.frameBudgetFps as number,
          keyframeRequests: s.keyframeRequests as number,
        },
        chromium: chromiumSide(before[i], after[i]),
      });
    }
    const { apiKey: _k, progress: _p, chromiumPath: _c, ...options } = o;
    return { at: new Date().toISOString(), options, sessions };
  } finally {
    await Promise.all(urls.map((u) => fetch(new URL(u, `${base}/`), { method: 'DELETE', headers }).catch(() => undefined)));
    await browser.close();
  }
}

/** The result as a table for a terminal. */
export function browserSummary(r: BrowserLoadResult): string {
  const f = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '–');
  const lines = [
    `# xportrait-live load test in Chromium, ${r.at}: ${r.options.url}, renderer ${r.options.renderer}, ${r.options.sessions} session(s), ${r.options.mode}, camera ${r.options.camera}, ${r.options.durationS} s measured`,
    '',
    'session  out fps  g2g p50/p95 ms  arrival p50/p95 ms  server p50/p95 ms  server decoded/received  cap fps  PLIs | Chromium: target kbit/s  pacer ms  jitter buffer ms  decode ms',
  ];
  r.sessions.forEach((s, i) => {
    lines.push(
      `${String(i).padEnd(8)} ${f(s.fps, 1).padStart(7)}  ${`${f(s.g2g.p50)}/${f(s.g2g.p95)}`.padStart(14)}  ${`${f(s.arrival.p50)}/${f(s.arrival.p95)}`.padStart(18)}  ${`${f(s.server.latency.p50)}/${f(s.server.latency.p95)}`.padStart(17)}  ${`${s.server.framesDecoded}/${s.server.framesReceived}`.padStart(23)}  ${f(s.server.frameBudgetFps, 1).padStart(7)}  ${String(s.server.keyframeRequests).padStart(4)} | ${f(s.chromium.targetBps / 1000).padStart(22)}  ${f(s.chromium.pacerMs, 1).padStart(8)}  ${f(s.chromium.jitterBufferMs, 1).padStart(16)}  ${f(s.chromium.decodeMs, 1).padStart(9)}`,
    );
  });
  const worst = Math.max(...r.sessions.map((s) => s.g2g.p95));
  lines.push('', `worst glass-to-glass p95: ${f(worst)} ms; out fps min ${f(Math.min(...r.sessions.map((s) => s.fps)), 1)}`);
  return lines.join('\n');
}
