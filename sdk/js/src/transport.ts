import { HeraldError, parseRetryAfter, refusedStatus } from './errors.js';
import type { FetchLike, GapReason, HeraldMessage, TransportName } from './types.js';

/** Why opening a transport failed. */
export class OpenError extends Error {
  /**
   * True when the transport itself could not get through (no socket, a refused upgrade, a proxy
   * in the way): the client then tries the next transport at once. False when the server
   * answered and said no (bad token, shutting down, 429/503: refused for its load): other
   * transports would fare no better.
   */
  readonly transportFailure: boolean;
  readonly error: HeraldError;
  /** The server's hint for when to try again. */
  readonly retryAfterMs: number | undefined;

  constructor(transportFailure: boolean, error: HeraldError, retryAfterMs?: number) {
    super(error.message);
    this.name = 'OpenError';
    this.transportFailure = transportFailure;
    this.error = error;
    this.retryAfterMs = retryAfterMs;
  }
}

/** How an open connection ended. */
export interface LostInfo {
  code?: number;
  reason?: string;
  /** The server's reconnect hint: 0 reconnects at once. Undefined: the client's backoff decides. */
  delayMs?: number;
  /**
   * Why it ended. An error whose status is 429 or 503 is a refusal for the node's load: the
   * client waits the backoff delay, and never less than the error's retryAfterMs.
   */
  error?: HeraldError;
}

/** Settings the transports share (resolved from the client's options). */
export interface TransportSettings {
  baseUrl: string;
  fetch: FetchLike | undefined;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  pollTimeoutSec: number;
}

/** The client, as the transports see it. Calls from a transport the client dropped are ignored. */
export interface Host {
  readonly settings: TransportSettings;
  getToken(): Promise<string>;
  /** The subscribed channels, in subscription order. */
  channels(): string[];
  /** The resume position of a channel, when known. */
  position(channel: string): string | undefined;
  /** The cursor for resuming these channels, or undefined for live only. */
  cursorFor(channels: string[]): Promise<string | undefined>;
  message(t: Transport, msg: HeraldMessage): void;
  /**
   * Messages of a channel may be missing. resume: reported when resuming from `since` (then a
   * repeat for the same position is not passed on); otherwise a gap in a live stream.
   */
  gap(t: Transport, channel: string, since: string | undefined, resume: boolean, reason: GapReason | undefined): void;
  /** A multi-channel cursor (SSE id, poll cursor) for these channels. */
  cursor(t: Transport, channels: string[], cursor: string): void;
  /** Forget the channel's position: read its log from the start (after a gap left it behind). */
  rewind(t: Transport, channel: string): void;
  /** A WebSocket subscription was confirmed. */
  subscribed(t: Transport, channel: string, since: string | undefined, recovered: boolean, lastId: string | undefined, reason: GapReason | undefined): void;
  /** The server refused a channel for good. */
  channelError(t: Transport, channel: string, error: HeraldError): void;
  /** The server refused every channel of the stream (SSE, long-poll). */
  streamError(t: Transport, error: HeraldError): void;
  error(t: Transport, error: HeraldError): void;
  lost(t: Transport, info: LostInfo): void;
}

export interface Transport {
  readonly name: TransportName;
  /** Connects and authenticates; resolves when connected, rejects with OpenError. */
  open(): Promise<void>;
  /** Called once the client made this transport the one in use: start delivering. */
  start(): void;
  /** The set of channels changed. */
  update(): void;
  /** Ends it without telling the host. */
  close(): void;
}

/** Joins a path to the base URL, keeping a path prefix the base may have. */
const gapReasons: ReadonlySet<string> = new Set(['trimmed', 'expired', 'broker_reset', 'replay_cap', 'link_lost']);

/** The gap reason a server sent, or undefined for none (or one this client does not know). */
export function gapReason(v: unknown): GapReason | undefined {
  return typeof v === 'string' && gapReasons.has(v) ? (v as GapReason) : undefined;
}

export function endpoint(base: string, path: string, query?: URLSearchParams): string {
  const u = new URL(path.replace(/^\//, ''), base.endsWith('/') ? base : base + '/');
  if (query) u.search = query.toString();
  return u.toString();
}

/** Reads a Retry-After header (seconds or an HTTP date) into ms. */
export function retryAfterMs(res: Response): number | undefined {
  return parseRetryAfter(res.headers.get('Retry-After'));
}

/** Whether an HTTP status means the transport is blocked on the way (so the next one may work). */
export function blockedStatus(status: number): boolean {
  // 401, 403 and 400 come from herald itself; 429 and 503 are herald refusing for its load (a
  // full node, a client connecting too fast, draining, its broker down): the same transport is
  // tried again after the Retry-After. Anything else (404, 405, 426, 502, 504, ...) is a proxy
  // or a server that does not speak it.
  return ![400, 401, 403].includes(status) && !refusedStatus(status);
}

export function networkError(err: unknown, transport: TransportName): HeraldError {
  const msg = err instanceof Error ? err.message : String(err);
  return new HeraldError('network', `${transport}: ${msg}`, { transport, cause: err });
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done);
  });
}
