/**
 * Session ids that name their node: `NODE.uuid` when the server has a --node-id, a bare uuid
 * otherwise. The load balancer routes every request about a session (its Location, WHEP, /view,
 * tokens) to the node in the id, so it needs no table of its own that a restart would lose; the
 * control socket forwards by the same name.
 */
import { randomUUID } from 'node:crypto';

const SEPARATOR = '.';

export function newSessionId(nodeId: string | undefined): string {
  return nodeId ? `${nodeId}${SEPARATOR}${randomUUID()}` : randomUUID();
}

/** The node named in a session id; undefined for a bare uuid (a server without --node-id). */
export function nodeOfSession(sessionId: string): string | undefined {
  const i = sessionId.indexOf(SEPARATOR);
  return i > 0 ? sessionId.slice(0, i) : undefined;
}
