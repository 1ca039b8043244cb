/**
 * How HTTP meets the wider network: the Host allow-list (DNS-rebinding guard), CORS for the
 * configured origins, and the ICE servers as WHIP/WHEP `Link: rel="ice-server"` headers.
 *
 * CORS is written here rather than taken from hono/cors: WHIP (RFC 9725 §4.2) wants OPTIONS to
 * answer 200 with `Accept-Post` (and the WHEP draft the same), where hono's middleware answers every
 * OPTIONS itself with a bare 204.
 */
import { isIP } from 'node:net';
import type { MiddlewareHandler } from 'hono';
import type { Config } from '../config.ts';
import type { IceServer } from '../edge-config.ts';
import { XplError } from '../errors.ts';

/**
 * Whether a Host header names this server acceptably. DNS rebinding needs the attacker's own
 * host name in Host, so IP literals and localhost are always fine; other names only when listed
 * (--allowed-host). The guard is on by default without an API key (nothing else protects a
 * keyless server from a web page the user visits) and whenever names are listed.
 */
export function hostAllowed(host: string | undefined, config: Pick<Config, 'apiKey' | 'allowedHosts'>): boolean {
  if (config.apiKey && config.allowedHosts.length === 0) return true;
  if (!host) return true;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  if (isIP(name) || name === 'localhost' || name.endsWith('.localhost')) return true;
  return config.allowedHosts.some((h) => h.toLowerCase() === name.toLowerCase());
}

export function hostGuard(config: Config): MiddlewareHandler {
  return async (c, next) => {
    const host = c.req.header('host');
    if (!hostAllowed(host, config)) {
      throw new XplError('forbidden', `this server is not reachable as "${host}": start it with --allowed-host ${host?.replace(/:\d+$/, '')} (DNS-rebinding guard)`);
    }
    await next();
  };
}

/**
 * The client's address: the peer's, or — when the peer is a trusted reverse proxy — the last
 * X-Forwarded-For entry that is not itself a trusted proxy (entries further left are the client's
 * own claims and cannot be trusted).
 */
export function clientAddress(remote: string | undefined, forwardedFor: string | string[] | undefined, trusted: string[]): string {
  const peer = (remote ?? 'unknown').replace(/^::ffff:/, '');
  if (!trusted.includes(peer) || !forwardedFor) return peer;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').map((h) => h.trim()).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted.includes(hops[i])) return hops[i];
  return peer;
}

const ALLOW_HEADERS = 'Authorization, Content-Type, If-Match';
const EXPOSE_HEADERS = 'Location, ETag, Link, Accept-Post, Accept-Patch, Allow, Retry-After, WWW-Authenticate';

/** The origin to echo in Access-Control-Allow-Origin, or undefined when the origin is not allowed. */
export function allowedOrigin(origin: string | undefined, config: Pick<Config, 'corsOrigins'>): string | undefined {
  if (!origin) return undefined;
  if (config.corsOrigins.includes('*')) return '*';
  return config.corsOrigins.includes(origin) ? origin : undefined;
}

/** Adds the CORS response headers for an allowed origin to every response (OPTIONS adds its own in resource.ts). */
export function cors(config: Config): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const allow = allowedOrigin(c.req.header('origin'), config);
    c.res.headers.append('Vary', 'Origin');
    if (!allow) return;
    c.res.headers.set('Access-Control-Allow-Origin', allow);
    c.res.headers.set('Access-Control-Expose-Headers', EXPOSE_HEADERS);
  };
}

/** The CORS preflight headers for an OPTIONS request from an allowed origin. */
export function preflightHeaders(origin: string | undefined, methods: string[], config: Pick<Config, 'corsOrigins'>): Record<string, string> {
  const allow = allowedOrigin(origin, config);
  if (!allow) return {};
  return {
    'Access-Control-Allow-Origin': allow,
    'Access-Control-Allow-Methods': methods.join(', '),
    'Access-Control-Allow-Headers': ALLOW_HEADERS,
    'Access-Control-Expose-Headers': EXPOSE_HEADERS,
    'Access-Control-Max-Age': '600',
  };
}

/** `Link` header values for the ICE servers (RFC 9725 §4.6): `<URL>; rel="ice-server"[; username=…; credential=…; credential-type="password"]`. */
export function iceServerLinks(servers: IceServer[]): string[] {
  return servers.map((s) => {
    const creds = s.username !== undefined ? `; username="${quote(s.username)}"; credential="${quote(s.credential ?? '')}"; credential-type="password"` : '';
    return `<${s.urls}>; rel="ice-server"${creds}`;
  });
}

const quote = (s: string) => s.replace(/["\\]/g, (ch) => `\\${ch}`);
