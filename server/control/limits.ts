/**
 * What keeps the control socket cheap for callers that have not proved who they are, and fair
 * for those that have: a token bucket per connection, the pre-auth admission caps (sockets
 * waiting to authenticate, in all and per address), and the message size limit that grows only
 * once a socket is authenticated.
 */
import type { WebSocket } from 'ws';

/** Largest message a socket may send before it authenticates: an auth or ping message fits. */
export const PREAUTH_MAX_PAYLOAD = 4096;
/** A socket that has not authenticated within this time is closed (1008). */
export const AUTH_TIMEOUT_MS = 5000;
/** Sockets waiting to authenticate, server-wide and per remote address, before upgrades are refused. */
export const MAX_PENDING_AUTH = 64;
export const MAX_PENDING_AUTH_PER_ADDRESS = 8;

export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(private readonly rate: number, private readonly capacity: number, now = performance.now()) {
    this.tokens = capacity;
    this.last = now;
  }
  /** Takes one token; false when empty. */
  take(now = performance.now()): boolean {
    this.tokens = this.level(now);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
  /** Whether the bucket has filled up again (the client kept within its rate for a while). */
  full(now = performance.now()): boolean {
    return this.level(now) >= this.capacity;
  }
  /** The tokens there are at `now`: those left at the last take, plus what has refilled since. */
  private level(now: number): number {
    return Math.min(this.capacity, this.tokens + ((now - this.last) / 1000) * this.rate);
  }
  /** Milliseconds until one token is available. */
  waitMs(): number {
    return Math.max(0, Math.ceil(((1 - this.tokens) / this.rate) * 1000));
  }
}

/** Counts sockets that are still unauthenticated, in all and per address. */
export class PendingAuth {
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(private readonly max = MAX_PENDING_AUTH, private readonly maxPerAddress = MAX_PENDING_AUTH_PER_ADDRESS) {}

  /** Admits one more pending socket from `address`, or says which cap it hits. */
  admit(address: string): 'ok' | 'address' | 'total' {
    const n = this.byAddress.get(address) ?? 0;
    if (n >= this.maxPerAddress) return 'address';
    if (this.total >= this.max) return 'total';
    this.byAddress.set(address, n + 1);
    this.total++;
    return 'ok';
  }

  /** The socket authenticated or went away. */
  release(address: string): void {
    const n = this.byAddress.get(address) ?? 0;
    if (n <= 1) this.byAddress.delete(address);
    else this.byAddress.set(address, n - 1);
    this.total = Math.max(0, this.total - 1);
  }

  get size(): number {
    return this.total;
  }
}

/**
 * Sets one socket's message size limit. ws takes the limit per server; the receiver of each socket
 * holds its own copy, which it checks against the length in every frame header (before reading the
 * payload). The server is created with the small pre-auth limit, so if ws ever renamed this field
 * an authenticated socket would keep the small limit: a visible failure, never a larger one.
 */
export function setMaxPayload(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload: number } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
}
