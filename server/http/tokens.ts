/**
 * Scoped, expiring, stateless tokens signed with the server's token secret (HMAC-SHA256):
 *
 * - **viewer** `xplv1.<payload>.<mac>`, payload `{ s: subject, e: expiry, n: nonce }`: watches one
 *   subject — a session id, or a publish id (then whichever session that publisher has live) —
 *   over WHEP and `/view`, and nothing else.
 * - **publish** `xplp1.<payload>.<mac>`, payload `{ p: publishId, e, n }`: creates one session at a
 *   time (a new one replaces the previous, so an encoder such as OBS can reconnect) and
 *   may PATCH and DELETE that session. What an encoder stores instead of the API key.
 *
 * Payloads are base64url JSON; the mac covers the prefix and the payload. Tokens cannot be
 * revoked one by one: a new --token-secret voids all of them, and a viewer token of a session
 * dies with the session (its id is never reused).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { XplError } from '../errors.ts';
import { parseOrThrow, tokenTtl } from '../schemas.ts';

const VIEWER = 'xplv1.';
const PUBLISH = 'xplp1.';
export const DEFAULT_TOKEN_TTL_S = 3600;
/** Publish ids are never session ids (UUIDs): `/view/pub-…` and `…/pub-…/whep` name a publisher's live session. */
export const PUBLISH_ID_PREFIX = 'pub-';

export interface ViewerTokenClaims {
  /** A session id or a publish id. */
  sessionId: string;
  /** Expiry, unix seconds. */
  expiresAt: number;
}

export interface PublishTokenClaims {
  publishId: string;
  expiresAt: number;
}

export class Tokens {
  private readonly secret: Buffer;

  /** Without a secret a random one is drawn: tokens then end with the process. */
  constructor(secret?: string) {
    this.secret = secret ? Buffer.from(secret, 'utf8') : randomBytes(32);
  }

  /** A viewer token for a session id or a publish id. */
  mint(subject: string, ttlSeconds = DEFAULT_TOKEN_TTL_S, now = Date.now()): { token: string; expiresAt: string } {
    return this.sign(VIEWER, { s: subject }, ttlSeconds, now);
  }

  /** A publish token with a fresh publish id. */
  mintPublish(ttlSeconds = DEFAULT_TOKEN_TTL_S, now = Date.now()): { token: string; publishId: string; expiresAt: string } {
    const publishId = `${PUBLISH_ID_PREFIX}${randomBytes(9).toString('base64url')}`;
    return { ...this.sign(PUBLISH, { p: publishId }, ttlSeconds, now), publishId };
  }

  /** The claims of a well-formed, correctly signed, unexpired viewer token; otherwise an 'unauthorized' XplError saying why. */
  verify(token: string, now = Date.now()): ViewerTokenClaims {
    const c = this.open(VIEWER, 'viewer', token, now);
    if (typeof c.s !== 'string') throw new XplError('unauthorized', 'malformed viewer token');
    return { sessionId: c.s, expiresAt: c.e as number };
  }

  verifyPublish(token: string, now = Date.now()): PublishTokenClaims {
    const c = this.open(PUBLISH, 'publish', token, now);
    if (typeof c.p !== 'string') throw new XplError('unauthorized', 'malformed publish token');
    return { publishId: c.p, expiresAt: c.e as number };
  }

  private sign(prefix: string, claims: Record<string, string>, ttlSeconds: number, now: number): { token: string; expiresAt: string } {
    parseOrThrow(tokenTtl, ttlSeconds, 'ttlSeconds');
    const e = Math.floor(now / 1000) + Math.round(ttlSeconds);
    const payload = Buffer.from(JSON.stringify({ ...claims, e, n: randomBytes(6).toString('base64url') })).toString('base64url');
    return { token: `${prefix}${payload}.${this.mac(prefix, payload)}`, expiresAt: new Date(e * 1000).toISOString() };
  }

  private open(prefix: string, kind: string, token: string, now: number): Record<string, unknown> {
    if (!token.startsWith(prefix)) throw new XplError('unauthorized', `not a ${kind} token`);
    const rest = token.slice(prefix.length);
    const dot = rest.indexOf('.');
    if (dot <= 0) throw new XplError('unauthorized', `malformed ${kind} token`);
    const payload = rest.slice(0, dot);
    const mac = Buffer.from(rest.slice(dot + 1), 'base64url');
    const want = Buffer.from(this.mac(prefix, payload), 'base64url');
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) throw new XplError('unauthorized', `${kind} token signature does not match`);
    let claims: Record<string, unknown>;
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new XplError('unauthorized', `malformed ${kind} token`);
    }
    if (typeof claims.e !== 'number') throw new XplError('unauthorized', `malformed ${kind} token`);
    if (claims.e * 1000 <= now) throw new XplError('unauthorized', `the ${kind} token has expired: mint a new one`);
    return claims;
  }

  private mac(prefix: string, payload: string): string {
    return createHmac('sha256', this.secret).update(prefix).update(payload).digest('base64url');
  }
}

export function looksLikeViewerToken(s: string | undefined): boolean {
  return !!s && s.startsWith(VIEWER);
}

export function looksLikePublishToken(s: string | undefined): boolean {
  return !!s && s.startsWith(PUBLISH);
}
