/**
 * The HTTP surface (hono): health, portraits, WHIP-style sessions, the static web app. Every
 * failure leaves as JSON `{ error: { code, message } }` with the status of its XplError code.
 */
import { fileURLToPath } from 'node:url';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import type { Config } from '../config.ts';
import { checkRenderer, parseOrThrow, tokenTtl } from '../schemas.ts';
import { XplError, asXplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { DEFAULT_PORTRAIT_ID, describePortrait, type PortraitStore } from '../portraits/store.ts';
import { lastEventLoopLagMs, registry } from '../metrics.ts';
import type { SessionManager } from '../session/manager.ts';
import type { ClusterMember } from '../cluster/member.ts';
import { mountNodeRoutes, nodeHeader } from '../cluster/routes.ts';
import { bearerToken, keyMatches, requireApiKey } from './auth.ts';
import { DEFAULT_TOKEN_TTL_S, type ViewerTokens } from './tokens.ts';

export interface AppDeps {
  config: Config;
  log: Logger;
  sessions: SessionManager;
  portraits: PortraitStore;
  tokens: ViewerTokens;
  startedAt: number;
  /** This server as a node: name, drain, shared directory (docs/SCALING.md). */
  cluster: ClusterMember;
}

/** The body of a token request: empty, or {"ttlSeconds": N}. */
const tokenRequest = z.strictObject({ ttlSeconds: tokenTtl.optional() });

const CLIENT_ROOT = fileURLToPath(new URL('../../client/', import.meta.url));
/** @msgpack/msgpack's ES module build, served to browsers for the SDK's msgpack mode. */
const MSGPACK_ROOT = fileURLToPath(new URL('../../node_modules/@msgpack/msgpack/dist.esm/', import.meta.url));
/** Above this event-loop delay (p99 over the last second) the server reports itself degraded. */
const EVENT_LOOP_LAG_DEGRADED_MS = 100;
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp']);

export function createApp(deps: AppDeps): Hono {
  const { config, sessions, portraits, log, tokens } = deps;
  const app = new Hono();
  if (config.nodeId) app.use('*', nodeHeader(config.nodeId));

  app.onError((err, c) => {
    const e = asXplError(err);
    if (e.status >= 500) log.error({ err: e.message, code: e.code, path: c.req.path }, 'request failed');
    if (e.retryAfter) c.header('Retry-After', String(e.retryAfter));
    return c.json(e.toJSON(), e.status as 400);
  });
  app.notFound((c) => c.json(new XplError('not_found', `no route ${c.req.method} ${c.req.path}`).toJSON(), 404));

  app.get('/healthz', (c) => {
    const reasons: string[] = [];
    const lag = lastEventLoopLagMs();
    if (lag > EVENT_LOOP_LAG_DEGRADED_MS) reasons.push(`event-loop lag p99 ${lag.toFixed(0)} ms`);
    const starved = sessions.starved();
    if (starved.length) reasons.push(`${starved.length} session(s) with a starved frame loop`);
    const { reasons: nodeReasons, ...node } = deps.cluster.health();
    reasons.push(...nodeReasons);
    return c.json({
      // Draining still answers 200: the load balancer must keep routing the live sessions' requests here.
      status: node.state !== 'serving' ? node.state : reasons.length ? 'degraded' : 'ok',
      ...(reasons.length ? { reasons } : {}),
      ...node,
      uptimeS: Math.round((Date.now() - deps.startedAt) / 1000),
      sessions: sessions.size,
      maxSessions: config.maxSessions,
      defaultRenderer: config.renderer,
      eventLoopLagMs: Math.round(lag * 10) / 10,
      capacity: sessions.capacityReport(),
    });
  });

  app.get('/metrics', async (c) => {
    c.header('Content-Type', registry.contentType);
    return c.body(await registry.metrics());
  });

  app.use('/v1/*', requireApiKey(config.apiKey, tokens));
  app.use('/v1/*', async (c, next) => {
    await next();
    c.header('Cache-Control', 'no-store');
  });
  mountNodeRoutes(app, deps.cluster);

  app.post(
    '/v1/portraits',
    bodyLimit({
      maxSize: config.maxPortraitBytes,
      onError: () => {
        throw new XplError('too_large', `the portrait is larger than ${config.maxPortraitBytes} bytes`);
      },
    }),
    async (c) => {
      const type = (c.req.header('content-type') ?? '').split(';')[0].trim().toLowerCase();
      if (!IMAGE_TYPES.has(type)) {
        throw new XplError('unsupported_media_type', `Content-Type must be image/jpeg, image/png or image/webp (got "${type || 'none'}")`);
      }
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      if (bytes.length === 0) throw new XplError('bad_request', 'the request body is empty: send the image bytes');
      const p = await portraits.add(bytes);
      log.info({ portrait: p.id, width: p.width, height: p.height }, 'portrait added');
      return c.json(describePortrait(p), 201);
    },
  );
  app.get('/v1/portraits', async (c) => c.json(await portraits.list()));
  app.get('/v1/portraits/:id', async (c) => c.json(describePortrait(await portraits.get(c.req.param('id')))));
  app.delete('/v1/portraits/:id', async (c) => {
    await portraits.delete(c.req.param('id'));
    return c.body(null, 204);
  });

  app.post('/v1/sessions', async (c) => {
    const type = (c.req.header('content-type') ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/sdp') {
      throw new XplError('unsupported_media_type', `Content-Type must be application/sdp (got "${type || 'none'}")`);
    }
    const asked = c.req.query('renderer');
    const renderer = asked === undefined || asked === '' ? config.renderer : checkRenderer(asked, config);
    const portraitId = c.req.query('portrait') ?? DEFAULT_PORTRAIT_ID;
    const portrait = await portraits.get(portraitId);
    const offerSdp = await c.req.text();
    const s = await sessions.create({ offerSdp, renderer, portraitId, portrait: portrait.image });
    c.header('Location', `/v1/sessions/${s.id}`);
    c.header('Content-Type', 'application/sdp');
    c.header('ETag', `"${s.id}"`);
    return c.body(s.answerSdp, 201);
  });
  app.get('/v1/sessions', async (c) => c.json(await deps.cluster.listSessions()));
  app.get('/v1/sessions/:id', (c) => c.json(sessions.get(c.req.param('id')).info()));
  app.patch('/v1/sessions/:id', async (c) => {
    const s = sessions.get(c.req.param('id'));
    const type = (c.req.header('content-type') ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/trickle-ice-sdpfrag') {
      throw new XplError('unsupported_media_type', 'Content-Type must be application/trickle-ice-sdpfrag');
    }
    await s.addRemoteCandidates(await c.req.text());
    return c.body(null, 204);
  });
  app.delete('/v1/sessions/:id', async (c) => {
    await sessions.close(c.req.param('id'));
    return c.body(null, 204);
  });

  // WHEP viewers (draft-ietf-wish-whep): recvonly offer in, answer out; the session's one encoder feeds them all.
  app.post('/v1/sessions/:id/whep', async (c) => {
    const s = sessions.get(c.req.param('id'));
    const type = (c.req.header('content-type') ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/sdp') {
      throw new XplError('unsupported_media_type', `Content-Type must be application/sdp (got "${type || 'none'}")`);
    }
    const v = await s.addViewer(await c.req.text());
    c.header('Location', `/v1/sessions/${s.id}/whep/${v.id}`);
    c.header('Content-Type', 'application/sdp');
    c.header('ETag', `"${v.id}"`);
    return c.body(v.answerSdp, 201);
  });
  app.patch('/v1/sessions/:id/whep/:vid', (c) => {
    sessions.get(c.req.param('id'));
    c.header('Allow', 'DELETE');
    return c.json({ error: { code: 'bad_request', message: 'trickle ICE is not supported for viewers: the answer already carries every candidate' } }, 405);
  });
  app.delete('/v1/sessions/:id/whep/:vid', async (c) => {
    await sessions.get(c.req.param('id')).removeViewer(c.req.param('vid'));
    return c.body(null, 204);
  });

  // Viewer tokens: scoped to one session, expiring, HMAC-signed (tokens.ts).
  app.post('/v1/sessions/:id/tokens', async (c) => {
    const s = sessions.get(c.req.param('id'));
    const text = await c.req.text();
    let body: unknown = {};
    if (text.trim()) {
      try {
        body = JSON.parse(text);
      } catch {
        throw new XplError('bad_request', 'the body must be JSON: {"ttlSeconds": N} (or empty)');
      }
    }
    const ttl = parseOrThrow(tokenRequest, body, 'invalid token request').ttlSeconds ?? DEFAULT_TOKEN_TTL_S;
    const t = tokens.mint(s.id, ttl);
    const q = `token=${encodeURIComponent(t.token)}`;
    return c.json({ ...t, session: s.id, whepUrl: `/v1/sessions/${s.id}/whep`, viewUrl: `/view/${s.id}?${q}` }, 201);
  });

  app.get('/v1/control', (c) => c.json({ error: { code: 'bad_request', message: 'this is a WebSocket endpoint: send an Upgrade: websocket request' } }, 426));

  // The OBS page: a bare <video> playing the session's output over WHEP. With an API key
  // configured it needs a viewer token of that session (or the key) in the query.
  app.get('/view/:id', async (c) => {
    const id = c.req.param('id');
    if (config.apiKey) {
      const token = c.req.query('token');
      const key = c.req.query('key') ?? bearerToken(c.req.header('authorization'));
      if (!(key && keyMatches(key, config.apiKey))) {
        if (!token) throw new XplError('unauthorized', 'this view needs ?token=… (mint one with POST /v1/sessions/ID/tokens)');
        if (tokens.verify(token).sessionId !== id) throw new XplError('forbidden', 'this viewer token is for another session');
      }
    }
    c.header('Cache-Control', 'no-store');
    c.header('Referrer-Policy', 'no-referrer');
    return serveStatic({ root: CLIENT_ROOT, path: 'view.html' })(c, async () => {});
  });
  app.get('/vendor/msgpack/*', serveStatic({ root: MSGPACK_ROOT, rewriteRequestPath: (p) => p.replace(/^\/vendor\/msgpack/, '') }));

  app.get('/', serveStatic({ root: CLIENT_ROOT, path: 'index.html' }));
  app.get('/*', serveStatic({ root: CLIENT_ROOT }));
  return app;
}
