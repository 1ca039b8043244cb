/**
 * Which session each publish token has live. A publish token creates one session at a time: a
 * new offer with the same token replaces the previous session (an encoder reconnecting after a
 * network drop, or restarted), one replacement at a time per token. Viewers can name the
 * publisher instead of the session (`/view/pub-…`, `/v1/sessions/pub-…/whep`), so an OBS browser
 * source keeps working across those reconnects.
 */
import type { Session } from '../session/session.ts';
import type { SessionManager } from '../session/manager.ts';
import { PUBLISH_ID_PREFIX } from './tokens.ts';

export class PublishRegistry {
  private readonly live = new Map<string, string>();
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(private readonly sessions: SessionManager) {
    sessions.events.on('closed', (id) => {
      for (const [pub, sid] of this.live) if (sid === id) this.live.delete(pub);
    });
  }

  /** The live session of a publish id, if it has one. */
  sessionOf(publishId: string): string | undefined {
    return this.live.get(publishId);
  }

  publishIdOf(sessionId: string): string | undefined {
    for (const [pub, sid] of this.live) if (sid === sessionId) return pub;
    return undefined;
  }

  /** A session id, or the live session of a publish id (undefined when that publisher has none). */
  resolve(id: string): string | undefined {
    return id.startsWith(PUBLISH_ID_PREFIX) ? this.live.get(id) : id;
  }

  /** Closes the publisher's previous session, if any, then creates its new one. */
  replace(publishId: string, create: () => Promise<Session>): Promise<Session> {
    const run = async (): Promise<Session> => {
      const previous = this.live.get(publishId);
      if (previous) {
        this.live.delete(publishId);
        await this.sessions.close(previous, 'replaced by a new publish').catch(() => {});
      }
      const s = await create();
      if (!s.isClosed) this.live.set(publishId, s.id);
      return s;
    };
    const next = (this.chains.get(publishId) ?? Promise.resolve()).then(run, run);
    const settled = next.catch(() => undefined).finally(() => {
      if (this.chains.get(publishId) === settled) this.chains.delete(publishId);
    });
    this.chains.set(publishId, settled);
    return next;
  }
}
