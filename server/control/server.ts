/**
 * The control socket, `GET /v1/control` (WebSocket). Binary frames are msgpack, text frames
 * JSON; both carry the same messages (see schema.ts and docs/API.md). Each connection has:
 * - auth: the API key in `Authorization: Bearer KEY`, or a first `auth` message (browsers cannot
 *   set headers on a WebSocket); a wrong key at upgrade is refused with 401, a key in the URL
 *   (`?key=`) with 400. Until it authenticates a socket may send only small messages, must
 *   authenticate within 5 s, and counts against a server-wide and a per-address cap of such
 *   sockets (limits.ts), so unauthenticated clients cannot make the server buffer or hold much;
 * - a token bucket (--control-rate/s, --control-burst): an over-limit message gets a
 *   `rate_limited` error reply; a client that keeps flooding far past the limit (until its
 *   bucket fills again) is closed (1008);
 * - a message size limit (ws maxPayload): larger messages close the socket with 1009;
 * - its stats subscriptions (per session, 0.2–10 Hz), ended with the socket or the session.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { decode, encode } from '@msgpack/msgpack';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Config } from '../config.ts';
import { XplError, asXplError } from '../errors.ts';
import { bearerToken, keyMatches } from '../http/auth.ts';
import { allowedOrigin, clientAddress, hostAllowed } from '../http/edge.ts';
import type { Tokens } from '../http/tokens.ts';
import type { Logger } from '../log.ts';
import { describePortrait, type PortraitStore } from '../portraits/store.ts';
import type { SessionManager } from '../session/manager.ts';
import type { Session } from '../session/session.ts';
import { AUTH_TIMEOUT_MS, PREAUTH_MAX_PAYLOAD, PendingAuth, TokenBucket, setMaxPayload } from './limits.ts';
import type { ClusterMember } from '../cluster/member.ts';
import type { ControlForwarder } from '../cluster/forward.ts';
import { OPS, PROTOCOL_VERSION, describeIssues, requestSchemas, type Op, type Request, type RequestOf } from './schema.ts';

export const CONTROL_PATH = '/v1/control';
const MAX_FAILED_AUTH = 3;
/**
 * Rejected messages in one flood, × the burst, before the socket is closed. A flood ends when the
 * client has kept within its rate long enough for the bucket to fill again, not at the first
 * message a refilled token lets through: on a busy server a flood is read slowly, tokens refill
 * meanwhile, and a counter reset by each of them never reached the limit.
 */
const FLOOD_FACTOR = 5;
/** Stats events are skipped while this much is still queued for a slow client. */
const MAX_BUFFERED = 4 * 1024 * 1024;

export interface ControlDeps {
  config: Config;
  log: Logger;
  sessions: SessionManager;
  portraits: PortraitStore;
  tokens: Tokens;
  /** Finds the node of another node's session and forwards requests about it there (cluster/forward.ts). */
  cluster?: ClusterMember;
}

type Format = 'json' | 'msgpack';

/** The largest message the socket accepts: room for a base64 portrait of the largest allowed size. */
export function controlMaxPayload(config: Config): number {
  return config.maxControlMessageBytes ?? Math.ceil((config.maxPortraitBytes * 4) / 3) + 64 * 1024;
}

