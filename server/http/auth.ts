/**
 * Who a request is. The API key (constant-time comparison, so it cannot be guessed byte by byte
 * from timings) makes an admin; a viewer or publish token (tokens.ts) makes a scoped principal;
 * nothing makes an admin on a keyless server (loopback only, Host-guarded) and an anonymous caller
 * otherwise. Keys travel only in `Authorization: Bearer`; tokens also in `?token=` (a view link).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { XplError } from '../errors.ts';
import { looksLikePublishToken, looksLikeViewerToken, type Tokens } from './tokens.ts';

export type Principal =
  | { kind: 'admin' }
  | { kind: 'viewer'; subject: string }
  | { kind: 'publisher'; publishId: string }
  | { kind: 'anonymous' };

const digest = (s: string) => createHash('sha256').update(s).digest();

export function keyMatches(presented: string | undefined, key: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(key));
}

export function bearerToken(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return m?.[1];
}

/**
 * The principal of a request's credentials. A token is verified (401 with the reason when bad);
 * a bearer that is no token must be the key (401 otherwise). `?key=` is refused outright: keys in
 * URLs end up in logs, histories and referrers.
 */
export function authenticate(
  req: { authorization?: string; queryToken?: string; queryKey?: string },
  apiKey: string | undefined,
  tokens: Tokens,
): Principal {
  if (req.queryKey !== undefined) {
    throw new XplError('bad_request', 'API keys are not accepted in URLs (?key=): send "Authorization: Bearer KEY", or use a token (viewer or publish)');
  }
  const bearer = bearerToken(req.authorization);
  const token = looksLikeViewerToken(bearer) || looksLikePublishToken(bearer) ? bearer : req.queryToken;
  if (token !== undefined) {
    if (looksLikePublishToken(token)) return { kind: 'publisher', publishId: tokens.verifyPublish(token).publishId };
    return { kind: 'viewer', subject: tokens.verify(token).sessionId };
  }
  if (!apiKey) return { kind: 'admin' };
  if (bearer === undefined) return { kind: 'anonymous' };
  if (!keyMatches(bearer, apiKey)) throw new XplError('unauthorized', 'wrong API key');
  return { kind: 'admin' };
}

/** The error for a principal that may not do something: 401 when it is nobody, 403 when it is a token with another scope. */
export function refusal(p: Principal, what: string): XplError {
  if (p.kind === 'anonymous') return new XplError('unauthorized', 'missing API key: send "Authorization: Bearer KEY"');
  if (p.kind === 'viewer') return new XplError('forbidden', `a viewer token only opens WHEP and /view of its own session, not ${what}`);
  return new XplError('forbidden', `a publish token only creates its session and PATCHes or DELETEs it, not ${what}`);
}
