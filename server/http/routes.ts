/**
 * The `/v1` resources: portraits, WHIP sessions (RFC 9725), WHEP viewers (draft-ietf-wish-whep),
 * viewer and publish tokens, ICE servers. Each is declared once with resource() (methods, who may
 * call them, body limits, OPTIONS, 405).
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import type { Config } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { DEFAULT_PORTRAIT_ID, describePortrait, type PortraitStore } from '../portraits/store.ts';
import { MAX_SDP_BYTES } from '../rtc/sdp.ts';
import type { SessionManager } from '../session/manager.ts';
import type { Session } from '../session/session.ts';
import type { Principal } from './auth.ts';
import { iceServerLinks } from './edge.ts';
import type { ClusterMember } from '../cluster/member.ts';
import type { PublishRegistry } from './publish.ts';
import { resource, type AppContext, type AppEnv } from './resource.ts';
import { DEFAULT_TOKEN_TTL_S, type Tokens } from './tokens.ts';
import { checkRenderer, parseOrThrow, tokenTtl } from '../schemas.ts';

/** The body of a token request: empty, or {"ttlSeconds": N}. */
const tokenRequest = z.strictObject({ ttlSeconds: tokenTtl.optional() });

export interface RouteDeps {
  config: Config;
  log: Logger;
  sessions: SessionManager;
  portraits: PortraitStore;
  tokens: Tokens;
  publishers: PublishRegistry;
  /** This server as a node: lists the sessions of every node when they share a Redis. */
  cluster: ClusterMember;
}

const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp'];
const TRICKLE_TYPE = 'application/trickle-ice-sdpfrag';
const MAX_TRICKLE_BYTES = 16 * 1024;
const MAX_JSON_BYTES = 4 * 1024;

const contentType = (c: AppContext) => (c.req.header('content-type') ?? '').split(';')[0].trim().toLowerCase();

function requireType(c: AppContext, ...types: string[]): void {
  const type = contentType(c);
  if (!types.includes(type)) throw new XplError('unsupported_media_type', `Content-Type must be ${types.join(' or ')} (got "${type || 'none'}")`);
}

