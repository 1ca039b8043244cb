/**
 * The part of the one config (config.ts spreads it in) that says how the server meets the network
 * beyond localhost: ICE servers and NAT, the UDP port range, TLS, CORS, the Host allow-list and
 * /metrics auth. One concern, kept together so it reads as one.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import type { Config, OptionSpec } from './config.ts';
import { XplError } from './errors.ts';

/** An ICE server as RTCPeerConnection takes it (and as the web app and the SDK are served it). */
export interface IceServer {
  urls: string;
  username?: string;
  credential?: string;
}

const ICE_URL = /^(stuns?|turns?):(?:([^:@/?]+):([^@/?]+)@)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(\?transport=(udp|tcp))?$/;

/**
 * `stun:HOST[:PORT]` or `turn[s]:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]` → an ICE server.
 * Credentials ride in the flag's value (percent-encode a ':' or '@' in them); a TURN server needs them.
 */
export function parseIceServer(value: string): IceServer {
  const m = ICE_URL.exec(value.trim());
  if (!m) {
    throw new Error(`"${value}" is not an ICE server URL: expected stun:HOST[:PORT] or turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]`);
  }
  const [, scheme, user, pass, host, port, query] = m;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw new Error(`"${value}": port must be 1..65535`);
  const isTurn = scheme.startsWith('turn');
  if (isTurn && !user) throw new Error(`"${value}": a TURN server needs credentials: turn:USER:PASSWORD@${host}${port ? `:${port}` : ''}`);
  if (!isTurn && (user || query)) throw new Error(`"${value}": a STUN URL has no credentials and no transport`);
  const urls = `${scheme}:${host}${port ? `:${port}` : ''}${query ?? ''}`;
  return isTurn ? { urls, username: decodeURIComponent(user), credential: decodeURIComponent(pass) } : { urls };
}

const iceServerSchema = z.string().transform((s, ctx) => {
  try {
    return parseIceServer(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const portRangeSchema = z
  .string()
  .regex(/^\d{1,5}-\d{1,5}$/, 'expected MIN-MAX, e.g. 40000-40199')
  .transform((s) => s.split('-').map(Number) as [number, number])
  .refine(([lo, hi]) => lo >= 1024 && hi <= 65535 && lo < hi, 'the range must lie in 1024..65535 with MIN < MAX');

const originSchema = z
  .string()
  .refine((s) => s === '*' || /^https?:\/\/[^/?#\s]+$/.test(s), 'an origin is "*" or scheme://host[:port] with no path, e.g. https://obs.example.com');

const hostNameSchema = z.string().regex(/^[A-Za-z0-9.-]+$/, 'a host name, without scheme or port (e.g. avatar.example.com)');

export const edgeSchemaShape = {
  iceServers: z.array(iceServerSchema),
  announcedIp: z.string().refine((s) => isIP(s) === 4, 'an IPv4 address').optional(),
  rtcPorts: portRangeSchema.optional(),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  corsOrigins: z.array(originSchema),
  allowedHosts: z.array(hostNameSchema),
  metricsToken: z.string().min(16, 'a metrics token must have at least 16 characters').optional(),
  trustProxy: z.array(z.string().refine((s) => isIP(s) !== 0, 'an IP address')),
};

export const EDGE_OPTIONS: OptionSpec[] = [
  { key: 'iceServers', flag: 'ice-server', env: 'XPL_ICE_SERVERS', type: 'string', list: true, help: 'STUN/TURN server for clients (served to the web app, the SDK and WHIP/WHEP clients): stun:HOST[:PORT] or turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp] (repeatable; env: comma list)' },
  { key: 'announcedIp', flag: 'announced-ip', env: 'XPL_ANNOUNCED_IP', type: 'string', help: 'public IPv4 address to announce in ICE candidates instead of the local ones (a server behind 1:1 NAT, e.g. a cloud VM)' },
  { key: 'rtcPorts', flag: 'rtc-ports', env: 'XPL_RTC_PORTS', type: 'string', help: 'UDP port range for media, MIN-MAX (open it in the firewall); default: any free port' },
  { key: 'tlsCert', flag: 'tls-cert', env: 'XPL_TLS_CERT', type: 'string', help: 'PEM certificate (chain): serve HTTPS and WSS on --port' },
  { key: 'tlsKey', flag: 'tls-key', env: 'XPL_TLS_KEY', type: 'string', help: 'PEM private key of --tls-cert' },
  { key: 'corsOrigins', flag: 'cors-origin', env: 'XPL_CORS_ORIGINS', type: 'string', list: true, help: 'web origin allowed to call the API from a browser (WHIP/WHEP players on other sites), e.g. https://app.example.com, or * (repeatable; env: comma list)' },
  { key: 'allowedHosts', flag: 'allowed-host', env: 'XPL_ALLOWED_HOSTS', type: 'string', list: true, help: 'host name the server may be reached by, besides IP addresses and localhost (required for names without --api-key: DNS-rebinding guard) (repeatable; env: comma list)' },
  { key: 'metricsToken', flag: 'metrics-token', env: 'XPL_METRICS_TOKEN', type: 'string', help: 'require "Authorization: Bearer TOKEN" (or the API key) on /metrics' },
  { key: 'trustProxy', flag: 'trust-proxy', env: 'XPL_TRUST_PROXY', type: 'string', list: true, help: 'address of a reverse proxy whose X-Forwarded-For names the client (per-address limits then apply to the client, not the proxy) (repeatable; env: comma list)' },
];

/** Checks across edge options (TLS files readable, both given); throws bad_config. */
export function checkEdge(config: Config): void {
  if (!!config.tlsCert !== !!config.tlsKey) {
    throw new XplError('bad_config', 'TLS needs both --tls-cert and --tls-key');
  }
  for (const [flag, file] of [['--tls-cert', config.tlsCert], ['--tls-key', config.tlsKey]] as const) {
    if (!file) continue;
    try {
      readFileSync(file);
    } catch (err) {
      throw new XplError('bad_config', `${flag} ${file}: ${(err as Error).message}`);
    }
  }
}
