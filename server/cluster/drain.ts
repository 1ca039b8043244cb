/**
 * Draining a node, for rolling restarts and scale-in: from the start of a drain (SIGTERM, or
 * `POST /v1/nodes/NODE/drain`) the node refuses new sessions (503 `draining`; the load balancer
 * already sends them elsewhere, its agent check says `drain`), its live sessions go on until they
 * end or the deadline (--drain-timeout) passes, then whatever is left is closed and the server
 * stops. /healthz, /metrics and the agent report each step.
 */
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';
import type { SessionManager } from '../session/manager.ts';

/** serving → draining (no new sessions) → stopping (closing what is left) → stopped. */
export type NodeState = 'serving' | 'draining' | 'stopping' | 'stopped';

export interface DrainReport {
  state: NodeState;
  reason?: string;
  /** ISO times of the drain's start and deadline. */
  since?: string;
  deadline?: string;
  /** Sessions still live. */
  sessions: number;
}

export class Drain {
  private current: NodeState = 'serving';
  private reason?: string;
  private since?: Date;
  private deadline?: Date;
  private finished?: Promise<void>;
  /** Ends a drain's wait early (stopNow during a drain). */
  private hurry?: () => void;

  constructor(
    private readonly sessions: SessionManager,
    private readonly timeoutS: number,
    /** Closes the whole server (every session, the listening socket); called once, at the end. */
    private readonly stop: (reason: string) => Promise<void>,
    private readonly log: Logger,
  ) {}

  get state(): NodeState {
    return this.current;
  }

  /**
   * Starts draining (later calls return the same drain). Resolves once the server has stopped:
   * after the last session ended, or at the deadline with the rest closed.
   */
  start(reason: string, timeoutS = this.timeoutS): Promise<void> {
    if (this.finished) return this.finished;
    this.current = 'draining';
    this.reason = reason;
    this.since = new Date();
    this.deadline = new Date(this.since.getTime() + timeoutS * 1000);
    this.sessions.refuseNew(`this node is draining (${reason}): new sessions go to other nodes`);
    metrics.draining.set(1);
    metrics.drainDeadline.set(Math.round(this.deadline.getTime() / 1000));
    this.log.info({ reason, sessions: this.sessions.size, deadline: this.deadline.toISOString() }, 'draining: no new sessions; waiting for the live ones to end');
    this.finished = this.waitThenStop(timeoutS * 1000);
    return this.finished;
  }

  /** Stops at once, closing every session (SIGINT, a second SIGTERM, or close() without a drain). */
  stopNow(reason: string): Promise<void> {
    this.sessions.refuseNew(`this node is stopping (${reason})`);
    if (this.hurry) this.hurry();
    else this.finished ??= this.finish(reason);
    return this.finished!;
  }

  report(): DrainReport {
    return {
      state: this.current,
      ...(this.reason ? { reason: this.reason } : {}),
      ...(this.since ? { since: this.since.toISOString() } : {}),
      ...(this.deadline ? { deadline: this.deadline.toISOString() } : {}),
      sessions: this.sessions.size,
    };
  }

  private async waitThenStop(timeoutMs: number): Promise<void> {
    const { events } = this.sessions;
    let onClosed = (): void => {};
    let timer: NodeJS.Timeout | undefined;
    const ended = await new Promise<'empty' | 'deadline' | 'hurried'>((resolve) => {
      if (this.sessions.size === 0) return resolve('empty');
      onClosed = () => {
        if (this.sessions.size === 0) resolve('empty');
      };
      events.on('closed', onClosed);
      timer = setTimeout(() => resolve('deadline'), timeoutMs);
      this.hurry = () => resolve('hurried');
    });
    this.hurry = undefined;
    events.off('closed', onClosed);
    clearTimeout(timer);
    if (ended === 'deadline') this.log.warn({ sessions: this.sessions.size }, 'drain deadline reached: closing the sessions still live');
    await this.finish(ended === 'empty' ? 'drained' : ended === 'deadline' ? 'server shutdown: drain deadline' : 'server shutdown');
  }

  private async finish(reason: string): Promise<void> {
    this.current = 'stopping';
    await this.stop(reason);
    this.current = 'stopped';
    metrics.draining.set(0);
    metrics.drainDeadline.set(0);
    this.log.info({ reason }, 'node stopped');
  }
}
