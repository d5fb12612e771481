import type { ReconnectOptions } from './types.js';

/** Exponential backoff with full jitter, reset after a stable connection. */
export class Backoff {
  private attempt = 0;
  private readonly base: number;
  private readonly cap: number;
  readonly stableAfterMs: number;

  constructor(opts: ReconnectOptions = {}) {
    this.base = opts.initialDelayMs ?? 500;
    this.cap = opts.maxDelayMs ?? 30_000;
    this.stableAfterMs = opts.stableAfterMs ?? 15_000;
  }

  /** The next delay: random in [0, min(cap, base * 2^attempt)). */
  next(): number {
    const ceiling = Math.min(this.cap, this.base * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(Math.random() * ceiling);
  }

  reset(): void {
    this.attempt = 0;
  }
}

/**
 * The wait after the node refused a connection for its load (429, 503): the backoff delay, but
 * never shorter than the server's Retry-After, and past it by a random share of a quarter of it,
 * so that the clients a node refused in the same instant do not all come back in the same
 * instant either.
 */
export function refusalDelay(retryAfterMs: number | undefined, backoffMs: number): number {
  if (retryAfterMs === undefined || !(retryAfterMs > 0)) return backoffMs;
  return Math.max(backoffMs, retryAfterMs + Math.floor((Math.random() * retryAfterMs) / 4));
}
