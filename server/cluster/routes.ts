/**
 * The nodes' HTTP routes, under /v1 (so behind the API key):
 *
 *   GET  /v1/nodes                 every live node (with --redis; else this one)
 *   GET  /v1/nodes/NODE            that node's record
 *   POST /v1/nodes/NODE/drain      drain it: body empty or {"timeoutSeconds": N} (default --drain-timeout) → 202
 *   GET  /v1/nodes/NODE/metrics    its Prometheus text (the load tester reads every node through the front this way)
 *
 * The load balancer routes /v1/nodes/NODE/… to NODE, as it routes a session's requests by the
 * node in its id; a node asked about another answers 404 naming itself.
 */
import type { MiddlewareHandler } from 'hono';
import type { Hono } from 'hono';
import { z } from 'zod';
import { XplError } from '../errors.ts';
import { resource, type AppEnv, type ResourceDeps } from '../http/resource.ts';
import { registry } from '../metrics.ts';
import { parseOrThrow } from '../schemas.ts';
import type { ClusterMember } from './member.ts';

const drainRequest = z.strictObject({ timeoutSeconds: z.number().min(0).max(7 * 24 * 3600).optional() });

/** `X-Xpl-Node: NODE` on every answer of a named node: which node answered, behind the load balancer. */
export function nodeHeader(node: string): MiddlewareHandler {
  return async (c, next) => {
    await next();
    c.header('X-Xpl-Node', node);
  };
}

/** The node routes, declared as resources: admins only (the API key), with body limits and OPTIONS. */
export function mountNodeRoutes(app: Hono<AppEnv>, deps: ResourceDeps, member: ClusterMember): void {
  resource(app, '/v1/nodes', deps, { methods: { GET: { handler: async (c) => c.json({ nodes: await member.nodes() }) } } });
  resource(app, '/v1/nodes/:node', deps, {
    methods: {
      GET: {
        handler: (c) => {
          member.assertSelf(c.req.param('node')!);
          return c.json({ ...member.record(), seenAt: new Date().toISOString() });
        },
      },
    },
  });
  resource(app, '/v1/nodes/:node/drain', deps, {
    acceptPost: 'application/json',
    methods: {
      POST: {
        handler: async (c) => {
          member.assertSelf(c.req.param('node')!);
          const text = await c.req.text();
          let body: unknown = {};
          if (text.trim()) {
            try {
              body = JSON.parse(text);
            } catch {
              throw new XplError('bad_request', 'the body must be JSON: {"timeoutSeconds": N} (or empty)');
            }
          }
          const { timeoutSeconds } = parseOrThrow(drainRequest, body, 'invalid drain request');
          void member.drain.start('drain requested over HTTP', timeoutSeconds);
          return c.json(member.drain.report(), 202);
        },
      },
    },
  });
  resource(app, '/v1/nodes/:node/metrics', deps, {
    methods: {
      GET: {
        handler: async (c) => {
          member.assertSelf(c.req.param('node')!);
          c.header('Content-Type', registry.contentType);
          return c.body(await registry.metrics());
        },
      },
    },
  });
}
