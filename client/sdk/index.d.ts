// Types of the xportrait-live SDK (index.js). Kept by hand next to the code; `npm test` checks
// them with tsc (client/sdk/tsconfig.json: these types and the examples that use them), and
// test/control exercises them against a running server.

export type RendererName = 'passthrough' | 'mesh-warp' | 'xportrait-lcm';

export type ErrorCode =
  | 'bad_request' | 'bad_sdp' | 'no_video' | 'unsupported_codec' | 'not_found' | 'unauthorized' | 'forbidden'
  | 'too_large' | 'unsupported_media_type' | 'no_face' | 'too_many_sessions' | 'rate_limited' | 'bad_pack'
  | 'bad_config' | 'renderer_unavailable' | 'conflict' | 'method_not_allowed' | 'precondition_failed'
  | 'ice_restart_unsupported' | 'internal'
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
  /** Driving frames received; `framesIn` of them were decoded (the rest skipped: enhancement layers not needed, frames before a keyframe). */
  framesReceived: number;
  framesIn: number; framesOut: number; dropped: number; decodeErrors: number; keyframeRequests: number;
  faceLostRatio: number | null; inFps: number; outFps: number; inWidth: number; inHeight: number;
  outWidth: number; outHeight: number; decodeMs: StageSummary; renderMs: StageSummary; encodeMs: StageSummary;
  serverLatencyMs: StageSummary;
  /** Temporal layers the sender encodes (1: none). */
  temporalLayers: number;
  /** The frame budget's cap, fps: under maxFps while the server is short of CPU. */
  frameBudgetFps: number;
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
  /** Relay the caller's audio back to the caller and to viewers (default true). */
  audio?: boolean;
}
export interface OutputSettings { width: number; height: number; maxFps: number }
export interface ViewerInfo { id: string; createdAt: string; state: string; framesSent: number }
/** The session's audio relay: packets in and out, and the delay that keeps them with the video. */
export interface AudioInfo { enabled: boolean; delayMs: number; packetsIn: number; packetsOut: number; dropped: number; outputs: number }
export interface SessionInfo {
  id: string; renderer: RendererName; portraitId: string; createdAt: string;
  state: 'active' | 'paused' | 'closed'; sendsBack: boolean; output: OutputSettings; params: Params;
  viewers: number; viewerList: ViewerInfo[]; stats: SessionStats; audio: AudioInfo;
}
export interface StatsEvent {
  at: string; paused: boolean; inFps: number; outFps: number; framesIn: number; framesOut: number; dropped: number;
  faceFound: boolean | null; latencyMs: StageSummary;
  stageMs: { decode: StageSummary; render: StageSummary; background: StageSummary; encode: StageSummary };
  /** The frame budget's cap, fps: under maxFps while the server is short of CPU. */
  frameBudgetFps: number;
  outWidth: number; outHeight: number;
}
export interface ViewerToken { token: string; expiresAt: string; session: string; whepUrl: string; viewUrl: string }
/** A publish token and what follows from it; URLs are absolute. */
export interface PublishToken {
  token: string; publishId: string; expiresAt: string;
  /** The WHIP endpoint to give the encoder with `token` as its Bearer token. */
  whipUrl: string;
  /** Watches whatever the publisher has live (across its reconnects). */
  viewerToken: string; whepUrl: string; viewUrl: string;
}
/** An ICE server as RTCPeerConnection takes it. */
export interface IceServer { urls: string; username?: string; credential?: string }

export interface MsgpackCodec { encode(value: unknown): Uint8Array; decode(bytes: Uint8Array): unknown }