export function registerRoutes(app: Hono<AppEnv>, deps: RouteDeps): void {
  const { config, log, sessions, portraits, tokens, publishers } = deps;
  const links = iceServerLinks(config.iceServers);
  const withIceLinks = (c: AppContext) => {
    for (const l of links) c.header('Link', l, { append: true });
  };

  /** The session a path's :id names: a session id, or a publish id's live session. */
  const sessionAt = (c: AppContext): Session => {
    const id = c.req.param('id')!;
    const sid = publishers.resolve(id);
    if (!sid) throw new XplError('not_found', `publisher ${id} has no live session (yet)`);
    return sessions.get(sid);
  };
  /** Admins, and viewer tokens of this session (or of its publisher). */
  const viewerOfPath = (who: Principal, c: AppContext): boolean | string => {
    if (who.kind === 'admin') return true;
    if (who.kind !== 'viewer') return false;
    const id = c.req.param('id')!;
    const sid = publishers.resolve(id);
    return who.subject === id || (sid !== undefined && who.subject === publishers.publishIdOf(sid)) || 'this viewer token is for another session';
  };
  /** Admins, and the publish token that created this session. */
  const publisherOfPath = (who: Principal, c: AppContext): boolean | string => {
    if (who.kind === 'admin') return true;
    if (who.kind !== 'publisher') return false;
    return publishers.sessionOf(who.publishId) === c.req.param('id') || 'this publish token did not create this session';
  };
  const anyCredential = (who: Principal) => who.kind !== 'anonymous';
  const json = async (c: AppContext): Promise<Record<string, unknown>> => {
    const text = await c.req.text();
    if (!text.trim()) return {};
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new XplError('bad_request', 'the body must be JSON (or empty)');
    }
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new XplError('bad_request', 'the body must be a JSON object');
    return body as Record<string, unknown>;
  };
  const ttlOf = (body: Record<string, unknown>): number => parseOrThrow(tokenRequest, body, 'invalid token request').ttlSeconds ?? DEFAULT_TOKEN_TTL_S;

  resource(app, '/v1/portraits', deps, {
    acceptPost: IMAGE_TYPES.join(', '),
    methods: {
      GET: { handler: async (c) => c.json(await portraits.list()) },
      POST: {
        maxBody: config.maxPortraitBytes,
        handler: async (c) => {
          requireType(c, ...IMAGE_TYPES);
          const bytes = new Uint8Array(await c.req.arrayBuffer());
          if (bytes.length === 0) throw new XplError('bad_request', 'the request body is empty: send the image bytes');
          const p = await portraits.add(bytes);
          log.info({ portrait: p.id, width: p.width, height: p.height }, 'portrait added');
          return c.json(describePortrait(p), 201);
        },
      },
    },
  });
  resource(app, '/v1/portraits/:id', deps, {
    methods: {
      GET: { handler: async (c) => c.json(describePortrait(await portraits.get(c.req.param('id')!))) },
      DELETE: {
        handler: async (c) => {
          await portraits.delete(c.req.param('id')!);
          return c.body(null, 204);
        },
      },
    },
  });

  // WHIP endpoint. A publish token creates its one session (replacing the previous one).
  resource(app, '/v1/sessions', deps, {
    acceptPost: 'application/sdp',
    iceLinks: true,
    methods: {
      GET: { handler: async (c) => c.json(await deps.cluster.listSessions()) },
      POST: {
        maxBody: MAX_SDP_BYTES,
        allow: (who) => who.kind === 'admin' || who.kind === 'publisher',
        handler: async (c, who) => {
          requireType(c, 'application/sdp');
          const asked = c.req.query('renderer');
          const renderer = asked === undefined || asked === '' ? config.renderer : checkRenderer(asked, config);
          const audio = parseSwitch(c.req.query('audio'), 'audio');
          const portraitId = c.req.query('portrait') ?? DEFAULT_PORTRAIT_ID;
          const portrait = await portraits.get(portraitId);
          const offerSdp = await c.req.text();
          const create = () => sessions.create({ offerSdp, renderer, portraitId, portrait: portrait.image });
          const s = who.kind === 'publisher' ? await publishers.replace(who.publishId, create) : await create();
          if (audio === false) await s.setParams({ audio: false });
          c.header('Location', `/v1/sessions/${s.id}`);
          c.header('Content-Type', 'application/sdp');
          c.header('ETag', etagOf(s));
          withIceLinks(c);
          return c.body(s.answerSdp, 201);
        },
      },
    },
  });

  // WHIP session: trickle ICE (no ICE restarts), DELETE.
  resource(app, '/v1/sessions/:id', deps, {
    acceptPatch: TRICKLE_TYPE,
    methods: {
      GET: { handler: (c) => c.json(sessions.get(c.req.param('id')!).info()) },
      PATCH: {
        maxBody: MAX_TRICKLE_BYTES,
        allow: publisherOfPath,
        handler: async (c) => {
          const s = sessions.get(c.req.param('id')!);
          checkIfMatch(c.req.header('if-match'), etagOf(s));
          requireType(c, TRICKLE_TYPE);
          await s.addRemoteCandidates(await c.req.text());
          return c.body(null, 204);
        },
      },
      DELETE: {
        allow: publisherOfPath,
        handler: async (c) => {
          await sessions.close(c.req.param('id')!);
          return c.body(null, 204);
        },
      },
    },
  });

  // WHEP endpoint of a session (or of a publisher's live session): recvonly offer in, answer out.
  resource(app, '/v1/sessions/:id/whep', deps, {
    acceptPost: 'application/sdp',
    iceLinks: true,
    methods: {
      POST: {
        maxBody: MAX_SDP_BYTES,
        allow: viewerOfPath,
        handler: async (c) => {
          const s = sessionAt(c);
          requireType(c, 'application/sdp');
          const v = await s.addViewer(await c.req.text());
          c.header('Location', `/v1/sessions/${s.id}/whep/${v.id}`);
          c.header('Content-Type', 'application/sdp');
          c.header('ETag', `"${v.id}"`);
          withIceLinks(c);
          return c.body(v.answerSdp, 201);
        },
      },
    },
  });
  // WHEP session: the answer carries every candidate, so no PATCH (405, as the draft says).
  resource(app, '/v1/sessions/:id/whep/:vid', deps, {
    methods: {
      DELETE: {
        allow: viewerOfPath,
        handler: async (c) => {
          await sessionAt(c).removeViewer(c.req.param('vid')!);
          return c.body(null, 204);
        },
      },
    },
  });

  resource(app, '/v1/sessions/:id/tokens', deps, {
    acceptPost: 'application/json',
    methods: {
      POST: {
        maxBody: MAX_JSON_BYTES,
        handler: async (c) => {
          const s = sessions.get(c.req.param('id')!);
          const t = tokens.mint(s.id, ttlOf(await json(c)));
          return c.json({ ...t, session: s.id, whepUrl: `/v1/sessions/${s.id}/whep`, viewUrl: `/view/${s.id}?token=${encodeURIComponent(t.token)}` }, 201);
        },
      },
    },
  });

  // Publish tokens, for encoders (OBS): the token creates one session at a time; the viewer token
  // minted with it watches whatever that publisher has live.
  resource(app, '/v1/publish-tokens', deps, {
    acceptPost: 'application/json',
    methods: {
      POST: {
        maxBody: MAX_JSON_BYTES,
        handler: async (c) => {
          const ttl = ttlOf(await json(c));
          const p = tokens.mintPublish(ttl);
          const view = tokens.mint(p.publishId, ttl);
          return c.json(
            {
              token: p.token,
              publishId: p.publishId,
              expiresAt: p.expiresAt,
              whipUrl: '/v1/sessions',
              viewerToken: view.token,
              whepUrl: `/v1/sessions/${p.publishId}/whep`,
              viewUrl: `/view/${p.publishId}?token=${encodeURIComponent(view.token)}`,
            },
            201,
          );
        },
      },
    },
  });

  // The ICE servers for clients that set up their own peer connection (web app, SDK).
  resource(app, '/v1/ice-servers', deps, {
    methods: { GET: { allow: anyCredential, handler: (c) => c.json({ iceServers: config.iceServers }) } },
  });
}

/** The session's entity-tag: its ICE session never changes (no ICE restarts), so the session id. */
const etagOf = (s: Session) => `"${s.id}"`;

/**
 * RFC 9725 §4.3.1: a trickle PATCH carries If-Match with the session's entity-tag (412 when it
 * names another); `If-Match: *` asks for an ICE restart, which this server does not do (422).
 * Without If-Match the PATCH is applied (RFC 9110: no precondition).
 */
function checkIfMatch(header: string | undefined, etag: string): void {
  if (header === undefined) return;
  if (header.trim() === '*') throw new XplError('ice_restart_unsupported', 'ICE restarts are not supported (If-Match: *): create a new session instead');
  const tags = header.split(',').map((t) => t.trim());
  if (!tags.includes(etag)) throw new XplError('precondition_failed', `If-Match ${header} does not match this session's ICE entity-tag ${etag}`);
}

function parseSwitch(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^(on|1|true)$/i.test(value)) return true;
  if (/^(off|0|false)$/i.test(value)) return false;
  throw new XplError('bad_request', `${name} must be on or off (got "${value.slice(0, 32)}")`);
}
