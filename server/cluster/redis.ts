/**
 * The connection to the Redis that nodes share (node-redis). Optional: a single node never makes
 * one. Commands never queue while Redis is away: they fail at once with a `cluster_unavailable`
 * XplError naming the Redis and the cause, so the features that need other nodes say why they
 * cannot work while everything a node does alone goes on. The client reconnects by itself.
 */
import { createClient, RESP_TYPES } from '@redis/client';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';

/** Every key the project writes starts with this, so a Redis can be shared with other users. */
export const KEY_PREFIX = 'xpl:';
const CONNECT_TIMEOUT_MS = 2000;
/** A command that takes longer than this counts as Redis being unreachable. */
const COMMAND_TIMEOUT_MS = 2000;
const RECONNECT_MS = 1000;

function makeClient(url: string) {
  return createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: () => RECONNECT_MS },
    commandOptions: { timeout: COMMAND_TIMEOUT_MS },
  });
}

export type RedisClient = ReturnType<typeof makeClient>;
/** The same connection, answering bulk strings as Buffers (portrait bytes). */
export type BinaryRedisClient = ReturnType<RedisClient['withTypeMapping']>;

export class SharedState {
  /** The URL without its password, for messages and logs. */
  readonly where: string;
  private readonly client: RedisClient;
  private lastError = 'not connected yet';
  private closed = false;

  constructor(url: string, private readonly log: Logger) {
    const u = new URL(url);
    u.password = '';
    u.username = '';
    this.where = u.toString();
    this.client = makeClient(url);
    this.client.on('error', (err: Error) => {
      const msg = err.message || err.name;
      if (msg !== this.lastError) this.log.warn({ redis: this.where, err: msg }, 'redis unreachable');
      this.lastError = msg;
      metrics.redisUp.set(0);
    });
    this.client.on('ready', () => {
      this.log.info({ redis: this.where }, 'redis connected');
      metrics.redisUp.set(1);
    });
    metrics.redisUp.set(0);
  }

  /**
   * Connects, waiting at most a connect timeout: when Redis is away the node starts anyway (the
   * client's connect() would wait for as long as it keeps retrying, which it does in the background).
   */
  async connect(): Promise<void> {
    const connected = this.client.connect().then(
      () => true,
      (err: Error) => {
        this.lastError = err.message;
        return false;
      },
    );
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([connected, new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), CONNECT_TIMEOUT_MS + 500)))]);
    clearTimeout(timer);
    if (!ok) this.log.error({ redis: this.where, err: this.lastError }, 'redis unreachable at start: multi-node features wait for it');
  }

  get up(): boolean {
    return this.client.isReady;
  }

  /** Why Redis cannot be used now (for /healthz); undefined while it is up. */
  get problem(): string | undefined {
    return this.up ? undefined : `redis ${this.where} unreachable: ${this.lastError}`;
  }

  /**
   * Runs `fn` on the connection; any failure of Redis itself becomes a `cluster_unavailable`
   * XplError saying what could not be done (`what`), so callers need no error handling of their own.
   */
  async run<T>(what: string, fn: (c: RedisClient) => Promise<T>): Promise<T> {
    if (!this.up) throw this.unavailable(what, this.lastError);
    try {
      return await fn(this.client);
    } catch (err) {
      if (err instanceof XplError) throw err;
      throw this.unavailable(what, (err as Error).message);
    }
  }

  /** As run(), with bulk strings answered as Buffers. */
  runBinary<T>(what: string, fn: (c: BinaryRedisClient) => Promise<T>): Promise<T> {
    return this.run(what, (c) => fn(c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })));
  }

  private unavailable(what: string, cause: string): XplError {
    return new XplError('cluster_unavailable', `${what} needs the shared Redis (${this.where}), which is unreachable: ${cause}`, { retryAfter: 2 });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    metrics.redisUp.set(0);
    if (this.client.isOpen) await this.client.close().catch(() => this.client.destroy());
    else this.client.destroy();
  }
}

export function key(...parts: string[]): string {
  return KEY_PREFIX + parts.join(':');
}