// WebRTC objects: the DOM's types where they are loaded (browsers; tsconfig "lib": ["DOM"], as
// with @roamhq/wrtc in Node), otherwise stand-ins that describe what the SDK uses, so that these
// types also check where there is no DOM (Deno).
export interface TrackLike { readonly kind: string; stop(): void }
export interface MediaStreamLike { getTracks(): TrackLike[] }
export interface PeerConnectionLike {
  readonly connectionState: string;
  readonly iceGatheringState: string;
  close(): void;
  getStats(): Promise<{ forEach(fn: (report: any) => void): void }>;
  addEventListener(type: string, listener: (event: any) => void): void;
  removeEventListener(type: string, listener: (event: any) => void): void;
}
type DomType<K extends string, Fallback> = typeof globalThis extends { [P in K]: { prototype: infer T } } ? T : Fallback;
export type SdkMediaStream = DomType<'MediaStream', MediaStreamLike>;
export type SdkTrack = DomType<'MediaStreamTrack', TrackLike>;
export type SdkPeerConnection = DomType<'RTCPeerConnection', PeerConnectionLike>;
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
  /** WHIP. `token`: a publish token instead of the API key; `audio: false` relays no audio. */
  createSession(offerSdp: string, opts?: { portrait?: string; renderer?: RendererName; audio?: boolean; token?: string }): Promise<{ id: string; location: string; etag: string | null; answerSdp: string }>;
  listSessions(): Promise<SessionInfo[]>;
  getSession(id: string): Promise<SessionInfo>;
  deleteSession(id: string, opts?: { token?: string }): Promise<void>;
  addIceCandidates(id: string, sdpFragment: string): Promise<void>;
  createViewerToken(id: string, opts?: { ttlSeconds?: number }): Promise<ViewerToken>;
  createPublishToken(opts?: { ttlSeconds?: number }): Promise<PublishToken>;
  iceServers(opts?: { token?: string }): Promise<IceServer[]>;
  whep(id: string, offerSdp: string, opts?: { token?: string }): Promise<{ viewerId: string; location: string; answerSdp: string }>;
  deleteViewer(id: string, viewerId: string, opts?: { token?: string }): Promise<void>;
  viewUrl(id: string, opts?: { token?: string; background?: string }): string;
  /** Browser: the camera (and microphone) as the driving input, over WHIP with the server's ICE servers. */
  publish(media: SdkMediaStream, opts?: {
    /** 'sendrecv' (default): the animated video and the delayed audio come back in `stream`; 'sendonly': ingest only. */
    direction?: 'sendrecv' | 'sendonly';
    renderer?: RendererName;
    portrait?: string;
    audio?: boolean;
    /** A publish token instead of the API key. */
    token?: string;
    iceServers?: IceServer[];
    RTCPeerConnection?: new (config?: any) => SdkPeerConnection;
    gatherTimeoutMs?: number;
    onTrack?: (track: SdkTrack, stream?: SdkMediaStream) => void;
  }): Promise<{ pc: SdkPeerConnection; stream: SdkMediaStream | null; id: string; location: string; close(): Promise<void> }>;
  /** Browser: a session's (or, with a publish id, a publisher's) output over WHEP, video and audio. */
  watch(id: string, opts?: {
    token?: string;
    /** Receive the audio too (default true). */
    audio?: boolean;
    iceServers?: IceServer[];
    RTCPeerConnection?: new (config?: any) => SdkPeerConnection;
    gatherTimeoutMs?: number;
    onTrack?: (track: SdkTrack, stream?: SdkMediaStream) => void;
  }): Promise<{ pc: SdkPeerConnection; stream: SdkMediaStream | null; viewerId: string; close(): Promise<void> }>;
  /** The configuration publish() and watch() give their peer connection: the server's ICE servers, max-bundle. */
  rtcConfiguration(opts: { iceServers?: IceServer[]; token?: string }): Promise<{ iceServers: IceServer[]; bundlePolicy: 'max-bundle' }>;
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
/** Adds the camera track (sendrecv by default), VP8 first, with two temporal layers (L1T2) where the browser takes them. */
export function addCameraTransceiver(pc: SdkPeerConnection, track: SdkTrack, stream?: SdkMediaStream, direction?: 'sendrecv' | 'sendonly'): unknown;
export function iceGathered(pc: SdkPeerConnection, capMs: number): Promise<void>;
