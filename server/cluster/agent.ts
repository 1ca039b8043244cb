/**
 * HAProxy's agent check (`agent-check agent-port N` on a server line): HAProxy connects, reads
 * one line, and applies it. The line is this node's free capacity as a weight, or its drain:
 *
 * - serving: `ready W%` — W = free sessions (the smaller of --max-sessions' room and the CPU
 *   budget's room at the learnt cost, see SessionManager.freeSlots), so with the server's
 *   configured `weight 100` its effective weight is exactly its free sessions and weighted
 *   round-robin spreads new sessions by capacity; `0%` (full) takes it out of the rotation.
 *   `ready` undoes a `drain`/`maint` left by an earlier process of the same node.
 * - draining: `drain` — no new sessions; requests routed to it by session id still reach it.
 * - stopping: `maint` — it is closing its last sessions and goes away.
 */
import { createServer, type Server } from 'node:net';
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';
import type { NodeState } from './drain.ts';

/** HAProxy's largest server weight. */
const MAX_WEIGHT = 256;

export function agentReply(state: NodeState, freeSessions: number): string {
  if (state === 'draining') return 'drain';
  if (state !== 'serving') return 'maint';
  return `ready ${Math.min(MAX_WEIGHT, Math.max(0, Math.floor(freeSessions)))}%`;
}

export interface Agent {
  port: number;
  close(): Promise<void>;
}

/** Answers every connection on host:port with `reply()` and a newline, then closes it. */
export async function startAgent(host: string, port: number, reply: () => { state: NodeState; free: number }, log: Logger): Promise<Agent> {
  const server: Server = createServer((socket) => {
    const r = reply();
    metrics.agentWeight.set(r.state === 'serving' ? r.free : 0);
    socket.on('error', () => socket.destroy());
    socket.end(`${agentReply(r.state, r.free)}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  log.info({ agentPort: bound }, 'load-balancer agent check listening');
  return {
    port: bound,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
