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
import { RENDERER_NAMES, framing, lcmUnavailable, maxFps, nodeId, outputSizeText, rendererName, zoom } from './schemas.ts';

export { RENDERER_NAMES, type RendererName } from './schemas.ts';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Positions the motion modules were trained on (AnimateDiff's 16-frame clips): sink + ring + the current frame. */
export const LCM_MAX_WINDOW = 16;

/** xportrait-lcm: the engine (ONNX pack or the PyTorch worker) and its pipeline settings. */
const lcmSchema = z
  .object({
    engine: z.enum(['onnx', 'torch']),
    weights: z.string().min(1).optional(),
    lora: z.string().min(1).optional(),
    context: z.string().min(1).optional(),
    taesd: z.string().min(1).optional(),
    device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, 'expected cpu, cuda or cuda:N'),
    python: z.string().min(1),
    ep: z.enum(['cpu', 'cuda', 'webgpu']),
    precision: z.enum(['fp32', 'fp16']).optional(),
    steps: z.coerce.number().int().min(1).max(8),
    streamBatch: z.boolean(),
    decoder: z.enum(['taesd', 'vae']).optional(),
    skip: z.coerce.number().min(0).max(255),
    threads: z.coerce.number().int().min(0).max(256),
    seed: z.coerce.number().int().min(0).max(0xffffffff),
    noise: z.enum(['fixed', 'fresh']),
    cfg: z.coerce.number().min(0).max(20),
    init: z.enum(['noise', 'portrait']),
    warmup: z.coerce.number().int().min(0).max(LCM_MAX_WINDOW),
    timesteps: z.enum(['skip-step', 'linspace']).optional(),
    sink: z.coerce.number().int().min(0).max(14),
    ring: z.coerce.number().int().min(1).max(15),
    imageSize: z.coerce.number().int().min(64).max(1024).multipleOf(64, 'must be a multiple of 64'),
    cudaGraphs: z.boolean(),
    compile: z.boolean(),
    batchWait: z.coerce.number().min(0).max(100),
    hangTimeout: z.coerce.number().min(0.5).max(600),
    startTimeout: z.coerce.number().min(1).max(3600),
  })
  .strict();

export type LcmSettings = z.infer<typeof lcmSchema>;

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
    latencyBudget: z.coerce.number().min(0).max(10_000),
    ...edgeSchemaShape,
    nodeId: nodeId.optional(),
    nodeUrl: z.url({ protocol: /^https?$/ }).optional(),
    redis: z.url({ protocol: /^rediss?$/, error: 'expected redis://[user:password@]host:port[/db] (or rediss://)' }).optional(),
    agentPort: z.coerce.number().int().min(0).max(65535).optional(),
    drainTimeout: z.coerce.number().min(0).max(7 * 24 * 3600),
    lcm: lcmSchema,
  })
  .strict();

export type Config = z.infer<typeof schema>;

export interface OptionSpec {
  /** A top-level key, or a key of the `lcm` section when `section` says so. */
  key: string;
  section?: 'lcm';
  flag: string;
  env?: string;
  type: 'string' | 'boolean';
  help: string;
  default?: string | boolean;
  list?: boolean;
  /** A boolean flag that turns its setting off (`--lcm-no-cuda-graphs` → cudaGraphs false). */
  negate?: boolean;
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
  { key: 'iceTimeout', flag: 'ice-timeout', env: 'XPL_ICE_TIMEOUT', type: 'string', default: '10', help: 'seconds a peer may be without a working connection (never connected, disconnected, or a publisher sending no packet at all) before it is freed' },
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
  { key: 'latencyBudget', flag: 'latency-budget', env: 'XPL_LATENCY_BUDGET', type: 'string', default: '50', help: 'ms a frame may spend in the server beyond what its render takes unhurried (75th percentile of every session\'s frames, two half-second windows running, or one at twice the budget) before every session\'s frame rate is capped lower, down to 5 fps (the cap rises back a step at a time while within it): short of CPU, sessions lose frame rate, equally, not latency (0: off)' },
  { key: 'nodeId', flag: 'node-id', env: 'XPL_NODE_ID', type: 'string', help: 'this node\'s name among many (a-z, 0-9, "-"; ≤ 27 characters): it prefixes session ids ("NODE.uuid") so a load balancer can route a session\'s requests to its node, and labels every metric (default label: the host name)' },
  { key: 'nodeUrl', flag: 'node-url', env: 'XPL_NODE_URL', type: 'string', help: 'URL other nodes reach this one at, for control-socket forwarding (default: http://HOST:PORT as listening)' },
  { key: 'redis', flag: 'redis', env: 'XPL_REDIS', type: 'string', help: 'Redis URL for state shared between nodes: portraits, the session directory, token keys (needs --node-id; optional: one node needs nothing)' },
  { key: 'agentPort', flag: 'agent-port', env: 'XPL_AGENT_PORT', type: 'string', help: 'TCP port of the HAProxy agent-check answer (free capacity as a weight, or drain) on --host; off when unset' },
  { key: 'drainTimeout', flag: 'drain-timeout', env: 'XPL_DRAIN_TIMEOUT', type: 'string', default: '30', help: 'seconds a drain (SIGTERM, or POST /v1/nodes/NODE/drain) lets live sessions run before closing them and exiting; SIGINT and a second SIGTERM stop at once' },
  { key: 'logLevel', flag: 'log-level', env: 'XPL_LOG_LEVEL', type: 'string', default: 'info', help: 'trace|debug|info|warn|error|fatal|silent' },
  { key: 'logFormat', flag: 'log-format', env: 'XPL_LOG_FORMAT', type: 'string', default: 'auto', help: 'json (one object per line), pretty (for people), or auto: pretty on a terminal, json otherwise' },
  ...EDGE_OPTIONS,
];

