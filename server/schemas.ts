/**
 * One zod schema per validation rule, shared by everything that accepts the value: the config
 * (flags and environment), the HTTP routes, the control socket and the session itself. A rule
 * changed here changes everywhere, and every entry point words its errors the same way.
 */
import { z } from 'zod';
import { XplError } from './errors.ts';
import { FRAMINGS } from './renderers/types.ts';

export const RENDERER_NAMES = ['passthrough', 'mesh-warp', 'xportrait-lcm'] as const;
export type RendererName = (typeof RENDERER_NAMES)[number];

export const rendererName = z.enum(RENDERER_NAMES);

/** An output side: even (4:2:0 chroma), 64..1920 pixels. */
export const outputDimension = z
  .number()
  .int()
  .min(64, 'width and height must be 64..1920')
  .max(1920, 'width and height must be 64..1920')
  .multipleOf(2, 'width and height must be even');

/** Output frame-rate cap. */
export const maxFps = z.number().int().min(1).max(60);

export const outputSettings = z.strictObject({ width: outputDimension, height: outputDimension, maxFps });
export type OutputSettings = z.infer<typeof outputSettings>;

/** `WIDTHxHEIGHT` as the config takes an output size. */
export const outputSizeText = z
  .string()
  .regex(/^\d+x\d+$/, 'expected WIDTHxHEIGHT, e.g. 512x512')
  .transform((s) => {
    const [width, height] = s.split('x').map(Number);
    return { width, height };
  })
  .pipe(z.strictObject({ width: outputDimension, height: outputDimension }));

export const background = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('keep') }),
  z.strictObject({ mode: z.literal('colour'), colour: z.string().regex(/^#[0-9a-fA-F]{6}$/, 'colour must be "#rrggbb"') }),
  z.strictObject({ mode: z.literal('blur'), radius: z.number().int().min(1).max(64).default(12) }),
]);

/** What of the portrait the output shows (mesh-warp), and how much it is magnified. */
export const framing = z.enum(FRAMINGS);
export const zoom = z.number().min(0.5).max(3);

/** A change of a session's parameters (its look, and whether its audio comes back): at least one of them. */
export const sessionParams = z
  .strictObject({
    expressionGain: z.number().min(0).max(3),
    poseGain: z.number().min(0).max(3),
    smoothing: z.number().min(0).max(1),
    gaze: z.boolean(),
    framing,
    zoom,
    background,
    /** Relay the caller's audio back and to viewers. */
    audio: z.boolean(),
  })
  .partial()
  .refine((p) => Object.keys(p).length > 0, 'params must set at least one of expressionGain, poseGain, smoothing, gaze, framing, zoom, background, audio');

/**
 * A node's name: it prefixes the ids of its sessions ("NODE.uuid", ≤ 64 characters with the
 * 36 of the uuid) and names the node's server in the load balancer, so it stays a DNS label.
 */
export const nodeId = z
  .string()
  .regex(/^[a-z0-9](?:[a-z0-9-]{0,25}[a-z0-9])?$/, 'a node id is 1–27 characters of a-z, 0-9 and "-", not starting or ending with "-"');

/** Lifetime of a viewer token, seconds (at most a week). */
export const MAX_TOKEN_TTL_S = 7 * 24 * 3600;
export const tokenTtl = z.number().int().min(1).max(MAX_TOKEN_TTL_S);

/** A readable one-line summary of a zod error: "params.smoothing: Too big: expected number to be <=1; ...". */
export function describeIssues(err: z.ZodError): string {
  return err.issues
    .slice(0, 5)
    .map((i) => {
      const path = i.path.map(String).join('.');
      return `${path ? `${path}: ` : ''}${i.message}`;
    })
    .join('; ');
}

/** Parses `value` with `schema`, or throws a bad_request XplError naming what is wrong. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new XplError('bad_request', `${what}: ${describeIssues(r.error)}`);
  return r.data;
}

export function checkOutput(o: OutputSettings): OutputSettings {
  return parseOrThrow(outputSettings, o, 'invalid output');
}

type LcmServerSettings = { pack?: string; lcm: { engine: 'onnx' | 'torch' } };

/** Why this server cannot run xportrait-lcm, or undefined when it can: the onnx engine needs a model pack. */
export function lcmUnavailable(config: LcmServerSettings): string | undefined {
  if (config.lcm.engine === 'onnx' && !config.pack) {
    return 'the xportrait-lcm renderer needs a model pack: start the server with --pack DIR, or --engine torch --weights FILE|random|tiny (see docs/MODELS.md)';
  }
  return undefined;
}

/** A renderer name a session may switch to on this server. */
export function checkRenderer(name: unknown, config: LcmServerSettings): RendererName {
  const r = rendererName.safeParse(name);
  if (!r.success) throw new XplError('renderer_unavailable', `unknown renderer "${String(name)}": choose one of ${RENDERER_NAMES.join(', ')}`);
  const why = r.data === 'xportrait-lcm' ? lcmUnavailable(config) : undefined;
  if (why) throw new XplError('renderer_unavailable', why);
  return r.data;
}
