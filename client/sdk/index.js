// @ts-self-types="./index.d.ts"
// xportrait-live SDK: the HTTP routes and the control socket, for Node ≥ 20, Deno and browsers.
// Plain ES module with no imports, so a browser loads it as is (`/sdk/index.js`); the types are
// in index.d.ts next to it. Uses the global fetch and WebSocket; Node 20 has no global
// WebSocket: pass `WebSocket` from the `ws` package. For msgpack frames pass `msgpack`
// ({ encode, decode } from @msgpack/msgpack; browsers: import('/vendor/msgpack/index.mjs')).

export class XplApiError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ status?: number, details?: unknown, retryAfter?: number }} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'XplApiError';
    this.code = code;
    this.status = extra.status;
    this.details = extra.details;
    this.retryAfter = extra.retryAfter;
  }
}

const trimSlash = (s) => s.replace(/\/+$/, '');

async function errorFrom(res, what) {
  let code = 'http_' + res.status;
  let message = `${what}: HTTP ${res.status}`;
  let details;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code;
      message = `${what}: ${body.error.message}`;
      details = body.error.details;
    }
  } catch {
    /* not JSON */
  }
  const ra = res.headers.get('retry-after');
  return new XplApiError(code, message, { status: res.status, details, retryAfter: ra ? Number(ra) : undefined });
}

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
      const t = pc.addTransceiver(track, { direction, streams: [media] });
      if (track.kind === 'video') preferCodec(t, 'video', /vp8/i);
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

/** Close codes after which reconnecting cannot help. */
const FATAL_CLOSE = new Set([1008]);