const LCM = 'lcm' as const;
/** xportrait-lcm settings (the `lcm` section); listed under their own heading in --help. */
const LCM_OPTIONS: OptionSpec[] = [
  { section: LCM, key: 'engine', flag: 'engine', env: 'XPL_LCM_ENGINE', type: 'string', default: 'onnx', help: 'xportrait-lcm engine: onnx (model pack on onnxruntime: CPU, WebGPU) or torch (PyTorch worker process: CUDA, or CPU for the tiny model)' },
  { section: LCM, key: 'weights', flag: 'weights', env: 'XPL_LCM_WEIGHTS', type: 'string', help: 'torch engine: a published X-Portrait checkpoint FILE, random (full size, seeded random weights) or tiny (the test model)' },
  { section: LCM, key: 'lora', flag: 'lcm-lora', env: 'XPL_LCM_LORA', type: 'string', help: 'torch engine: SD1.5 LCM-LoRA safetensors fused into the UNet (with --weights FILE)' },
  { section: LCM, key: 'context', flag: 'lcm-context', env: 'XPL_LCM_CONTEXT', type: 'string', help: 'torch engine: empty-prompt CLIP embedding [77,768] (.npy/.safetensors/.pt; with --weights FILE)' },
  { section: LCM, key: 'taesd', flag: 'lcm-taesd', env: 'XPL_LCM_TAESD', type: 'string', help: 'torch engine: TAESD decoder weights (with --weights FILE; else the VAE decodes)' },
  { section: LCM, key: 'device', flag: 'device', env: 'XPL_LCM_DEVICE', type: 'string', default: 'cuda', help: 'torch engine: cuda, cuda:N or cpu' },
  { section: LCM, key: 'python', flag: 'python', env: 'XPL_PYTHON', type: 'string', default: '/usr/bin/python3', help: 'torch engine: the Python interpreter with torch, numpy and msgpack' },
  { section: LCM, key: 'ep', flag: 'lcm-ep', env: 'XPL_LCM_EP', type: 'string', default: 'cpu', help: 'onnx engine: execution provider cpu|cuda|webgpu' },
  { section: LCM, key: 'precision', flag: 'lcm-precision', env: 'XPL_LCM_PRECISION', type: 'string', help: 'fp32|fp16 (default: fp32 on a CPU, fp16 on a GPU)' },
  { section: LCM, key: 'steps', flag: 'lcm-steps', env: 'XPL_LCM_STEPS', type: 'string', default: '2', help: 'LCM steps per frame, 1..8' },
  { section: LCM, key: 'streamBatch', flag: 'lcm-stream-batch', env: 'XPL_LCM_STREAM_BATCH', type: 'boolean', default: false, help: "StreamDiffusion's stream batch: all steps in one batched call, output steps−1 frames later" },
  { section: LCM, key: 'decoder', flag: 'lcm-decoder', env: 'XPL_LCM_DECODER', type: 'string', help: 'taesd|vae (default TAESD when there are TAESD weights)' },
  { section: LCM, key: 'skip', flag: 'lcm-skip', env: 'XPL_LCM_SKIP', type: 'string', default: '1', help: 'similarity skip: mean abs luma difference (0..255) of a 16² thumbnail below which the last output is reused; 0 = off' },
  { section: LCM, key: 'threads', flag: 'lcm-threads', env: 'XPL_LCM_THREADS', type: 'string', default: '1', help: 'CPU threads of the pack worker (onnxruntime intra-op) or the torch worker (0: torch picks)' },
  { section: LCM, key: 'seed', flag: 'lcm-seed', env: 'XPL_LCM_SEED', type: 'string', default: '1', help: 'noise seed (and the seed of --weights random|tiny)' },
  { section: LCM, key: 'noise', flag: 'lcm-noise', env: 'XPL_LCM_NOISE', type: 'string', default: 'fixed', help: 'fixed (the same noise every frame) or fresh (per frame)' },
  { section: LCM, key: 'cfg', flag: 'lcm-cfg', env: 'XPL_LCM_CFG', type: 'string', default: '1', help: "classifier-free guidance scale as upstream (unconditional branch without reference attention and ControlNets, batched with the conditional one; onnx: stream batch off); 1 = off" },
  { section: LCM, key: 'init', flag: 'lcm-init', env: 'XPL_LCM_INIT', type: 'string', default: 'noise', help: "initial latent: noise, or portrait (the portrait's VAE latent noised to the first timestep, as upstream)" },
  { section: LCM, key: 'warmup', flag: 'lcm-warmup', env: 'XPL_LCM_WARMUP', type: 'string', default: '0', help: "bidirectional warm-up window — a stream's first N frames (2..sink+ring+1) denoised together, every frame seeing every other, before streaming causally (onnx: a pack exported with --warmup N); 0 = off" },
  { section: LCM, key: 'timesteps', flag: 'lcm-timesteps', env: 'XPL_LCM_TIMESTEPS', type: 'string', help: "LCM timestep rule: skip-step or linspace (diffusers' current rule); default the pack's rule (onnx) or skip-step (torch)" },
  { section: LCM, key: 'sink', flag: 'lcm-sink', env: 'XPL_LCM_SINK', type: 'string', default: '1', help: 'torch engine: temporal sink frames (the stream\'s first frames, kept)' },
  { section: LCM, key: 'ring', flag: 'lcm-ring', env: 'XPL_LCM_RING', type: 'string', default: '3', help: `torch engine: temporal ring frames (the latest); sink + ring + 1 ≤ ${LCM_MAX_WINDOW}` },
  { section: LCM, key: 'imageSize', flag: 'lcm-image-size', env: 'XPL_LCM_IMAGE_SIZE', type: 'string', default: '512', help: 'torch engine: image size of --weights random|FILE (tiny is 64)' },
  { section: LCM, key: 'cudaGraphs', flag: 'lcm-no-cuda-graphs', env: 'XPL_LCM_NO_CUDA_GRAPHS', type: 'boolean', default: false, negate: true, help: 'torch engine: run eagerly instead of replaying CUDA graphs' },
  { section: LCM, key: 'compile', flag: 'lcm-compile', env: 'XPL_LCM_COMPILE', type: 'boolean', default: false, help: 'torch engine: torch.compile the ResBlocks and feed-forwards (torch >= 2; slow first frames)' },
  { section: LCM, key: 'batchWait', flag: 'lcm-batch-wait', env: 'XPL_LCM_BATCH_WAIT', type: 'string', default: '0', help: "torch engine: ms to wait for the other sessions' frames so they share one batched call" },
  { section: LCM, key: 'hangTimeout', flag: 'lcm-hang-timeout', env: 'XPL_LCM_HANG_TIMEOUT', type: 'string', default: '4', help: 'torch engine: seconds one batch (not counting time it waits for a CPU) or an unanswered heartbeat may take before the worker counts as hung and is restarted; keep it under --render-timeout so a hung worker is replaced before sessions time out (raise both for the full model on a CPU)' },
  { section: LCM, key: 'startTimeout', flag: 'lcm-start-timeout', env: 'XPL_LCM_START_TIMEOUT', type: 'string', default: '900', help: 'torch engine: seconds the worker may take to load the model' },
];

