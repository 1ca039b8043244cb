/**
 * Scoped, expiring viewer tokens: `xplv1.<payload>.<mac>`, where payload is base64url JSON
 * `{ s: sessionId, e: expiry (unix seconds), n: nonce }` and mac is base64url HMAC-SHA256 of
 * "xplv1." + payload under the server's token secret. A token lets its holder watch one session
 * (WHEP and /view) until it expires, and nothing else. Tokens are stateless: they cannot be
 * revoked one by one, but every token of a session becomes useless when the session ends (its
 * id is never reused), and a new --token-secret voids all of them.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { XplError } from '../errors.ts';
import { parseOrThrow, tokenTtl } from '../schemas.ts';

const PREFIX = 'xplv1.';
export const DEFAULT_TOKEN_TTL_S = 3600;

export interface ViewerTokenClaims {
  sessionId: string;
  /** Expiry, unix seconds. */
  expiresAt: number;
}

export class ViewerTokens {
  private readonly secret: Buffer;

  /** Without a secret a random one is drawn: tokens then end with the process. */
  constructor(secret?: string) {
    this.secret = secret ? Buffer.from(secret, 'utf8') : randomBytes(32);
  }

  mint(sessionId: string, ttlSeconds = DEFAULT_TOKEN_TTL_S, now = Date.now()): { token: string; expiresAt: string } {
    parseOrThrow(tokenTtl, ttlSeconds, 'ttlSeconds');
    const e = Math.floor(now / 1000) + Math.round(ttlSeconds);
    const payload = Buffer.from(JSON.stringify({ s: sessionId, e, n: randomBytes(6).toString('base64url') })).toString('base64url');
    const token = `${PREFIX}${payload}.${this.mac(payload)}`;
    return { token, expiresAt: new Date(e * 1000).toISOString() };
  }

  /** The claims of a well-formed, correctly signed, unexpired token; otherwise an 'unauthorized' XplError saying why. */
  verify(token: string, now = Date.now()): ViewerTokenClaims {
    if (!token.startsWith(PREFIX)) throw new XplError('unauthorized', 'not a viewer token');
    const rest = token.slice(PREFIX.length);
    const dot = rest.indexOf('.');
    if (dot <= 0) throw new XplError('unauthorized', 'malformed viewer token');
    const payload = rest.slice(0, dot);
    const mac = Buffer.from(rest.slice(dot + 1), 'base64url');
    const want = Buffer.from(this.mac(payload), 'base64url');
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) throw new XplError('unauthorized', 'viewer token signature does not match');
    let claims: { s?: unknown; e?: unknown };
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      throw new XplError('unauthorized', 'malformed viewer token');
    }
    if (typeof claims.s !== 'string' || typeof claims.e !== 'number') throw new XplError('unauthorized', 'malformed viewer token');
    if (claims.e * 1000 <= now) throw new XplError('unauthorized', 'the viewer token has expired: mint a new one');
    return { sessionId: claims.s, expiresAt: claims.e };
  }

  /** True when `token` is valid for `sessionId`. */
  allows(token: string | undefined, sessionId: string): boolean {
    if (!token) return false;
    try {
      return this.verify(token).sessionId === sessionId;
    } catch {
      return false;
    }
  }

  private mac(payload: string): string {
    return createHmac('sha256', this.secret).update(PREFIX).update(payload).digest('base64url');
  }
}

export function looksLikeViewerToken(s: string | undefined): boolean {
  return !!s && s.startsWith(PREFIX);
}
