// The control socket (GET /v1/control): requests with replies, events, reconnect with
// resubscription. Uses the global WebSocket unless one is passed (Node 20: the `ws` package's).
import { XplApiError } from './errors.js';

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