export function helpText(): string {
  const lines = ['Usage: npm start -- [options]', '', 'Options (flag / environment variable / default):'];
  const line = (o: OptionSpec): void => {
    const flag = o.type === 'boolean' ? `--${o.flag}` : `--${o.flag} VALUE`;
    const def = o.default === undefined || o.default === false ? '' : ` (default ${o.default})`;
    lines.push(`  ${flag.padEnd(30)} ${o.help}${def}${o.env ? ` [${o.env}]` : ''}`);
  };
  OPTIONS.forEach(line);
  lines.push(`  ${'--help'.padEnd(30)} show this help`, '', 'xportrait-lcm (docs/MODELS.md):');
  LCM_OPTIONS.forEach(line);
  return lines.join('\n');
}

export type ParseResult = { help: true } | { help: false; config: Config };

/** Builds the config from argv and env. Throws XplError('bad_config') with every problem listed. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ParseResult {
  const all = [...OPTIONS, ...LCM_OPTIONS];
  const parseOptions: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { help: { type: 'boolean' } };
  for (const o of all) parseOptions[o.flag] = { type: o.type, ...(o.list ? { multiple: true } : {}) };
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args: argv, options: parseOptions, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new XplError('bad_config', `${(err as Error).message}\n\n${helpText()}`);
  }
  if (values.help) return { help: true };

  const raw: Record<string, unknown> = {};
  const lcm: Record<string, unknown> = {};
  for (const o of all) {
    let v: unknown = values[o.flag];
    if (v === undefined && o.env && env[o.env] !== undefined && env[o.env] !== '') {
      const e = env[o.env] as string;
      v = o.type === 'boolean' ? /^(1|true|yes)$/i.test(e) : o.list ? e.split(',').map((s) => s.trim()).filter(Boolean) : e;
    }
    if (v === undefined) v = o.list ? [] : o.default;
    if (o.negate && typeof v === 'boolean') v = !v;
    if (v !== undefined) (o.section ? lcm : raw)[o.key] = v;
  }
  raw.lcm = lcm;
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const [head, sub] = i.path;
      const spec = head === 'lcm' ? LCM_OPTIONS.find((o) => o.key === sub) : OPTIONS.find((o) => o.key === head);
      return `  --${spec?.flag ?? i.path.map(String).join('.')}: ${i.message}`;
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
  const l = config.lcm;
  const lcmMissing = config.renderer === 'xportrait-lcm' ? lcmUnavailable(config) : undefined;
  if (lcmMissing) throw new XplError('bad_config', lcmMissing);
  if (l.engine === 'torch' && !l.weights) {
    throw new XplError('bad_config', '--engine torch needs --weights: a checkpoint FILE, random or tiny (see docs/MODELS.md)');
  }
  if (l.sink + l.ring + 1 > LCM_MAX_WINDOW) {
    throw new XplError('bad_config', `--lcm-sink + --lcm-ring + 1 = ${l.sink + l.ring + 1}: the temporal window may hold at most ${LCM_MAX_WINDOW} positions (what the motion modules were trained on)`);
  }
  if (l.engine === 'torch' && l.weights !== 'tiny' && l.weights !== 'random' && !l.context) {
    throw new XplError('bad_config', '--weights FILE needs --lcm-context FILE (the empty-prompt CLIP embedding, see docs/MODELS.md)');
  }
  if (l.warmup && (l.warmup < 2 || l.warmup > l.sink + l.ring + 1)) {
    throw new XplError('bad_config', `--lcm-warmup ${l.warmup}: a warm-up window holds 2..${l.sink + l.ring + 1} frames (sink + ring + 1), or 0 for none`);
  }
  if (l.engine === 'onnx' && l.cfg > 1 && l.streamBatch) {
    throw new XplError('bad_config', '--lcm-cfg with --lcm-stream-batch needs --engine torch (the onnx engine runs CFG with stream batch off)');
  }
  if (l.lora && (l.engine !== 'torch' || l.weights === 'tiny' || l.weights === 'random')) {
    throw new XplError('bad_config', '--lcm-lora goes with --engine torch --weights FILE (an ONNX pack has its LoRA fused at export)');
  }
  if (config.redis && !config.nodeId) {
    throw new XplError('bad_config', 'a node sharing state through --redis needs a unique name: pass --node-id NAME (see docs/SCALING.md)');
  }
  return { help: false, config };
}

/** The xportrait-lcm settings a plain start gets (renderers created outside the server start from these). */
export function lcmDefaults(): LcmSettings {
  return (loadConfig([], {}) as { config: Config }).config.lcm;
}

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}
