// The SDK's one error type, and how an HTTP error response becomes one.

export class XplApiError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ status?: number, details?: unknown, retryAfter?: number }} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'XplApiError';
    this.code = code;
    this.status = extra.status;
    this.details = extra.details;
    this.retryAfter = extra.retryAfter;
  }
}

/** The XplApiError of a failed response: the server's `{error:{code,message}}` when there is one. */
export async function errorFrom(res, what) {
  let code = 'http_' + res.status;
  let message = `${what}: HTTP ${res.status}`;
  let details;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code;
      message = `${what}: ${body.error.message}`;
      details = body.error.details;
    }
  } catch {
    /* not JSON */
  }
  const ra = res.headers.get('retry-after');
  return new XplApiError(code, message, { status: res.status, details, retryAfter: ra ? Number(ra) : undefined });
}
