import type { TransportName } from './types.js';

/**
 * An error from herald or the client. `code` is herald's problem type or WebSocket error code
 * (`forbidden`, `invalid-token`, `token-expired`, `invalid-channel`, `unavailable`,
 * `over-capacity`, `too-many-connections`, `connect-rate-limited`, ...) or one of the client's
 * own (`network`, `handler`, `get-token`, `closed`).
 */
export class HeraldError extends Error {
  readonly code: string;
  /** The HTTP status or WebSocket close code, when there is one. */
  readonly status?: number;
  readonly channel?: string;
  readonly transport?: TransportName;
  /** The server's Retry-After, in ms, when it sent one (429 and 503 answers). */
  readonly retryAfterMs?: number;

  constructor(
    code: string,
    message: string,
    extra: { status?: number; channel?: string; transport?: TransportName; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'HeraldError';
    this.code = code;
    if (extra.status !== undefined) this.status = extra.status;
    if (extra.channel !== undefined) this.channel = extra.channel;
    if (extra.transport !== undefined) this.transport = extra.transport;
    if (extra.retryAfterMs !== undefined) this.retryAfterMs = extra.retryAfterMs;
  }
}

/** Reads a problem+json (RFC 9457) response into a HeraldError. */
export async function problemError(res: Response, transport?: TransportName): Promise<HeraldError> {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // no body: keep the status
  }
  return problemFromText(res.status, text, parseRetryAfter(res.headers.get('Retry-After')), transport);
}

/** A HeraldError from an error answer's status, body and Retry-After (ms). */
export function problemFromText(status: number, text: string, retryAfterMs: number | undefined, transport?: TransportName): HeraldError {
  let code = 'http-' + status;
  let message = `HTTP ${status}`;
  try {
    const p = JSON.parse(text) as { type?: string; detail?: string; title?: string };
    if (typeof p.type === 'string' && p.type) code = p.type;
    if (typeof p.detail === 'string' && p.detail) message = p.detail;
    else if (typeof p.title === 'string' && p.title) message = p.title;
  } catch {
    // not problem+json: keep the status
  }
  return new HeraldError(code, message, {
    status,
    ...(transport ? { transport } : {}),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
}

/** Reads a Retry-After value (delay seconds or an HTTP date) into ms; undefined when there is none. */
export function parseRetryAfter(v: string | null | undefined): number | undefined {
  if (!v) return undefined;
  const n = Number(v);
  if (Number.isFinite(n) && n >= 0) return n * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/**
 * Whether an HTTP status is the node refusing for its load: 503 (it is full, or its store is
 * down) or 429 (this client connects too much). The answer is to wait for the Retry-After and
 * try the same transport again, not another one.
 */
export function refusedStatus(status: number | undefined): boolean {
  return status === 429 || status === 503;
}
