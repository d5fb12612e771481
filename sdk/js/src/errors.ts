import type { TransportName } from './types.js';

/**
 * An error from herald or the client. `code` is herald's problem type or WebSocket error code
 * (`forbidden`, `invalid-token`, `token-expired`, `invalid-channel`, `unavailable`, ...) or one
 * of the client's own (`network`, `handler`, `get-token`, `closed`).
 */
export class HeraldError extends Error {
  readonly code: string;
  /** The HTTP status or WebSocket close code, when there is one. */
  readonly status?: number;
  readonly channel?: string;
  readonly transport?: TransportName;

  constructor(code: string, message: string, extra: { status?: number; channel?: string; transport?: TransportName; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'HeraldError';
    this.code = code;
    if (extra.status !== undefined) this.status = extra.status;
    if (extra.channel !== undefined) this.channel = extra.channel;
    if (extra.transport !== undefined) this.transport = extra.transport;
  }
}

/** Reads a problem+json (RFC 9457) response into a HeraldError. */
export async function problemError(res: Response, transport?: TransportName): Promise<HeraldError> {
  let code = 'http-' + res.status;
  let message = `HTTP ${res.status}`;
  try {
    const text = await res.text();
    const p = JSON.parse(text) as { type?: string; detail?: string; title?: string };
    if (typeof p.type === 'string' && p.type) code = p.type;
    if (typeof p.detail === 'string' && p.detail) message = p.detail;
    else if (typeof p.title === 'string' && p.title) message = p.title;
  } catch {
    // not problem+json: keep the status
  }
  return new HeraldError(code, message, { status: res.status, ...(transport ? { transport } : {}) });
}
