/**
 * One HTTP resource (a path) declared with everything the WHIP/WHEP drafts ask of it, so that no
 * route can forget any of it: per-method handlers, who may call each (checked before the body is
 * read), a body limit per method (413 as soon as Content-Length, or the bytes read so far, exceed
 * it — never after reading the whole body), `OPTIONS` answering 200 with `Allow`, `Accept-Post` /
 * `Accept-Patch`, the CORS preflight headers and, for an authenticated caller, the ICE servers as
 * `Link` headers; any other method answers 405 with `Allow`.
 *
 * @example
 * resource(app, '/v1/portraits', deps, {
 *   acceptPost: 'image/jpeg, image/png, image/webp',
 *   methods: { GET: { handler: (c) => c.json(list()) }, POST: { handler: upload, maxBody: 10 << 20 } },
 * });
 */
import type { Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Config } from '../config.ts';
import { XplError } from '../errors.ts';
import { authenticate, refusal, type Principal } from './auth.ts';
import { iceServerLinks, preflightHeaders } from './edge.ts';
import type { Tokens } from './tokens.ts';

export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
/** The app's context: each resource handler sees the caller's principal. */
export type AppEnv = { Variables: { principal: Principal } };
export type AppContext = Context<AppEnv>;

export interface MethodSpec {
  handler: (c: AppContext, who: Principal) => Response | Promise<Response>;
  /**
   * Who may call it (default: admins, i.e. the API key, or anyone on a keyless server); a string
   * refuses with that reason (403). 'public' skips authentication: the handler checks what it needs.
   */
  allow?: ((who: Principal, c: AppContext) => boolean | string) | 'public';
  /** Largest request body in bytes (default 1 KiB). */
  maxBody?: number;
}

export interface ResourceSpec {
  methods: Partial<Record<Method, MethodSpec>>;
  /** Media types POST accepts (Accept-Post on OPTIONS). */
  acceptPost?: string;
  /** Media types PATCH accepts (Accept-Patch on OPTIONS). */
  acceptPatch?: string;
  /** Send the ICE servers as Link headers on an authenticated OPTIONS (a WHIP or WHEP endpoint). */
  iceLinks?: boolean;
}

export interface ResourceDeps {
  config: Config;
  tokens: Tokens;
}

const DEFAULT_MAX_BODY = 1024;
export const admins = (who: Principal) => who.kind === 'admin';

/** The caller's principal, from the request's credentials (see auth.ts). */
export function principalOf(c: Context<AppEnv>, deps: ResourceDeps): Principal {
  return authenticate(
    { authorization: c.req.header('authorization'), queryToken: c.req.query('token'), queryKey: c.req.query('key') },
    deps.config.apiKey,
    deps.tokens,
  );
}

export function resource(app: Hono<AppEnv>, path: string, deps: ResourceDeps, spec: ResourceSpec): void {
  const methods = Object.keys(spec.methods) as Method[];
  const allowHeader = ['OPTIONS', ...methods, ...(methods.includes('GET') ? ['HEAD'] : [])].join(', ');

  for (const method of methods) {
    const m = spec.methods[method]!;
    const maxBody = m.maxBody ?? DEFAULT_MAX_BODY;
    app.on(
      method,
      path,
      async (c, next) => {
        if (m.allow === 'public') {
          c.set('principal', { kind: 'anonymous' });
          return next();
        }
        const who = principalOf(c, deps);
        const verdict = (m.allow ?? admins)(who, c);
        if (verdict === false) throw refusal(who, `${method} ${c.req.path}`);
        if (typeof verdict === 'string') throw who.kind === 'anonymous' ? refusal(who, '') : new XplError('forbidden', verdict);
        c.set('principal', who);
        await next();
      },
      bodyLimit({
        maxSize: maxBody,
        onError: () => {
          throw new XplError('too_large', `the request body is larger than ${maxBody} bytes, the limit of ${method} ${path}`);
        },
      }),
      (c) => m.handler(c, c.get('principal')),
    );
  }

  app.options(path, (c) => {
    // A preflight carries no credentials; an OPTIONS that does (RFC 9725 §4.6: a client may ask for
    // the ICE servers before it offers) gets them as Link headers, if its credentials are good.
    let who: Principal | undefined;
    try {
      who = principalOf(c, deps);
    } catch {
      who = undefined;
    }
    const headers = new Headers({ Allow: allowHeader, ...preflightHeaders(c.req.header('origin'), ['OPTIONS', ...methods], deps.config) });
    if (spec.acceptPost) headers.set('Accept-Post', spec.acceptPost);
    if (spec.acceptPatch) headers.set('Accept-Patch', spec.acceptPatch);
    const authenticated = who !== undefined && who.kind !== 'anonymous' && !c.req.header('access-control-request-method');
    if (spec.iceLinks && authenticated) for (const l of iceServerLinks(deps.config.iceServers)) headers.append('Link', l);
    return new Response(null, { status: 200, headers });
  });

  app.all(path, (c) => {
    c.header('Allow', allowHeader);
    return c.json(new XplError('method_not_allowed', `${c.req.method} is not supported on ${c.req.path}: use ${allowHeader}`).toJSON(), 405);
  });
}
