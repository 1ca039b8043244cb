/**
 * One typed configuration for the whole server: defaults → environment → command-line flags,
 * validated once at start-up. Unknown flags are rejected so that a typo never silently falls back
 * to a default.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { EDGE_OPTIONS, checkEdge, edgeSchemaShape } from './edge-config.ts';
import { XplError } from './errors.ts';
import { FRAMINGS } from './renderers/types.ts';
import { RENDERER_NAMES, framing, maxFps, nodeId, outputSizeText, rendererName, zoom } from './schemas.ts';

export { RENDERER_NAMES, type RendererName } from './schemas.ts';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

const schema = z
  .object({
    port: z.coerce.number().int().min(0).max(65535),
    host: z.string().min(1),
    renderer: rendererName,
    pack: z.string().min(1).optional(),
    apiKey: z.string().min(16, 'an API key must have at least 16 characters').optional(),
    allowRemote: z.boolean(),
    output: outputSizeText,
    framing,
    zoom: z.coerce.number().pipe(zoom),
    maxFps: z.coerce.number().pipe(maxFps),
    bitrate: z.coerce.number().int().min(100_000).max(20_000_000),
    maxSessions: z.coerce.number().int().min(1).max(1000),
    maxPortraitBytes: z.coerce.number().int().min(1024),
    iceAddresses: z.array(z.string().min(1)),
    iceTimeout: z.coerce.number().min(1).max(600),
    renderTimeout: z.coerce.number().min(0.5).max(600),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']),
    logFormat: z.enum(['auto', 'json', 'pretty']),
    tokenSecret: z.string().min(32, 'a token secret must have at least 32 characters').optional(),
    maxViewers: z.coerce.number().int().min(0).max(256),
    controlRate: z.coerce.number().min(1).max(10_000),
    controlBurst: z.coerce.number().int().min(1).max(100_000),
    maxControlMessageBytes: z.coerce.number().int().min(1024).optional(),
    codec: z.enum(['auto', 'native', 'wasm']),
    ffmpeg: z.string().min(1).optional(),
    warmWorkers: z.coerce.number().int().min(0).max(64),
    maxLoad: z.coerce.number().gt(0).max(16),
    ...edgeSchemaShape,
    nodeId: nodeId.optional(),
    nodeUrl: z.url({ protocol: /^https?$/ }).optional(),
    redis: z.url({ protocol: /^rediss?$/, error: 'expected redis://[user:password@]host:port[/db] (or rediss://)' }).optional(),
    agentPort: z.coerce.number().int().min(0).max(65535).optional(),
    drainTimeout: z.coerce.number().min(0).max(7 * 24 * 3600),
  })
  .strict();

export type Config = z.infer<typeof schema>;

export interface OptionSpec {
  key: keyof Config;
  flag: string;
  env?: string;
  type: 'string' | 'boolean';
  help: string;
  default?: string | boolean;
  list?: boolean;
}

const OPTIONS: OptionSpec[] = [
  { key: 'port', flag: 'port', env: 'PORT', type: 'string', default: '8080', help: 'HTTP port (0 picks a free one)' },
  { key: 'host', flag: 'host', env: 'HOST', type: 'string', default: '127.0.0.1', help: 'address to listen on' },
  { key: 'renderer', flag: 'renderer', env: 'XPL_RENDERER', type: 'string', default: 'mesh-warp', help: `default renderer: ${RENDERER_NAMES.join(', ')}` },
  { key: 'pack', flag: 'pack', env: 'XPL_PACK', type: 'string', help: 'model pack folder for xportrait-lcm' },
  { key: 'apiKey', flag: 'api-key', env: 'XPL_API_KEY', type: 'string', help: 'require "Authorization: Bearer KEY" on /v1 routes' },
  { key: 'allowRemote', flag: 'allow-remote', env: 'XPL_ALLOW_REMOTE', type: 'boolean', default: false, help: 'allow a non-loopback --host without an API key' },
  { key: 'output', flag: 'output', env: 'XPL_OUTPUT', type: 'string', default: '512x512', help: 'output video size WIDTHxHEIGHT' },
  { key: 'framing', flag: 'framing', env: 'XPL_FRAMING', type: 'string', default: 'head', help: `mesh-warp: what of the portrait the output shows: ${FRAMINGS.join(', ')} (per session: params.framing)` },
  { key: 'zoom', flag: 'zoom', env: 'XPL_ZOOM', type: 'string', default: '1', help: 'mesh-warp: magnification of that framing, 0.5..3 (per session: params.zoom)' },
  { key: 'maxFps', flag: 'max-fps', env: 'XPL_MAX_FPS', type: 'string', default: '30', help: 'output frame-rate cap (output follows the input up to this)' },
  { key: 'bitrate', flag: 'bitrate', env: 'XPL_BITRATE', type: 'string', default: '1500000', help: 'output VP8 target bitrate, bits/s' },
  { key: 'maxSessions', flag: 'max-sessions', env: 'XPL_MAX_SESSIONS', type: 'string', default: '8', help: 'concurrent sessions before 503' },
  { key: 'maxPortraitBytes', flag: 'max-portrait-bytes', env: 'XPL_MAX_PORTRAIT_BYTES', type: 'string', default: String(10 * 1024 * 1024), help: 'largest accepted portrait upload' },
  { key: 'iceAddresses', flag: 'ice-address', env: 'XPL_ICE_ADDRESSES', type: 'string', list: true, help: 'extra host ICE candidate address (repeatable; env: comma list)' },
  { key: 'iceTimeout', flag: 'ice-timeout', env: 'XPL_ICE_TIMEOUT', type: 'string', default: '10', help: 'seconds a peer may be without a working connection (never connected, or disconnected) before it is freed' },
  { key: 'renderTimeout', flag: 'render-timeout', env: 'XPL_RENDER_TIMEOUT', type: 'string', default: '5', help: 'seconds one frame may take in the renderer before its worker counts as hung and is restarted (xportrait-lcm sessions on one pack wait for each other: raise it for slow packs or many sessions)' },
  { key: 'tokenSecret', flag: 'token-secret', env: 'XPL_TOKEN_SECRET', type: 'string', help: 'HMAC secret for viewer tokens (default: random per start, so tokens end with the process)' },
  { key: 'maxViewers', flag: 'max-viewers', env: 'XPL_MAX_VIEWERS', type: 'string', default: '8', help: 'WHEP viewers per session before 503' },
  { key: 'controlRate', flag: 'control-rate', env: 'XPL_CONTROL_RATE', type: 'string', default: '20', help: 'control socket: messages per second per connection (token bucket refill)' },
  { key: 'controlBurst', flag: 'control-burst', env: 'XPL_CONTROL_BURST', type: 'string', default: '40', help: 'control socket: burst size per connection (token bucket capacity)' },
  { key: 'maxControlMessageBytes', flag: 'max-control-message', env: 'XPL_MAX_CONTROL_MESSAGE', type: 'string', help: 'largest control socket message, bytes (default: room for a base64 portrait of --max-portrait-bytes)' },
  { key: 'codec', flag: 'codec', env: 'XPL_CODEC', type: 'string', default: 'auto', help: 'video codec: native (ffmpeg processes), wasm (libvpx in WebAssembly, ~4× the CPU), or auto (native when its ffmpeg passes a check at start, else wasm)' },
  { key: 'ffmpeg', flag: 'ffmpeg', env: 'XPL_FFMPEG', type: 'string', help: 'ffmpeg executable for the native codec (default: the one from the npm package @ffmpeg-installer/ffmpeg)' },
  { key: 'warmWorkers', flag: 'warm-workers', env: 'XPL_WARM_WORKERS', type: 'string', default: '1', help: 'loop workers kept started and idle, so a new session does not wait for one (each holds the face models, ~60 MB)' },
  { key: 'maxLoad', flag: 'max-load', env: 'XPL_MAX_LOAD', type: 'string', default: '0.9', help: 'CPU budget as a fraction of the machine\'s cores: a new session that would take the server past it is refused with 503 (per-session cost learnt from the running sessions)' },
  { key: 'nodeId', flag: 'node-id', env: 'XPL_NODE_ID', type: 'string', help: 'this node\'s name among many (a-z, 0-9, "-"; ≤ 27 characters): it prefixes session ids ("NODE.uuid") so a load balancer can route a session\'s requests to its node, and labels every metric (default label: the host name)' },
  { key: 'nodeUrl', flag: 'node-url', env: 'XPL_NODE_URL', type: 'string', help: 'URL other nodes reach this one at, for control-socket forwarding (default: http://HOST:PORT as listening)' },
  { key: 'redis', flag: 'redis', env: 'XPL_REDIS', type: 'string', help: 'Redis URL for state shared between nodes: portraits, the session directory, token keys (needs --node-id; optional: one node needs nothing)' },
  { key: 'agentPort', flag: 'agent-port', env: 'XPL_AGENT_PORT', type: 'string', help: 'TCP port of the HAProxy agent-check answer (free capacity as a weight, or drain) on --host; off when unset' },
  { key: 'drainTimeout', flag: 'drain-timeout', env: 'XPL_DRAIN_TIMEOUT', type: 'string', default: '30', help: 'seconds a drain (SIGTERM, or POST /v1/nodes/NODE/drain) lets live sessions run before closing them and exiting; SIGINT and a second SIGTERM stop at once' },
  { key: 'logLevel', flag: 'log-level', env: 'XPL_LOG_LEVEL', type: 'string', default: 'info', help: 'trace|debug|info|warn|error|fatal|silent' },
  { key: 'logFormat', flag: 'log-format', env: 'XPL_LOG_FORMAT', type: 'string', default: 'auto', help: 'json (one object per line), pretty (for people), or auto: pretty on a terminal, json otherwise' },
  ...EDGE_OPTIONS,
];

export function helpText(): string {
  const lines = ['Usage: npm start -- [options]', '', 'Options (flag / environment variable / default):'];
  for (const o of OPTIONS) {
    const flag = o.type === 'boolean' ? `--${o.flag}` : `--${o.flag} VALUE`;
    const def = o.default === undefined || o.default === false ? '' : ` (default ${o.default})`;
    lines.push(`  ${flag.padEnd(30)} ${o.help}${def}${o.env ? ` [${o.env}]` : ''}`);
  }
  lines.push(`  ${'--help'.padEnd(30)} show this help`);
  return lines.join('\n');
}

export type ParseResult = { help: true } | { help: false; config: Config };

/** Builds the config from argv and env. Throws XplError('bad_config') with every problem listed. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ParseResult {
  const parseOptions: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { help: { type: 'boolean' } };
  for (const o of OPTIONS) parseOptions[o.flag] = { type: o.type, ...(o.list ? { multiple: true } : {}) };
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args: argv, options: parseOptions, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new XplError('bad_config', `${(err as Error).message}\n\n${helpText()}`);
  }
  if (values.help) return { help: true };

  const raw: Record<string, unknown> = {};
  for (const o of OPTIONS) {
    let v: unknown = values[o.flag];
    if (v === undefined && o.env && env[o.env] !== undefined && env[o.env] !== '') {
      const e = env[o.env] as string;
      v = o.type === 'boolean' ? /^(1|true|yes)$/i.test(e) : o.list ? e.split(',').map((s) => s.trim()).filter(Boolean) : e;
    }
    if (v === undefined) v = o.list ? [] : o.default;
    if (v !== undefined) raw[o.key] = v;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const spec = OPTIONS.find((o) => o.key === i.path[0]);
      return `  --${spec?.flag ?? String(i.path[0])}: ${i.message}`;
    });
    throw new XplError('bad_config', `invalid configuration:\n${problems.join('\n')}`);
  }
  const config = parsed.data;
  if (!isLoopback(config.host) && !config.apiKey && !config.allowRemote) {
    throw new XplError(
      'bad_config',
      `refusing to listen on ${config.host} without an API key: set --api-key (or XPL_API_KEY), or pass --allow-remote to expose an unauthenticated server on purpose`,
    );
  }
  checkEdge(config);
  if (config.renderer === 'xportrait-lcm' && !config.pack) {
    throw new XplError('bad_config', 'the xportrait-lcm renderer needs a model pack: pass --pack DIR (see docs/MODELS.md)');
  }
  if (config.redis && !config.nodeId) {
    throw new XplError('bad_config', 'a node sharing state through --redis needs a unique name: pass --node-id NAME (see docs/SCALING.md)');
  }
  return { help: false, config };
}

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}
