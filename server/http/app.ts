/**
 * The HTTP surface (hono): the Host guard and CORS in front, then health, metrics, the `/v1`
 * resources (routes.ts), the OBS view page and the static web app. Every failure leaves as JSON
 * `{ error: { code, message } }` with the status of its XplError code.
 */
import { fileURLToPath } from 'node:url';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import type { Config } from '../config.ts';
import { XplError, asXplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { PortraitStore } from '../portraits/store.ts';
import { lastEventLoopLagMs, registry } from '../metrics.ts';
import type { SessionManager } from '../session/manager.ts';
import { bearerToken, keyMatches } from './auth.ts';
import { cors, hostGuard } from './edge.ts';
import type { PublishRegistry } from './publish.ts';
import { principalOf, resource, type AppEnv } from './resource.ts';
import { registerRoutes } from './routes.ts';
import type { ClusterMember } from '../cluster/member.ts';
import { mountNodeRoutes, nodeHeader } from '../cluster/routes.ts';
import type { Tokens } from './tokens.ts';

export interface AppDeps {
  config: Config;
  log: Logger;
  sessions: SessionManager;
  portraits: PortraitStore;
  tokens: Tokens;
  publishers: PublishRegistry;
  startedAt: number;
  /** This server as a node: name, drain, shared directory (docs/SCALING.md). */
  cluster: ClusterMember;
}

const CLIENT_ROOT = fileURLToPath(new URL('../../client/', import.meta.url));
/** @msgpack/msgpack's ES module build, served to browsers for the SDK's msgpack mode. */
const MSGPACK_ROOT = fileURLToPath(new URL('../../node_modules/@msgpack/msgpack/dist.esm/', import.meta.url));
/** Above this event-loop delay (p99 over the last second) the server reports itself degraded. */
const EVENT_LOOP_LAG_DEGRADED_MS = 100;

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { config, sessions, log, tokens, publishers } = deps;
  const app = new Hono<AppEnv>();

  app.onError((err, c) => {
    const e = asXplError(err);
    if (e.status >= 500) log.error({ err: e.message, code: e.code, path: c.req.path }, 'request failed');
    if (e.retryAfter) c.header('Retry-After', String(e.retryAfter));
    if (e.status === 401) c.header('WWW-Authenticate', 'Bearer realm="xportrait-live"');
    // A body refused before it was read is not read afterwards either: the connection is not reused.
    if (e.status === 413) c.header('Connection', 'close');
    return c.json(e.toJSON(), e.status as 400);
  });
  app.notFound((c) => c.json(new XplError('not_found', `no route ${c.req.method} ${c.req.path}`).toJSON(), 404));

  if (config.nodeId) app.use('*', nodeHeader(config.nodeId));
  app.use('*', hostGuard(config));
  app.use('*', cors(config));
  app.use('*', async (c, next) => {
    await next();
    c.header('X-Content-Type-Options', 'nosniff');
    if (c.req.path.startsWith('/v1/')) c.header('Cache-Control', 'no-store');
  });

  resource(app, '/healthz', deps, {
    methods: {
      GET: {
        allow: 'public',
        handler: (c) => {
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
        },
      },
    },
  });

  // With --metrics-token, a scraper presents that token (or the API key); without it /metrics is open.
  resource(app, '/metrics', deps, {
    methods: {
      GET: {
        allow: 'public',
        handler: async (c) => {
          if (config.metricsToken) {
            const bearer = bearerToken(c.req.header('authorization'));
            const ok = keyMatches(bearer, config.metricsToken) || (config.apiKey !== undefined && keyMatches(bearer, config.apiKey));
            if (!ok) throw new XplError('unauthorized', 'this server requires "Authorization: Bearer METRICS_TOKEN" on /metrics');
          }
          c.header('Content-Type', registry.contentType);
          return c.body(await registry.metrics());
        },
      },
    },
  });

  registerRoutes(app, deps);
  mountNodeRoutes(app, deps, deps.cluster);

  app.get('/v1/control', (c) => c.json({ error: { code: 'bad_request', message: 'this is a WebSocket endpoint: send an Upgrade: websocket request' } }, 426));

  // The OBS page: a bare <video> playing a session's (or a publisher's) output over WHEP. With an
  // API key configured it needs a viewer token of that session or publisher in the query.
  app.get('/view/:id', async (c) => {
    const id = c.req.param('id');
    if (config.apiKey) {
      const who = principalOf(c, { config, tokens });
      if (who.kind === 'anonymous') throw new XplError('unauthorized', 'this view needs ?token=… (mint one with POST /v1/sessions/ID/tokens or /v1/publish-tokens)');
      const sid = publishers.resolve(id);
      const mine = who.kind === 'viewer' && (who.subject === id || (sid !== undefined && who.subject === publishers.publishIdOf(sid)));
      if (who.kind !== 'admin' && !mine) throw new XplError('forbidden', 'this viewer token is for another session');
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