export class ControlSocket {
  /** @param {import('./index.d.ts').ControlOptions} opts */
  constructor(opts) {
    this.opts = { format: 'json', requestTimeoutMs: 15000, reconnect: true, minDelayMs: 250, maxDelayMs: 10000, ...opts };
    this.WebSocket = this.opts.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError('no WebSocket: on Node 20 pass { WebSocket } from the "ws" package');
    if (this.opts.format === 'msgpack' && !(this.opts.msgpack && this.opts.msgpack.encode && this.opts.msgpack.decode)) {
      throw new TypeError('format "msgpack" needs opts.msgpack = { encode, decode } (from @msgpack/msgpack)');
    }
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Map();
    /** session id → hz: re-sent after every reconnect. */
    this.subscriptions = new Map();
    this.attempt = 0;
    this.closedByUser = false;
    this.ws = null;
    this.openWaiters = [];
    this.isOpen = false;
    this.on('session.closed', (e) => this.subscriptions.delete(e.session));
    this.connect();
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, data) {
    const set = this.listeners.get(event);
    if (set) for (const fn of [...set]) {
      try {
        fn(data);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  connect() {
    const ws = new this.WebSocket(this.opts.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.addEventListener('open', () => void this.onOpen(ws));
    ws.addEventListener('message', (e) => this.onMessage(e.data));
    ws.addEventListener('close', (e) => this.onClose(ws, e.code, e.reason));
    ws.addEventListener('error', () => this.emit('error', new XplApiError('socket_error', 'control socket error')));
  }

  async onOpen(ws) {
    try {
      if (this.opts.apiKey) await this.send({ op: 'auth', key: this.opts.apiKey }, ws);
      for (const [session, hz] of this.subscriptions) {
        await this.send({ op: 'stats.subscribe', session, hz }, ws).catch((err) => {
          this.subscriptions.delete(session);
          this.emit('error', err);
        });
      }
    } catch (err) {
      if (err && err.code === 'unauthorized') this.fatal = err;
      this.emit('error', err);
      ws.close(1000, 'auth failed');
      return;
    }
    const wasReconnect = this.attempt > 0;
    this.attempt = 0;
    this.isOpen = true;
    this.emit(wasReconnect ? 'reconnected' : 'open', undefined);
    for (const w of this.openWaiters.splice(0)) w.resolve();
  }

  onMessage(data) {
    let msg;
    try {
      msg = typeof data === 'string' ? JSON.parse(data) : this.opts.msgpack.decode(new Uint8Array(data));
    } catch (err) {
      this.emit('error', new XplApiError('bad_message', `undecodable message from the server: ${err.message}`));
      return;
    }
    if (msg && msg.event) {
      this.emit(msg.event, msg);
      return;
    }
    const p = msg && this.pending.get(msg.id);
    if (!p) {
      if (msg && msg.ok === false) this.emit('error', new XplApiError(msg.error.code, msg.error.message, { details: msg.error.details }));
      return;
    }
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new XplApiError(msg.error.code, msg.error.message, { details: msg.error.details }));
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.isOpen = false;
    for (const [id, p] of this.pending) {
      if (p.ws === ws) {
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.reject(new XplApiError('disconnected', `the control socket closed (${code}${reason ? ': ' + reason : ''}) before the reply`));
      }
    }
    this.emit('close', { code, reason });
    const fatal = this.fatal || FATAL_CLOSE.has(code);
    if (this.closedByUser || !this.opts.reconnect || fatal) {
      const err = this.fatal || new XplApiError('closed', `the control socket is closed (${code}${reason ? ': ' + reason : ''})`);
      for (const w of this.openWaiters.splice(0)) w.reject(err);
      this.finalError = err;
      return;
    }
    const delay = Math.min(this.opts.maxDelayMs, this.opts.minDelayMs * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt++;
    this.emit('reconnecting', { attempt: this.attempt, delayMs: Math.round(delay) });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Resolves when the socket is open and authenticated. */
  ready() {
    if (this.isOpen) return Promise.resolve();
    if (this.finalError) return Promise.reject(this.finalError);
    return new Promise((resolve, reject) => this.openWaiters.push({ resolve, reject }));
  }

  send(body, ws = this.ws, timeoutMs = this.opts.requestTimeoutMs) {
    const id = this.nextId++;
    const msg = { id, ...body };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new XplApiError('timeout', `no reply to "${body.op}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, ws });
      try {
        ws.send(this.opts.format === 'msgpack' ? this.opts.msgpack.encode(msg) : JSON.stringify(msg));
      } catch (err) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(err);
      }
    });
  }

  /** Any operation: `{ op, ...args }` → the reply's result, or a rejected XplApiError. */
  async request(op, args = {}, opts = {}) {
    await this.ready();
    return this.send({ op, ...args }, this.ws, opts.timeoutMs || this.opts.requestTimeoutMs);
  }

  /** Sends a raw message (not validated here): for tests and experiments. */
  sendRaw(data) {
    this.ws.send(data);
  }

  ping() { return this.request('ping'); }
  listSessions() { return this.request('session.list').then((r) => r.sessions); }
  getSession(session) { return this.request('session.get', { session }); }
  closeSession(session) { return this.request('session.close', { session }); }
  setPortrait(session, portrait) { return this.request('session.setPortrait', { session, portrait }); }
  setRenderer(session, renderer) { return this.request('session.setRenderer', { session, renderer }); }
  setParams(session, params) { return this.request('session.setParams', { session, params }).then((r) => r.params); }
  setOutput(session, output) { return this.request('session.setOutput', { session, ...output }).then((r) => r.output); }
  recalibrate(session) { return this.request('session.recalibrate', { session }); }
  pause(session) { return this.request('session.pause', { session }); }
  resume(session) { return this.request('session.resume', { session }); }
  createToken(session, ttlSeconds) { return this.request('session.createToken', ttlSeconds === undefined ? { session } : { session, ttlSeconds }); }
  listPortraits() { return this.request('portrait.list').then((r) => r.portraits); }
  deletePortrait(portrait) { return this.request('portrait.delete', { portrait }); }

  /** Image bytes: sent as binary with msgpack, as base64 with JSON. */
  uploadPortrait(bytes) {
    const data = this.opts.format === 'msgpack' ? bytes : toBase64(bytes);
    return this.request('portrait.upload', { data });
  }

  /** Stats events for a session at `hz` (0.2–10); kept across reconnects. Returns an unsubscribe function for `listener`. */
  async subscribeStats(session, hz = 1, listener) {
    const off = listener ? this.on('stats', (e) => e.session === session && listener(e.stats, e)) : () => {};
    try {
      const r = await this.request('stats.subscribe', { session, hz });
      this.subscriptions.set(session, hz);
      return Object.assign(off, { result: r });
    } catch (err) {
      off();
      throw err;
    }
  }

  async unsubscribeStats(session) {
    this.subscriptions.delete(session);
    return this.request('stats.unsubscribe', { session });
  }

  /** Closes for good (no reconnect); pending requests reject. */
  close() {
    this.closedByUser = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, 'client closed');
  }
}

function toBase64(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (typeof Buffer === 'function') return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('base64');
  let bin = '';
  for (let i = 0; i < u8.length; i += 0x8000) bin += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  return btoa(bin);
}