export function attachControl(server: Server, deps: ControlDeps): { close(): void; wss: WebSocketServer; pending: PendingAuth } {
  const { config, log } = deps;
  // The server-wide limit is the pre-auth one; each socket's grows once it is authenticated.
  const wss = new WebSocketServer({ noServer: true, maxPayload: PREAUTH_MAX_PAYLOAD, perMessageDeflate: false });
  const pending = new PendingAuth();

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== CONTROL_PATH) {
      refuse(socket, 404, 'not_found', `no WebSocket endpoint at ${url.pathname}: use ${CONTROL_PATH}`);
      return;
    }
    if (!hostAllowed(req.headers.host, config)) {
      refuse(socket, 403, 'forbidden', `this server is not reachable as "${req.headers.host}" (DNS-rebinding guard: see --allowed-host)`);
      return;
    }
    if (url.searchParams.has('key')) {
      refuse(socket, 400, 'bad_request', 'API keys are not accepted in URLs (?key=): send "Authorization: Bearer KEY" or an auth message');
      return;
    }
    const presented = bearerToken(req.headers.authorization);
    let authed = !config.apiKey;
    if (config.apiKey && presented !== undefined) {
      if (!keyMatches(presented, config.apiKey)) {
        refuse(socket, 401, 'unauthorized', 'wrong API key');
        return;
      }
      authed = true;
    }
    // Without a key the server is loopback-only, but a web page in the user's browser could still
    // reach it: refuse cross-origin browser sockets unless their origin is allowed (--cors-origin).
    const origin = req.headers.origin;
    if (!config.apiKey && origin && !sameOrigin(origin, req.headers.host) && !allowedOrigin(origin, config)) {
      refuse(socket, 403, 'forbidden', `cross-origin control sockets are refused (Origin ${origin}): see --cors-origin`);
      return;
    }
    const address = clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], config.trustProxy);
    if (!authed) {
      const admitted = pending.admit(address);
      if (admitted !== 'ok') {
        const why = admitted === 'address' ? 'too many unauthenticated control sockets from this address' : 'too many unauthenticated control sockets';
        refuse(socket, admitted === 'address' ? 429 : 503, 'rate_limited', `${why}: authenticate the open ones (or send the key at upgrade)`, 5);
        return;
      }
    }
    const format: Format = url.searchParams.get('format') === 'msgpack' ? 'msgpack' : 'json';
    wss.handleUpgrade(req, socket, head, (ws) => {
      const release = authed ? () => {} : once(() => pending.release(address));
      ws.once('close', release);
      new Connection(ws, deps, authed, format, release);
    });
  };
  server.on('upgrade', onUpgrade);
  log.debug({ path: CONTROL_PATH, maxPayload: controlMaxPayload(config) }, 'control socket attached');
  return {
    wss,
    pending,
    close() {
      server.off('upgrade', onUpgrade);
      for (const c of wss.clients) c.close(1001, 'server shutdown');
      wss.close();
    },
  };
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

function refuse(socket: Duplex, status: number, code: string, message: string, retryAfter?: number): void {
  const body = JSON.stringify({ error: { code, message } });
  const reason = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' }[status] ?? 'Error';
  const extra = retryAfter ? `Retry-After: ${retryAfter}\r\n` : '';
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      fn();
    }
  };
}

class Connection {
  private readonly bucket: TokenBucket;
  private rejectedInFlood = 0;
  private failedAuth = 0;
  private readonly subs = new Map<string, NodeJS.Timeout>();
  private authTimer?: NodeJS.Timeout;
  private readonly unlisten: () => void;
  private readonly log: Logger;
  /** Opened on the first request about another node's session. */
  private forwarder?: ControlForwarder;

  constructor(
    private readonly ws: WebSocket,
    private readonly deps: ControlDeps,
    private authed: boolean,
    private format: Format,
    /** Frees this socket's pre-auth slot (once it authenticates, or closes). */
    private readonly releasePending: () => void,
  ) {
    this.bucket = new TokenBucket(deps.config.controlRate, deps.config.controlBurst);
    if (authed) setMaxPayload(ws, controlMaxPayload(deps.config));
    this.log = deps.log.child({ control: Math.random().toString(36).slice(2, 8) });
    ws.on('message', (data, isBinary) => void this.onMessage(data, isBinary));
    ws.on('close', () => this.cleanup());
    ws.on('error', (err) => this.log.debug({ err: err.message }, 'control socket error'));
    if (!authed) {
      this.authTimer = setTimeout(() => this.ws.close(1008, 'not authenticated: send {"op":"auth","key":...} first'), AUTH_TIMEOUT_MS);
    }
    const { events } = deps.sessions;
    const onCreated = (s: Session) => this.authed && this.push({ event: 'session.created', session: s.info() });
    const onUpdated = (s: Session) => this.authed && this.push({ event: 'session.updated', session: s.info() });
    const onClosed = (id: string, reason: string) => {
      this.stopStats(id);
      if (this.authed) this.push({ event: 'session.closed', session: id, reason });
    };
    events.on('created', onCreated);
    events.on('updated', onUpdated);
    events.on('closed', onClosed);
    this.unlisten = () => {
      events.off('created', onCreated);
      events.off('updated', onUpdated);
      events.off('closed', onClosed);
    };
    this.push({ event: 'hello', protocol: PROTOCOL_VERSION, authenticated: authed, ops: OPS });
  }

