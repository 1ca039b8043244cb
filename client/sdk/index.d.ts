// Types of the xportrait-live SDK (index.js). Kept by hand next to the code; test/control
// type-checks its use against a running server.

export type RendererName = 'passthrough' | 'mesh-warp' | 'xportrait-lcm';

export type ErrorCode =
  | 'bad_request' | 'bad_sdp' | 'no_video' | 'unsupported_codec' | 'not_found' | 'unauthorized' | 'forbidden'
  | 'too_large' | 'unsupported_media_type' | 'no_face' | 'too_many_sessions' | 'rate_limited' | 'bad_pack'
  | 'bad_config' | 'renderer_unavailable' | 'conflict' | 'internal'
  // client-side codes
  | 'disconnected' | 'closed' | 'timeout' | 'socket_error' | 'bad_message' | `http_${number}`;

export class XplApiError extends Error {
  readonly code: ErrorCode;
  /** HTTP status, for HTTP calls. */
  readonly status?: number;
  readonly details?: unknown;
  /** Seconds, from Retry-After. */
  readonly retryAfter?: number;
  constructor(code: string, message: string, extra?: { status?: number; details?: unknown; retryAfter?: number });
}

export interface FaceBox { x: number; y: number; width: number; height: number; score: number }
export interface Portrait { id: string; width: number; height: number; face: FaceBox | null; createdAt: string }

export interface StageSummary { p50: number; p95: number }
export interface SessionStats {
  framesIn: number; framesOut: number; dropped: number; decodeErrors: number; keyframeRequests: number;
  faceLostRatio: number | null; inFps: number; outFps: number; inWidth: number; inHeight: number;
  outWidth: number; outHeight: number; decodeMs: StageSummary; renderMs: StageSummary; encodeMs: StageSummary;
  serverLatencyMs: StageSummary;
}
export type Background = { mode: 'keep' } | { mode: 'colour'; colour: string } | { mode: 'blur'; radius?: number };
export interface Params {
  expressionGain?: number; // 0..3
  poseGain?: number; // 0..3
  smoothing?: number; // 0..1
  gaze?: boolean;
  /** mesh-warp: what of the portrait the output shows (default: the server's --framing, 'head'). */
  framing?: 'head' | 'bust' | 'full';
  zoom?: number; // 0.5..3
  background?: Background;
}
export interface OutputSettings { width: number; height: number; maxFps: number }
export interface ViewerInfo { id: string; createdAt: string; state: string; framesSent: number }
export interface SessionInfo {
  id: string; renderer: RendererName; portraitId: string; createdAt: string;
  state: 'active' | 'paused' | 'closed'; sendsBack: boolean; output: OutputSettings; params: Params;
  viewers: number; viewerList: ViewerInfo[]; stats: SessionStats;
}
export interface StatsEvent {
  at: string; paused: boolean; inFps: number; outFps: number; framesIn: number; framesOut: number; dropped: number;
  faceFound: boolean | null; latencyMs: StageSummary;
  stageMs: { decode: StageSummary; render: StageSummary; background: StageSummary; encode: StageSummary };
  outWidth: number; outHeight: number;
}
export interface ViewerToken { token: string; expiresAt: string; session: string; whepUrl: string; viewUrl: string }

export interface MsgpackCodec { encode(value: unknown): Uint8Array; decode(bytes: Uint8Array): unknown }
/** A WebSocket constructor: globalThis.WebSocket, or `ws`'s on Node 20. */
export type WebSocketCtor = new (url: string) => any;

export interface ClientOptions {
  /** e.g. "http://127.0.0.1:8080" */
  baseUrl: string;
  apiKey?: string;
  fetch?: typeof fetch;
  WebSocket?: WebSocketCtor;
  msgpack?: MsgpackCodec;
}

