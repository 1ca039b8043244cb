/**
 * Which nodes are live and which sessions each holds, in the shared Redis. Each node writes its
 * own entry and its sessions every couple of seconds (and at once after a session starts, ends or
 * changes), with a time-to-live a few beats long: a node that dies drops out of the directory by
 * itself, and a Redis that was away is filled again by the next beat. Nobody ever edits another
 * node's entries, so there is nothing to reconcile.
 *
 *   xpl:nodes               set of node ids (pruned of the dead when read)
 *   xpl:node:NODE           JSON NodeRecord, expires after TTL
 *   xpl:sessions:NODE       hash session id → JSON SessionRecord, expires after TTL
 */
import type { Logger } from '../log.ts';
import type { CapacityReport } from '../session/capacity.ts';
import type { SessionManager } from '../session/manager.ts';
import type { Session } from '../session/session.ts';
import type { NodeState } from './drain.ts';
import { key, type SharedState } from './redis.ts';

const BEAT_MS = 2000;
const TTL_S = 6;
/** Changes within this window go out in one write. */
const COALESCE_MS = 20;

export interface NodeRecord {
  node: string;
  /** Where other nodes reach this one (control forwarding). */
  url: string;
  agentPort: number | null;
  state: NodeState;
  sessions: number;
  maxSessions: number;
  /** Free sessions, as the agent check reports them. */
  free: number;
  capacity: CapacityReport;
  startedAt: string;
  /** When the node last wrote its entry. */
  seenAt: string;
}

/** What the directory knows of a session: enough to list it and to find its node. */
export interface SessionRecord {
  id: string;
  node: string;
  renderer: string;
  portraitId: string;
  createdAt: string;
  state: string;
  sendsBack: boolean;
  viewers: number;
}

export function sessionRecord(s: Session, node: string): SessionRecord {
  const i = s.info();
  return { id: i.id, node, renderer: i.renderer, portraitId: i.portraitId, createdAt: i.createdAt, state: i.state, sendsBack: i.sendsBack, viewers: i.viewers };
}

export class Directory {
  private timer?: NodeJS.Timeout;
  private soon?: NodeJS.Timeout;
  private writing = false;
  private again = false;
  private readonly onChange = (): void => this.beatSoon();

  constructor(
    private readonly shared: SharedState,
    private readonly self: () => Omit<NodeRecord, 'seenAt'>,
    private readonly sessions: SessionManager,
    private readonly log: Logger,
  ) {}

  start(): void {
    const { events } = this.sessions;
    events.on('created', this.onChange);
    events.on('updated', this.onChange);
    events.on('closed', this.onChange);
    this.timer = setInterval(() => void this.beat(), BEAT_MS);
    this.timer.unref();
    void this.beat();
  }

  /** Writes this node's entry and its sessions now (coalesced with a write in flight). */
  async beat(): Promise<void> {
    if (this.writing) {
      this.again = true;
      return;
    }
    this.writing = true;
    try {
      const rec: NodeRecord = { ...this.self(), seenAt: new Date().toISOString() };
      const fields: Record<string, string> = {};
      for (const s of this.sessions.list()) fields[s.id] = JSON.stringify(sessionRecord(s, rec.node));
      const sessionsKey = key('sessions', rec.node);
      await this.shared.run('the node directory', (c) => {
        const m = c.multi().set(key('node', rec.node), JSON.stringify(rec), { EX: TTL_S }).sAdd(key('nodes'), rec.node).del(sessionsKey);
        if (Object.keys(fields).length) m.hSet(sessionsKey, fields).expire(sessionsKey, TTL_S);
        return m.exec();
      });
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'directory write failed');
    } finally {
      this.writing = false;
    }
    if (this.again) {
      this.again = false;
      await this.beat();
    }
  }

  private beatSoon(): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.beat();
    }, COALESCE_MS);
  }

  /** Every live node (those whose entry has not expired), sorted by name. */
  async nodes(): Promise<NodeRecord[]> {
    return this.shared.run('listing the nodes', async (c) => {
      const ids = (await c.sMembers(key('nodes'))).sort();
      if (ids.length === 0) return [];
      const recs = await c.mGet(ids.map((id) => key('node', id)));
      const dead = ids.filter((_, i) => recs[i] === null);
      if (dead.length) await c.sRem(key('nodes'), dead);
      return recs.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as NodeRecord);
    });
  }

  /** A live node's entry, or undefined when it is not live. */
  async node(id: string): Promise<NodeRecord | undefined> {
    const rec = await this.shared.run(`finding node ${id}`, (c) => c.get(key('node', id)));
    return rec ? (JSON.parse(rec) as NodeRecord) : undefined;
  }

  /** The sessions of every live node. */
  async sessionsOf(nodes: string[]): Promise<SessionRecord[]> {
    return this.shared.run('listing the sessions of every node', async (c) => {
      const all = await Promise.all(nodes.map((n) => c.hVals(key('sessions', n))));
      return all.flat().map((r) => JSON.parse(r) as SessionRecord);
    });
  }

  /** Stops beating and removes this node's entries (a clean exit; a crash leaves them to expire). */
  async stop(): Promise<void> {
    const { events } = this.sessions;
    events.off('created', this.onChange);
    events.off('updated', this.onChange);
    events.off('closed', this.onChange);
    clearInterval(this.timer);
    clearTimeout(this.soon);
    const node = this.self().node;
    await this.shared
      .run('leaving the directory', (c) => c.multi().del(key('node', node)).del(key('sessions', node)).sRem(key('nodes'), node).exec())
      .catch((err: Error) => this.log.debug({ err: err.message }, 'could not leave the directory'));
  }
}