  private cleanup(): void {
    clearTimeout(this.authTimer);
    for (const t of this.subs.values()) clearInterval(t);
    this.subs.clear();
    this.unlisten();
    this.forwarder?.close();
  }

  private send(msg: unknown, format = this.format): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (format === 'msgpack') this.ws.send(encode(msg, { ignoreUndefined: true }), { binary: true });
    else this.ws.send(JSON.stringify(msg), { binary: false });
  }

  private push(event: Record<string, unknown>): void {
    this.send(event);
  }

  private reply(id: unknown, format: Format, result: unknown): void {
    this.send({ id, ok: true, result: result ?? null }, format);
  }

  private fail(id: unknown, format: Format, err: XplError): void {
    this.send({ id: id ?? null, ok: false, error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } }, format);
  }

  private async onMessage(data: RawData, isBinary: boolean): Promise<void> {
    const format: Format = isBinary ? 'msgpack' : 'json';
    this.format = format;
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);

    let raw: unknown;
    let decodeError: XplError | undefined;
    try {
      raw = isBinary ? decode(bytes) : JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      decodeError = new XplError('bad_request', `the message is not valid ${isBinary ? 'msgpack' : 'JSON'}: ${(err as Error).message}`);
    }
    const id = raw && typeof raw === 'object' && 'id' in raw ? (raw as { id: unknown }).id : null;
    const safeId = typeof id === 'string' || typeof id === 'number' ? id : null;

    const calm = this.bucket.full();
    if (!this.bucket.take()) {
      this.rejectedInFlood++;
      const retryAfterMs = this.bucket.waitMs();
      this.fail(safeId, format, new XplError('rate_limited', `too many messages: at most ${this.deps.config.controlRate}/s (burst ${this.deps.config.controlBurst})`, { details: { retryAfterMs } }));
      if (this.rejectedInFlood > this.deps.config.controlBurst * FLOOD_FACTOR) {
        this.log.warn({ rejected: this.rejectedInFlood }, 'control client flooding: closing');
        this.ws.close(1008, 'rate limit exceeded');
      }
      return;
    }
    if (calm) this.rejectedInFlood = 0;
    if (decodeError) {
      this.fail(null, format, decodeError);
      return;
    }

    const req = parseRequest(raw);
    if (req instanceof XplError) {
      this.fail(safeId, format, req);
      return;
    }
    try {
      const result = await this.dispatch(req);
      this.reply(req.id, format, result);
    } catch (err) {
      const e = asXplError(err);
      if (e.code === 'internal') this.log.error({ op: req.op, err: e.message }, 'control operation failed');
      this.fail(req.id, format, e);
    }
  }

  private async dispatch(req: Request): Promise<unknown> {
    if (req.op === 'ping') return { pong: Date.now() };
    if (req.op === 'auth') return this.auth(req);
    if (!this.authed) throw new XplError('unauthorized', 'not authenticated: send {"op":"auth","key":"..."} first (or connect with the key)');
    const { sessions, portraits, tokens, cluster } = this.deps;
    const elsewhere = cluster && 'session' in req ? cluster.ownerElsewhere(req.session) : undefined;
    if (elsewhere && 'session' in req) {
      this.forwarder ??= cluster!.forwarder((e) => this.authed && this.push(e));
      return this.forwarder.forward(elsewhere, req);
    }
    switch (req.op) {
      case 'session.list':
        return cluster ? cluster.listSessions() : { sessions: sessions.list().map((s) => s.info()) };
      case 'session.get':
        return sessions.get(req.session).info();
      case 'session.close':
        await sessions.close(req.session, 'closed by control client');
        return null;
      case 'session.setPortrait': {
        const s = sessions.get(req.session);
        const p = await portraits.get(req.portrait);
        await s.setPortrait(p.id, p.image);
        return s.info();
      }
      case 'session.setRenderer': {
        const s = sessions.get(req.session);
        await s.setRenderer(req.renderer);
        return s.info();
      }
      case 'session.setParams':
        return { params: await sessions.get(req.session).setParams(req.params) };
      case 'session.setOutput': {
        const { id: _id, op: _op, session, ...out } = req;
        return { output: await sessions.get(session).setOutput(out) };
      }
      case 'session.recalibrate':
        await sessions.get(req.session).recalibrate();
        return null;
      case 'session.pause':
        sessions.get(req.session).pause();
        return sessions.get(req.session).info();
      case 'session.resume':
        sessions.get(req.session).resume();
        return sessions.get(req.session).info();
      case 'session.createToken': {
        sessions.get(req.session);
        return { ...tokens.mint(req.session, req.ttlSeconds), session: req.session };
      }
      case 'portrait.upload': {
        const bytes = typeof req.data === 'string' ? decodeBase64(req.data) : req.data;
        if (bytes.length > this.deps.config.maxPortraitBytes) {
          throw new XplError('too_large', `the portrait is larger than ${this.deps.config.maxPortraitBytes} bytes`);
        }
        const p = await portraits.add(bytes);
        this.log.info({ portrait: p.id }, 'portrait added');
        return describePortrait(p);
      }
      case 'portrait.list':
        return portraits.list();
      case 'portrait.delete':
        await portraits.delete(req.portrait);
        return null;
      case 'stats.subscribe':
        return this.subscribe(req);
      case 'stats.unsubscribe':
        if (!this.subs.has(req.session)) throw new XplError('not_found', `no stats subscription for session ${req.session}`);
        this.stopStats(req.session);
        return null;
    }
    throw new XplError('bad_request', `unhandled op ${(req as { op: string }).op}`);
  }

  private auth(req: RequestOf<'auth'>): unknown {
    const key = this.deps.config.apiKey;
    if (key && !keyMatches(req.key, key)) {
      this.failedAuth++;
      if (this.failedAuth >= MAX_FAILED_AUTH) setTimeout(() => this.ws.close(1008, 'too many failed auth attempts'), 10);
      throw new XplError('unauthorized', 'wrong API key');
    }
    if (!this.authed) {
      this.authed = true;
      clearTimeout(this.authTimer);
      setMaxPayload(this.ws, controlMaxPayload(this.deps.config));
      this.releasePending();
    }
    return { authenticated: true };
  }

  private subscribe(req: RequestOf<'stats.subscribe'>): unknown {
    const s = this.deps.sessions.get(req.session);
    this.stopStats(req.session);
    const periodMs = Math.round(1000 / req.hz);
    const tick = () => {
      if (s.isClosed) return this.stopStats(req.session);
      if (this.ws.bufferedAmount > MAX_BUFFERED) return;
      this.push({ event: 'stats', session: s.id, stats: s.statsEvent() });
    };
    this.subs.set(req.session, setInterval(tick, periodMs));
    setImmediate(tick);
    return { session: s.id, hz: req.hz, periodMs };
  }

  private stopStats(sessionId: string): void {
    const t = this.subs.get(sessionId);
    if (t) clearInterval(t);
    this.subs.delete(sessionId);
  }
}

/** Validates one decoded message against its operation's schema; a typed XplError when it does not fit. */
export function parseRequest(raw: unknown): Request | XplError {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return new XplError('bad_request', 'a message must be an object {id, op, ...}');
  const op = (raw as { op?: unknown }).op;
  if (typeof op !== 'string') return new XplError('bad_request', 'the message has no "op" (string)');
  if (!(OPS as string[]).includes(op)) return new XplError('bad_request', `unknown op "${op.slice(0, 64)}": one of ${OPS.join(', ')}`);
  const parsed = requestSchemas[op as Op].safeParse(raw);
  if (!parsed.success) return new XplError('bad_request', `invalid "${op}" message: ${describeIssues(parsed.error)}`, { details: { issues: parsed.error.issues.slice(0, 10).map((i) => ({ path: i.path.map(String), message: i.message })) } });
  return parsed.data as Request;
}

function decodeBase64(s: string): Uint8Array {
  if (!/^[A-Za-z0-9+/=\s_-]*$/.test(s)) throw new XplError('bad_request', 'data must be base64 (or bytes, in msgpack)');
  return new Uint8Array(Buffer.from(s, 'base64'));
}
