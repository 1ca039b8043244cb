// @ts-self-types="./index.d.ts"
// xportrait-live SDK: the HTTP routes and the control socket, for Node ≥ 20, Deno and browsers.
// Plain ES modules with no dependencies, so a browser loads them as they are (`/sdk/index.js`,
// which imports its two siblings); the types are in index.d.ts next to it. Uses the global fetch
// and WebSocket; Node 20 has no global WebSocket: pass `WebSocket` from the `ws` package. For
// msgpack frames pass `msgpack` ({ encode, decode } from @msgpack/msgpack; browsers:
// import('/vendor/msgpack/index.mjs')).

import { ControlSocket } from './control.js';
import { XplApiError, errorFrom } from './errors.js';

export { ControlSocket, XplApiError };

const trimSlash = (s) => s.replace(/\/+$/, '');

export class XplClient {
  /** @param {import('./index.d.ts').ClientOptions} opts */
  constructor(opts) {
    if (!opts || !opts.baseUrl) throw new TypeError('XplClient: baseUrl is required, e.g. "http://127.0.0.1:8080"');
    this.baseUrl = trimSlash(opts.baseUrl);
    this.apiKey = opts.apiKey;
    this.fetch = opts.fetch || globalThis.fetch.bind(globalThis);
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    this.msgpack = opts.msgpack;
  }

  url(path) {
    return new URL(path, this.baseUrl + '/').toString();
  }

  headers(extra = {}, token) {
    const h = { ...extra };
    const bearer = token || this.apiKey;
    if (bearer) h.Authorization = `Bearer ${bearer}`;
    return h;
  }

  async call(method, path, what, { body, type, token, expect = [200] } = {}) {
    const res = await this.fetch(this.url(path), {
      method,
      headers: this.headers(type ? { 'Content-Type': type } : {}, token),
      body,
    });
    if (!expect.includes(res.status)) throw await errorFrom(res, what);
    return res;
  }

  async health() {
    return (await this.call('GET', '/healthz', 'health')).json();
  }

  async metrics() {
    return (await this.call('GET', '/metrics', 'metrics')).text();
  }

  async uploadPortrait(bytes, contentType = 'image/jpeg') {
    return (await this.call('POST', '/v1/portraits', 'uploading the portrait', { body: bytes, type: contentType, expect: [201] })).json();
  }

  async listPortraits() {
    return (await (await this.call('GET', '/v1/portraits', 'listing portraits')).json()).portraits;
  }

  async getPortrait(id) {
    return (await this.call('GET', `/v1/portraits/${encodeURIComponent(id)}`, 'getting the portrait')).json();
  }

  async deletePortrait(id) {
    await this.call('DELETE', `/v1/portraits/${encodeURIComponent(id)}`, 'deleting the portrait', { expect: [204] });
  }

  /** WHIP: the driving offer in, the answer out. `token` (a publish token) replaces the API key. */
  async createSession(offerSdp, opts = {}) {
    const q = new URLSearchParams();
    if (opts.portrait) q.set('portrait', opts.portrait);
    if (opts.renderer) q.set('renderer', opts.renderer);
    if (opts.audio === false) q.set('audio', 'off');
    const qs = q.toString();
    const res = await this.call('POST', `/v1/sessions${qs ? '?' + qs : ''}`, 'starting the session', { body: offerSdp, type: 'application/sdp', token: opts.token, expect: [201] });
    const location = this.url(res.headers.get('location'));
    return { id: location.split('/').pop(), location, etag: res.headers.get('etag'), answerSdp: await res.text() };
  }

  async listSessions() {
    return (await (await this.call('GET', '/v1/sessions', 'listing sessions')).json()).sessions;
  }

  async getSession(id) {
    return (await this.call('GET', `/v1/sessions/${encodeURIComponent(id)}`, 'getting the session')).json();
  }

  async deleteSession(id, opts = {}) {
    await this.call('DELETE', `/v1/sessions/${encodeURIComponent(id)}`, 'ending the session', { token: opts.token, expect: [204] });
  }

  async addIceCandidates(id, fragment) {
    await this.call('PATCH', `/v1/sessions/${encodeURIComponent(id)}`, 'trickle ICE', { body: fragment, type: 'application/trickle-ice-sdpfrag', expect: [204] });
  }