export class XplClient {
  constructor(opts: ClientOptions);
  readonly baseUrl: string;
  health(): Promise<{ status: 'ok' | 'degraded'; sessions: number; maxSessions: number; defaultRenderer: RendererName; [k: string]: unknown }>;
  metrics(): Promise<string>;
  uploadPortrait(bytes: Uint8Array | ArrayBuffer | Blob, contentType?: 'image/jpeg' | 'image/png' | 'image/webp'): Promise<Portrait>;
  listPortraits(): Promise<Portrait[]>;
  getPortrait(id: string): Promise<Portrait>;
  deletePortrait(id: string): Promise<void>;
  createSession(offerSdp: string, opts?: { portrait?: string; renderer?: RendererName }): Promise<{ id: string; location: string; answerSdp: string }>;
  listSessions(): Promise<SessionInfo[]>;
  getSession(id: string): Promise<SessionInfo>;
  deleteSession(id: string): Promise<void>;
  addIceCandidates(id: string, sdpFragment: string): Promise<void>;
  createViewerToken(id: string, opts?: { ttlSeconds?: number }): Promise<ViewerToken>;
  whep(id: string, offerSdp: string, opts?: { token?: string }): Promise<{ viewerId: string; location: string; answerSdp: string }>;
  deleteViewer(id: string, viewerId: string, opts?: { token?: string }): Promise<void>;
  viewUrl(id: string, opts?: { token?: string; background?: string }): string;
  watch(id: string, opts?: {
    token?: string;
    RTCPeerConnection?: typeof RTCPeerConnection;
    gatherTimeoutMs?: number;
    onTrack?: (track: MediaStreamTrack, stream?: MediaStream) => void;
  }): Promise<{ pc: RTCPeerConnection; stream: MediaStream | null; viewerId: string; close(): Promise<void> }>;
  control(opts?: Partial<ControlOptions>): ControlSocket;
}

export interface ControlOptions {
  /** ws://host:port/v1/control */
  url: string;
  apiKey?: string;
  /** 'json' (text frames, default) or 'msgpack' (binary frames; needs `msgpack`). */
  format?: 'json' | 'msgpack';
  msgpack?: MsgpackCodec;
  WebSocket?: WebSocketCtor;
  requestTimeoutMs?: number;
  /** Reconnect with exponential backoff (default true). Not after close(), an auth failure or close code 1008. */
  reconnect?: boolean;
  minDelayMs?: number;
  maxDelayMs?: number;
}

export interface ControlEvents {
  open: undefined;
  reconnected: undefined;
  reconnecting: { attempt: number; delayMs: number };
  close: { code: number; reason: string };
  error: XplApiError | Error;
  hello: { event: 'hello'; protocol: number; authenticated: boolean; ops: string[] };
  stats: { event: 'stats'; session: string; stats: StatsEvent };
  'session.created': { event: 'session.created'; session: SessionInfo };
  'session.updated': { event: 'session.updated'; session: SessionInfo };
  'session.closed': { event: 'session.closed'; session: string; reason: string };
}

export type Op =
  | 'auth' | 'ping' | 'session.list' | 'session.get' | 'session.close' | 'session.setPortrait' | 'session.setRenderer'
  | 'session.setParams' | 'session.setOutput' | 'session.recalibrate' | 'session.pause' | 'session.resume'
  | 'session.createToken' | 'portrait.upload' | 'portrait.list' | 'portrait.delete' | 'stats.subscribe' | 'stats.unsubscribe';

export class ControlSocket {
  constructor(opts: ControlOptions);
  on<E extends keyof ControlEvents>(event: E, fn: (data: ControlEvents[E]) => void): () => void;
  /** Resolves when open and authenticated (rejects after close() or a fatal close). */
  ready(): Promise<void>;
  request<T = unknown>(op: Op | string, args?: Record<string, unknown>, opts?: { timeoutMs?: number }): Promise<T>;
  sendRaw(data: string | Uint8Array): void;
  readonly ws: any;
  ping(): Promise<{ pong: number }>;
  listSessions(): Promise<SessionInfo[]>;
  getSession(session: string): Promise<SessionInfo>;
  closeSession(session: string): Promise<null>;
  setPortrait(session: string, portrait: string): Promise<SessionInfo>;
  setRenderer(session: string, renderer: RendererName): Promise<SessionInfo>;
  setParams(session: string, params: Params): Promise<Params>;
  setOutput(session: string, output: Partial<OutputSettings>): Promise<OutputSettings>;
  recalibrate(session: string): Promise<null>;
  pause(session: string): Promise<SessionInfo>;
  resume(session: string): Promise<SessionInfo>;
  createToken(session: string, ttlSeconds?: number): Promise<{ token: string; expiresAt: string; session: string }>;
  uploadPortrait(bytes: Uint8Array): Promise<Portrait>;
  listPortraits(): Promise<Portrait[]>;
  deletePortrait(portrait: string): Promise<null>;
  subscribeStats(session: string, hz?: number, listener?: (stats: StatsEvent) => void): Promise<(() => void) & { result: { session: string; hz: number; periodMs: number } }>;
  unsubscribeStats(session: string): Promise<null>;
  close(): void;
}

/** Resolves when ICE gathering is complete (or end-of-candidates), or after `capMs`. */
/** Adds the camera track sendrecv, VP8 first, with two temporal layers (L1T2) where the browser takes them. */
export function addCameraTransceiver(pc: RTCPeerConnection, track: MediaStreamTrack, stream?: MediaStream): RTCRtpTransceiver;
export function iceGathered(pc: RTCPeerConnection, capMs: number): Promise<void>;
