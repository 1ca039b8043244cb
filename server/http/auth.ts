/** Bearer-key check for /v1 routes. Constant-time comparison so the key cannot be guessed byte by byte from timings. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { XplError } from '../errors.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

export function keyMatches(presented: string | undefined, key: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(key));
}

export function bearerToken(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return m?.[1];
}

export function requireApiKey(key: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (key && !keyMatches(bearerToken(c.req.header('authorization')), key)) {
      throw new XplError('unauthorized', 'missing or wrong API key: send "Authorization: Bearer KEY"');
    }
    await next();
  };
}
