/**
 * Typed errors with a stable machine-readable code and a human message. HTTP and the control
 * socket map them to statuses / error replies; everything else is an internal error.
 */
export type ErrorCode =
  | 'bad_request'
  | 'bad_sdp'
  | 'no_video'
  | 'unsupported_codec'
  | 'not_found'
  | 'unauthorized'
  | 'forbidden'
  | 'too_large'
  | 'unsupported_media_type'
  | 'no_face'
  | 'too_many_sessions'
  | 'rate_limited'
  | 'bad_pack'
  | 'bad_config'
  | 'renderer_unavailable'
  | 'conflict'
  | 'method_not_allowed'
  | 'precondition_failed'
  | 'ice_restart_unsupported'
  | 'draining'
  | 'cluster_unavailable'
  | 'internal';

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  bad_sdp: 400,
  no_video: 400,
  unsupported_codec: 400,
  not_found: 404,
  unauthorized: 401,
  forbidden: 403,
  too_large: 413,
  unsupported_media_type: 415,
  no_face: 422,
  too_many_sessions: 503,
  rate_limited: 429,
  bad_pack: 500,
  bad_config: 500,
  renderer_unavailable: 400,
  conflict: 409,
  method_not_allowed: 405,
  precondition_failed: 412,
  ice_restart_unsupported: 422,
  draining: 503,
  cluster_unavailable: 503,
  internal: 500,
};

export class XplError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;
  /** Seconds a client should wait before retrying (HTTP Retry-After). */
  readonly retryAfter?: number;

  constructor(code: ErrorCode, message: string, opts: { details?: Record<string, unknown>; retryAfter?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'XplError';
    this.code = code;
    this.details = opts.details;
    this.retryAfter = opts.retryAfter;
  }

  get status(): number {
    return STATUS[this.code];
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) } };
  }
}

export function asXplError(err: unknown): XplError {
  if (err instanceof XplError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new XplError('internal', message, { cause: err });
}
