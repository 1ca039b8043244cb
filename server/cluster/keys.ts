/**
 * Token-signing keys every node shares, so a token minted on one node is good on all of them
 * (viewer tokens today; publish tokens, which any node may be asked to check, use the same
 * interface). One random key per purpose, created by whichever node asks first (SET NX) and
 * never rewritten; an explicit --token-secret takes precedence over it.
 *
 *   xpl:keys:PURPOSE    base64url secret (32 random bytes)
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.ts';
import { key, type SharedState } from './redis.ts';

export interface TokenKeys {
  /** The shared secret for `purpose` (e.g. "viewer", "publish"), created on first use. */
  secret(purpose: string): Promise<string>;
}

export class RedisTokenKeys implements TokenKeys {
  constructor(private readonly shared: SharedState) {}

  async secret(purpose: string): Promise<string> {
    const k = key('keys', purpose);
    return this.shared.run(`the shared ${purpose} token key`, async (c) => {
      await c.set(k, randomBytes(32).toString('base64url'), { NX: true });
      const secret = await c.get(k);
      if (!secret) throw new Error(`${k} vanished right after it was set`);
      return secret;
    });
  }
}

/**
 * The shared secret for `purpose`, or undefined (with the reason logged) when Redis cannot be
 * reached: tokens this node mints are then good on this node only.
 */
export async function sharedTokenSecret(shared: SharedState, purpose: string, log: Logger): Promise<string | undefined> {
  try {
    return await new RedisTokenKeys(shared).secret(purpose);
  } catch (err) {
    log.error({ err: (err as Error).message, purpose }, 'no shared token key: tokens minted here are good on this node only (set --token-secret on every node to avoid this)');
    return undefined;
  }
}
