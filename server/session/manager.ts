/** Owns every live session: creates them within the configured limit, finds them, and closes them all on shutdown. */
import { EventEmitter } from 'node:events';
import type { Config } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';
import { Capacity, type CapacityReport } from './capacity.ts';
import { Session, assertOpen, type SessionInit, type SessionRuntime } from './session.ts';

export interface SessionEvents {
  created: [s: Session];
  updated: [s: Session];
  closed: [id: string, reason: string];
}

export class SessionManager {
  /** Lifecycle events for the control socket: created, updated (a client changed it), closed. */
  readonly events = new EventEmitter<SessionEvents>();

  private readonly sessions = new Map<string, Session>();
  private readonly capacity: Capacity;
  /** Sessions being negotiated count against the limit too, or a burst of offers could overshoot it. */
  private starting = 0;
  /** Set while the node drains: why new sessions are refused. */
  private refusal?: string;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly runtime: SessionRuntime,
  ) {
    this.events.setMaxListeners(0);
    this.capacity = new Capacity(config.maxLoad, () => this.sessions.size);
  }

  /** The CPU budget, what the server uses of it and what a session costs (for /healthz and load balancers). */
  capacityReport(): CapacityReport {
    return this.capacity.report();
  }

  get size(): number {
    return this.sessions.size;
  }

  /**
   * Sessions this server could still take now: the smaller of the room under --max-sessions and
   * the room in the CPU budget at the learnt cost (what the load balancer's weight is made of).
   */
  freeSlots(): number {
    const bySessions = this.config.maxSessions - this.sessions.size - this.starting;
    return Math.max(0, Math.min(bySessions, this.capacity.room() ?? bySessions));
  }

  /** From now on every new session is refused (503 `draining`, which a load balancer may retry elsewhere). */
  refuseNew(reason: string): void {
    this.refusal = reason;
  }

  async create(init: Omit<SessionInit, 'config' | 'log' | 'runtime'>): Promise<Session> {
    if (this.refusal) throw new XplError('draining', this.refusal, { retryAfter: 1 });
    if (this.sessions.size + this.starting >= this.config.maxSessions) {
      throw new XplError('too_many_sessions', `the server is at its limit of ${this.config.maxSessions} sessions`, { retryAfter: 5 });
    }
    const admit = this.capacity.admit();
    if (!admit.ok) {
      metrics.admissionsRefused.inc();
      throw new XplError('too_many_sessions', admit.reason, { retryAfter: 5 });
    }
    this.starting++;
    try {
      const s = await Session.create({ ...init, config: this.config, log: this.log, runtime: this.runtime });
      this.sessions.set(s.id, s);
      this.capacity.started();
      metrics.sessionsCreated.inc();
      metrics.sessions.inc({ renderer: s.renderer });
      s.onChanged = () => this.events.emit('updated', s);
      this.events.emit('created', s);
      s.onClosed = (_s, reason) => {
        this.sessions.delete(s.id);
        metrics.sessions.dec({ renderer: s.renderer });
        this.events.emit('closed', s.id, reason);
        metrics.sessionsClosed.inc({ reason: reasonClass(reason) });
      };
      return s;
    } finally {
      this.starting--;
    }
  }

  get(id: string): Session {
    return assertOpen(this.sessions.get(id), id);
  }

  list(): Session[] {
    return [...this.sessions.values()];
  }

  async close(id: string, reason = 'closed by client'): Promise<void> {
    await this.get(id).close(reason);
  }

  /**
   * Sessions whose frame loop is starved: driving frames arrive but fewer than half of them come
   * out (the renderer or encoder cannot keep up, or the loop is stuck).
   */
  starved(): string[] {
    const out: string[] = [];
    for (const s of this.sessions.values()) {
      const st = s.stats;
      const inFps = st.inRate.rate();
      if (inFps >= 5 && st.outRate.rate() < inFps / 2 && s.info().sendsBack) out.push(s.id);
    }
    return out;
  }

  async closeAll(reason: string): Promise<void> {
    this.capacity.stop();
    await Promise.allSettled(this.list().map((s) => s.close(reason)));
  }
}

/** Close reasons as a small fixed set of metric labels. */
function reasonClass(reason: string): string {
  if (reason.startsWith('ice')) return 'ice';
  if (reason.includes('crash')) return 'crash';
  if (reason.includes('shutdown')) return 'shutdown';
  if (reason.includes('client')) return 'client';
  return 'other';
}
