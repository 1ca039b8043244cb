/** Bearer-key check for /v1 routes. Constant-time comparison so the key cannot be guessed byte by byte from timings. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { XplError } from '../errors.ts';
import { looksLikeViewerToken, type ViewerTokens } from './tokens.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

export function keyMatches(presented: string | undefined, key: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(key));
}

export function bearerToken(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return m?.[1];
}

/** `/v1/sessions/ID/whep` and `/v1/sessions/ID/whep/VID`: the routes a viewer token may open. */
const WHEP_PATH = /^\/v1\/sessions\/([^/]+)\/whep(?:\/[^/]+)?\/?$/;

/**
 * API key on every /v1 route. A viewer token (`Authorization: Bearer xplv1…` or `?token=`)
 * opens the WHEP routes of its own session and nothing else; a token presented anywhere else, or
 * for another session, is refused (403) even when the server has no key.
 */
export function requireApiKey(key: string | undefined, tokens?: ViewerTokens): MiddlewareHandler {
  return async (c, next) => {
    const bearer = bearerToken(c.req.header('authorization'));
    const token = looksLikeViewerToken(bearer) ? bearer : c.req.query('token');
    if (token !== undefined && tokens) {
      const m = WHEP_PATH.exec(c.req.path);
      if (!m) throw new XplError('forbidden', 'a viewer token only opens WHEP and /view of its own session');
      const claims = tokens.verify(token); // 401 with the reason: malformed, bad signature, expired
      if (claims.sessionId !== decodeURIComponent(m[1])) throw new XplError('forbidden', 'this viewer token is for another session');
      await next();
      return;
    }
    if (key && !keyMatches(bearer, key)) {
      throw new XplError('unauthorized', 'missing or wrong API key: send "Authorization: Bearer KEY"');
    }
    await next();
  };
}
