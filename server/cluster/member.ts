/**
 * This server as one node among many: its name, its drain, the agent that reports its capacity
 * to the load balancer, and (with --redis) its place in the shared directory. Without --redis it
 * is a cluster of one: the same routes and reports work, listing just itself.
 */
import os from 'node:os';
import type { Config } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { registry } from '../metrics.ts';
import type { SessionManager } from '../session/manager.ts';
import { startAgent, type Agent } from './agent.ts';
import { Directory, type NodeRecord, type SessionRecord } from './directory.ts';
import { Drain, type DrainReport, type NodeState } from './drain.ts';
import { ControlForwarder } from './forward.ts';
import { nodeOfSession } from './ids.ts';
import type { SharedState } from './redis.ts';

const WILDCARD = new Set(['0.0.0.0', '::', '[::]']);

export interface NodeHealth {
  node: string;
  state: NodeState;
  drain?: DrainReport;
  redis?: 'up' | 'down';
  /** Why the node is degraded, if it is. */
  reasons: string[];
}

/** A listing that may lack the other nodes' part, saying why. */
export interface SessionListing {
  sessions: unknown[];
  incomplete?: { code: string; message: string };
}

export class ClusterMember {
  /** --node-id, or the host name. */
  readonly node: string;
  readonly drain: Drain;
  private readonly directory?: Directory;
  private agent?: Agent;
  private url = '';
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly config: Config,
    private readonly sessions: SessionManager,
    /** Closes the whole server; the drain calls it once, at its end. */
    stop: (reason: string) => Promise<void>,
    private readonly log: Logger,
    private readonly shared?: SharedState,
  ) {
    this.node = config.nodeId ?? os.hostname();
    // One of many: every metric says which node it comes from.
    if (config.nodeId) registry.setDefaultLabels({ node: config.nodeId });
    this.drain = new Drain(sessions, config.drainTimeout, stop, log);
    if (shared) this.directory = new Directory(shared, () => this.record(), sessions, log);
  }

  /** Once listening at `url`: the agent check (with --agent-port) and the directory's beat (with --redis). */
  async start(url: string): Promise<void> {
    const u = new URL(url);
    if (WILDCARD.has(u.hostname)) u.hostname = os.hostname();
    this.url = (this.config.nodeUrl ?? u.toString()).replace(/\/$/, '');
    if (this.config.agentPort !== undefined) {
      this.agent = await startAgent(this.config.host, this.config.agentPort, () => ({ state: this.drain.state, free: this.sessions.freeSlots() }), this.log);
    }
    this.directory?.start();
  }

  /** Leaves the directory and closes the agent (part of the server's close). */
  async stop(): Promise<void> {
    await Promise.all([this.directory?.stop(), this.agent?.close()]);
  }

  get agentPort(): number | null {
    return this.agent?.port ?? null;
  }

  health(): NodeHealth {
    const reasons: string[] = [];
    const problem = this.shared?.problem;
    if (problem) reasons.push(problem);
    return {
      node: this.node,
      state: this.drain.state,
      ...(this.drain.state !== 'serving' ? { drain: this.drain.report() } : {}),
      ...(this.shared ? { redis: this.shared.up ? ('up' as const) : ('down' as const) } : {}),
      reasons,
    };
  }

  record(): Omit<NodeRecord, 'seenAt'> {
    return {
      node: this.node,
      url: this.url,
      agentPort: this.agentPort,
      state: this.drain.state,
      sessions: this.sessions.size,
      maxSessions: this.config.maxSessions,
      free: this.drain.state === 'serving' ? this.sessions.freeSlots() : 0,
      capacity: this.sessions.capacityReport(),
      startedAt: this.startedAt,
    };
  }

  /** Every live node; without Redis, this one. */
  async nodes(): Promise<NodeRecord[]> {
    if (!this.directory) return [{ ...this.record(), seenAt: new Date().toISOString() }];
    return this.directory.nodes();
  }

  /** This node's sessions in full, and (with Redis) every other node's as directory records. */
  async listSessions(): Promise<SessionListing> {
    const local = this.sessions.list().map((s) => (this.config.nodeId ? { ...s.info(), node: this.node } : s.info()));
    if (!this.directory) return { sessions: local };
    try {
      const others = (await this.directory.nodes()).map((n) => n.node).filter((n) => n !== this.node);
      const remote: SessionRecord[] = await this.directory.sessionsOf(others);
      return { sessions: [...local, ...remote] };
    } catch (err) {
      if (!(err instanceof XplError && err.code === 'cluster_unavailable')) throw err;
      return { sessions: local, incomplete: { code: err.code, message: err.message } };
    }
  }

  /** The node holding `sessionId` when that is another node (the id names it); undefined when it is this one. */
  ownerElsewhere(sessionId: string): string | undefined {
    const node = nodeOfSession(sessionId);
    return node !== undefined && node !== this.node ? node : undefined;
  }

  /**
   * A forwarder for one control connection. Without --redis other nodes cannot be found: a
   * request for their sessions fails with `cluster_unavailable` saying so.
   */
  forwarder(push: (event: Record<string, unknown>) => void): ControlForwarder {
    const directory = this.directory;
    return new ControlForwarder(
      {
        controlUrl: async (node) => {
          if (!directory) throw new XplError('cluster_unavailable', `the session is on node ${node}: reaching other nodes needs --redis (see docs/SCALING.md)`);
          const rec = await directory.node(node);
          return rec && `${rec.url.replace(/^http/, 'ws')}/v1/control`;
        },
        apiKey: this.config.apiKey,
        log: this.log,
      },
      push,
    );
  }

  /** For /v1/nodes/NODE/…: this node's own record, or a not_found naming the node that answered. */
  assertSelf(node: string): void {
    if (node !== this.node) {
      throw new XplError('not_found', `this is node ${this.node}, not ${node}: the load balancer routes /v1/nodes/${node}/… to node ${node} (or call it at its own address)`);
    }
  }
}
