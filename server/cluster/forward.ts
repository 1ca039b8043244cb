/**
 * The control socket on any node addresses any session: a request about a session that another
 * node holds (its id names the node) is forwarded to that node over a control socket of its own,
 * and the answer comes back under the client's request id. Chosen over routing the client's
 * socket by session because one socket then steers every session of an application, wherever the
 * load balancer placed them, and session.list, portraits and tokens work from any node.
 *
 * One upstream socket per client connection and node, opened on first use with the cluster's
 * API key (every node has the same one) and closed with the client's socket: the other node's
 * per-connection limits apply to each client as if it had connected there. What comes back on it
 * besides answers: `stats` events of the subscriptions made through it, and `session.updated` /
 * `session.closed` of the sessions the client addressed; when the other node goes away
 * (shutdown or crash), those sessions are reported closed.
 */
import WebSocket from 'ws';
import type { Request } from '../control/schema.ts';
import { XplError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';

/** An answer slower than this counts as the node being unreachable. */
const ANSWER_TIMEOUT_MS = 10_000;
/** Close codes meaning the other node went away (shutdown, crash) rather than refused us. */
const GONE = new Set([1001, 1006]);

export interface ForwardDeps {
  /** The control URL (http…/v1/control) of a live node, or undefined when it is not live. */
  controlUrl(node: string): Promise<string | undefined>;
  apiKey?: string;
  log: Logger;
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };
type Pending = { resolve: (v: unknown) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout };

export class ControlForwarder {
  private readonly links = new Map<string, Promise<Upstream>>();
  private closed = false;

  constructor(
    private readonly deps: ForwardDeps,
    /** Sends an event to the client. */
    private readonly push: (event: Record<string, unknown>) => void,
  ) {}

  /** Sends `req` to `node` and returns its result, or throws its error. */
  async forward(node: string, req: Request & { session: string }): Promise<unknown> {
    try {
      const link = await this.link(node);
      const result = await link.request(req);
      metrics.controlForwarded.inc({ outcome: 'ok' });
      return result;
    } catch (err) {
      const e = err instanceof XplError ? err : new XplError('cluster_unavailable', `node ${node}: ${(err as Error).message}`);
      metrics.controlForwarded.inc({ outcome: e.code === 'cluster_unavailable' ? 'unreachable' : 'error' });
      throw e;
    }
  }

  private link(node: string): Promise<Upstream> {
    let l = this.links.get(node);
    if (!l) {
      l = this.open(node);
      this.links.set(node, l);
      l.catch(() => this.links.delete(node));
    }
    return l;
  }

  private async open(node: string): Promise<Upstream> {
    const url = await this.deps.controlUrl(node);
    if (!url) throw new XplError('not_found', `no session there: node ${node}, named in the session id, is not live (its sessions ended with it)`);
    if (this.closed) throw new XplError('cluster_unavailable', 'the control connection is closing');
    const up = new Upstream(node, url, this.deps, this.push, () => this.links.delete(node));
    await up.ready;
    return up;
  }

  close(): void {
    this.closed = true;
    for (const l of this.links.values()) void l.then((u) => u.close(), () => undefined);
    this.links.clear();
  }
}

class Upstream {
  readonly ready: Promise<void>;
  private readonly ws: WebSocket;
  private readonly pending = new Map<number, Pending>();
  /** Sessions the client addressed through this link, and those it subscribed stats of. */
  private readonly addressed = new Set<string>();
  private readonly subscribed = new Set<string>();
  private nextId = 1;

  constructor(
    private readonly node: string,
    url: string,
    private readonly deps: ForwardDeps,
    private readonly push: (event: Record<string, unknown>) => void,
    onClose: () => void,
  ) {
    this.ws = new WebSocket(url, { headers: deps.apiKey ? { Authorization: `Bearer ${deps.apiKey}` } : {}, handshakeTimeout: ANSWER_TIMEOUT_MS });
    this.ready = new Promise<void>((resolve, reject) => {
      this.ws.once('message', () => resolve()); // the node's hello
      this.ws.once('unexpected-response', (_req, res) => reject(new XplError('cluster_unavailable', `node ${node} refused the forwarded control connection (HTTP ${res.statusCode}): every node needs the same --api-key`)));
      this.ws.once('error', (err) => reject(new XplError('cluster_unavailable', `node ${node} is unreachable at ${url}: ${err.message}`)));
    });
    this.ready.catch(() => undefined);
    this.ws.on('message', (data) => this.onMessage(data.toString()));
    this.ws.on('error', (err) => deps.log.debug({ node, err: err.message }, 'forwarded control socket error'));
    this.ws.on('close', (code) => {
      onClose();
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new XplError('cluster_unavailable', `node ${node} closed the forwarded control connection (${code})`));
      }
      this.pending.clear();
      if (GONE.has(code)) for (const s of this.addressed) this.push({ event: 'session.closed', session: s, reason: `its node ${node} went away` });
    });
  }

  request(req: Request & { session: string }): Promise<unknown> {
    const id = this.nextId++;
    this.addressed.add(req.session);
    if (req.op === 'stats.subscribe') this.subscribed.add(req.session);
    if (req.op === 'stats.unsubscribe') this.subscribed.delete(req.session);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new XplError('cluster_unavailable', `node ${this.node} did not answer ${req.op} within ${ANSWER_TIMEOUT_MS / 1000} s`));
      }, ANSWER_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...req, id }));
    });
  }

  private onMessage(text: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof msg.event === 'string') return this.onEvent(msg);
    const reply = msg as unknown as Reply;
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    clearTimeout(p.timer);
    if (reply.ok) p.resolve(reply.result);
    else p.reject(new XplError(reply.error.code as ErrorCode, reply.error.message, reply.error.details ? { details: reply.error.details } : {}));
  }

  private onEvent(msg: Record<string, unknown>): void {
    const session = typeof msg.session === 'string' ? msg.session : (msg.session as { id?: string } | undefined)?.id;
    if (!session) return;
    if (msg.event === 'stats' && this.subscribed.has(session)) this.push(msg);
    else if ((msg.event === 'session.updated' || msg.event === 'session.closed') && this.addressed.has(session)) {
      this.push(msg);
      if (msg.event === 'session.closed') {
        this.addressed.delete(session);
        this.subscribed.delete(session);
      }
    }
  }

  close(): void {
    this.ws.close(1000, 'client gone');
  }
}
