/**
 * The control socket's messages, one zod schema per operation. Every request is
 * `{ id, op, ...arguments }`; unknown fields are rejected (strict objects), so a typo never
 * silently does nothing. Replies are `{ id, ok: true, result }` or
 * `{ id, ok: false, error: { code, message } }`; events are `{ event, ... }`.
 */
import { z } from 'zod';
import { maxFps, outputDimension, sessionParams, rendererName, tokenTtl } from '../schemas.ts';

export { describeIssues } from '../schemas.ts';

export const PROTOCOL_VERSION = 1;
/** Stats subscription rate bounds, Hz. */
export const MIN_STATS_HZ = 0.2;
export const MAX_STATS_HZ = 10;

const id = z.union([z.string().min(1).max(64), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)]);
const sessionId = z.string().min(1).max(64);
const portraitId = z.string().min(1).max(64);

const req = <Op extends string, S extends z.ZodRawShape>(op: Op, shape: S) => z.strictObject({ id, op: z.literal(op), ...shape });

export const requestSchemas = {
  auth: req('auth', { key: z.string().min(1).max(1024) }),
  ping: req('ping', {}),
  'session.list': req('session.list', {}),
  'session.get': req('session.get', { session: sessionId }),
  'session.close': req('session.close', { session: sessionId }),
  'session.setPortrait': req('session.setPortrait', { session: sessionId, portrait: portraitId }),
  'session.setRenderer': req('session.setRenderer', { session: sessionId, renderer: rendererName }),
  'session.setParams': req('session.setParams', { session: sessionId, params: sessionParams }),
  'session.setOutput': req('session.setOutput', {
    session: sessionId,
    width: outputDimension.optional(),
    height: outputDimension.optional(),
    maxFps: maxFps.optional(),
  }),
  'session.recalibrate': req('session.recalibrate', { session: sessionId }),
  'session.pause': req('session.pause', { session: sessionId }),
  'session.resume': req('session.resume', { session: sessionId }),
  'session.createToken': req('session.createToken', { session: sessionId, ttlSeconds: tokenTtl.optional() }),
  'portrait.upload': req('portrait.upload', {
    /** Image bytes: binary in msgpack, base64 in JSON (msgpack may send base64 too). */
    data: z.union([z.instanceof(Uint8Array), z.string().min(1)]),
  }),
  'portrait.list': req('portrait.list', {}),
  'portrait.delete': req('portrait.delete', { portrait: portraitId }),
  'stats.subscribe': req('stats.subscribe', { session: sessionId, hz: z.number().min(MIN_STATS_HZ).max(MAX_STATS_HZ).default(1) }),
  'stats.unsubscribe': req('stats.unsubscribe', { session: sessionId }),
} as const;

export type Op = keyof typeof requestSchemas;
export const OPS = Object.keys(requestSchemas) as Op[];
export type Request = { [K in Op]: z.output<(typeof requestSchemas)[K]> }[Op];
export type RequestOf<K extends Op> = z.output<(typeof requestSchemas)[K]>;