  /** A publish token (for an encoder such as OBS: it creates one session at a time) and the viewer token and links that follow it. */
  async createPublishToken(opts = {}) {
    const body = opts.ttlSeconds !== undefined ? JSON.stringify({ ttlSeconds: opts.ttlSeconds }) : undefined;
    const res = await this.call('POST', '/v1/publish-tokens', 'minting a publish token', { body, type: body ? 'application/json' : undefined, expect: [201] });
    const t = await res.json();
    return { ...t, whipUrl: this.url(t.whipUrl), whepUrl: this.url(t.whepUrl), viewUrl: this.url(t.viewUrl) };
  }

  /** The STUN/TURN servers the server hands its clients (any credential: API key, viewer or publish token). */
  async iceServers(opts = {}) {
    return (await (await this.call('GET', '/v1/ice-servers', 'getting the ICE servers', { token: opts.token })).json()).iceServers;
  }

  async createViewerToken(id, opts = {}) {
    const body = opts.ttlSeconds !== undefined ? JSON.stringify({ ttlSeconds: opts.ttlSeconds }) : undefined;
    const res = await this.call('POST', `/v1/sessions/${encodeURIComponent(id)}/tokens`, 'minting a viewer token', { body, type: body ? 'application/json' : undefined, expect: [201] });
    const t = await res.json();
    return { ...t, viewUrl: this.url(t.viewUrl), whepUrl: this.url(t.whepUrl) };
  }

  /** WHEP: a recvonly offer in, the answer out. `token` (a viewer token) replaces the API key. */
  async whep(id, offerSdp, opts = {}) {
    const res = await this.call('POST', `/v1/sessions/${encodeURIComponent(id)}/whep`, 'starting the viewer', { body: offerSdp, type: 'application/sdp', token: opts.token, expect: [201] });
    const location = this.url(res.headers.get('location'));
    return { viewerId: location.split('/').pop(), location, answerSdp: await res.text() };
  }

  async deleteViewer(id, viewerId, opts = {}) {
    await this.call('DELETE', `/v1/sessions/${encodeURIComponent(id)}/whep/${encodeURIComponent(viewerId)}`, 'ending the viewer', { token: opts.token, expect: [204] });
  }

  /** URL of the bare OBS page for a session. */
  viewUrl(id, opts = {}) {
    const u = new URL(this.url(`/view/${encodeURIComponent(id)}`));
    if (opts.token) u.searchParams.set('token', opts.token);
    if (opts.background) u.searchParams.set('bg', opts.background);
    return u.toString();
  }

  /** The peer connection configuration: the server's ICE servers (unless given), one transport for all media. */
  async rtcConfiguration(opts) {
    const iceServers = opts.iceServers || (await this.iceServers({ token: opts.token }));
    return { iceServers, bundlePolicy: 'max-bundle' };
  }

  /**
   * Browser (or any global RTCPeerConnection): publishes a camera (and microphone) stream as the
   * driving input over WHIP. `direction: 'sendrecv'` (default) gets the animated video — and the
   * audio, delayed to match it — back on the same connection (`stream`); `'sendonly'` is ingest only,
   * as a WHIP encoder (watch the output with watch()). VP8 is put first. Resolves once the answer is applied.
   */
  async publish(media, opts = {}) {
    const PC = opts.RTCPeerConnection || globalThis.RTCPeerConnection;
    if (!PC) throw new TypeError('publish() needs RTCPeerConnection (a browser, or pass opts.RTCPeerConnection)');
    const direction = opts.direction || 'sendrecv';
    const pc = new PC(await this.rtcConfiguration(opts));
    const stream = typeof MediaStream === 'function' ? new MediaStream() : null;
    pc.addEventListener('track', (e) => {
      if (stream) stream.addTrack(e.track);
      if (opts.onTrack) opts.onTrack(e.track, e.streams && e.streams[0]);
    });
    for (const track of media.getTracks()) {
      if (track.kind === 'video') addCameraTransceiver(pc, track, media, direction);
      else pc.addTransceiver(track, { direction, streams: [media] });
    }
    let session;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, opts.gatherTimeoutMs || 2000);
      session = await this.createSession(pc.localDescription.sdp, { renderer: opts.renderer, portrait: opts.portrait, audio: opts.audio, token: opts.token });
      await pc.setRemoteDescription({ type: 'answer', sdp: session.answerSdp });
    } catch (err) {
      pc.close();
      if (session) await this.deleteSession(session.id, { token: opts.token }).catch(() => {});
      throw err;
    }
    let closed = false;
    return {
      pc,
      stream,
      id: session.id,
      location: session.location,
      close: async () => {
        if (closed) return;
        closed = true;
        pc.close();
        await this.deleteSession(session.id, { token: opts.token }).catch(() => {});
      },
    };
  }

  /**
   * Browser (or any global RTCPeerConnection): watches a session's output — or a publisher's
   * (`id` = its publish id) — over WHEP, video and (unless `audio: false`) audio.
   * Resolves once the answer is applied; `stream` gets the tracks when media flows.
   */
  async watch(id, opts = {}) {
    const PC = opts.RTCPeerConnection || globalThis.RTCPeerConnection;
    if (!PC) throw new TypeError('watch() needs RTCPeerConnection (a browser, or pass opts.RTCPeerConnection)');
    const pc = new PC(await this.rtcConfiguration(opts));
    const stream = typeof MediaStream === 'function' ? new MediaStream() : null;
    pc.addTransceiver('video', { direction: 'recvonly' });
    if (opts.audio !== false) pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addEventListener('track', (e) => {
      if (stream) stream.addTrack(e.track);
      if (opts.onTrack) opts.onTrack(e.track, e.streams && e.streams[0]);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, opts.gatherTimeoutMs || 2000);
    let viewer;
    try {
      viewer = await this.whep(id, pc.localDescription.sdp, { token: opts.token });
      await pc.setRemoteDescription({ type: 'answer', sdp: viewer.answerSdp });
    } catch (err) {
      pc.close();
      throw err;
    }
    let closed = false;
    return {
      pc,
      stream,
      viewerId: viewer.viewerId,
      close: async () => {
        if (closed) return;
        closed = true;
        pc.close();
        await this.deleteViewer(id, viewer.viewerId, { token: opts.token }).catch(() => {});
      },
    };
  }

  /** The control socket. Connects at once; requests made before it is open wait for it. */
  control(opts = {}) {
    return new ControlSocket({
      url: this.baseUrl.replace(/^http/, 'ws') + '/v1/control',
      apiKey: this.apiKey,
      WebSocket: this.WebSocket,
      msgpack: this.msgpack,
      ...opts,
    });
  }
}

/** Puts the codecs matching `mime` first on a transceiver, where the browser lets us choose. */
function preferCodec(transceiver, kind, mime) {
  const caps = typeof RTCRtpReceiver !== 'undefined' && typeof RTCRtpReceiver.getCapabilities === 'function' && RTCRtpReceiver.getCapabilities(kind);
  if (!caps || typeof transceiver.setCodecPreferences !== 'function') return;
  const first = caps.codecs.filter((c) => mime.test(c.mimeType));
  if (first.length) transceiver.setCodecPreferences([...first, ...caps.codecs.filter((c) => !mime.test(c.mimeType))]);
}

/**
 * Adds the camera track to a peer connection the way the server wants it: VP8 preferred, and two
 * temporal layers (L1T2), so that a server short of CPU can skip every other frame instead of
 * falling behind. `direction` is 'sendrecv' (the avatar comes back on the same transceiver, the
 * default) or 'sendonly'. Browsers that do not take the scalability mode get a plain transceiver.
 * @param {RTCPeerConnection} pc
 * @param {MediaStreamTrack} track
 * @param {MediaStream} [stream]
 * @param {'sendrecv' | 'sendonly'} [direction]
 * @returns {RTCRtpTransceiver}
 */
export function addCameraTransceiver(pc, track, stream, direction = 'sendrecv') {
  const init = { direction, streams: stream ? [stream] : [] };
  let transceiver;
  try {
    transceiver = pc.addTransceiver(track, { ...init, sendEncodings: [{ scalabilityMode: 'L1T2' }] });
  } catch {
    transceiver = pc.addTransceiver(track, init);
  }
  preferCodec(transceiver, 'video', /vp8/i);
  return transceiver;
}

/**
 * Resolves when ICE gathering is complete (or the end-of-candidates event came), or after
 * `capMs` with whatever was gathered: the server's signalling is non-trickle.
 * @param {RTCPeerConnection} pc
 * @param {number} capMs
 */
export function iceGathered(pc, capMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', onCandidate);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    const onCandidate = (e) => !e.candidate && done();
    const timer = setTimeout(done, capMs);
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', onCandidate);
  });
}
