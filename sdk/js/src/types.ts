/** The transports herald speaks, in the client's default order of preference. */
export type TransportName = 'websocket' | 'sse' | 'poll';

/**
 * The connection's life: `idle` until the first subscription (or `connect()`), `connecting`
 * while a transport is being opened, `connected`, `disconnected` while waiting to reconnect,
 * and `closed` after `close()`.
 */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';

/** One message of a channel. */
export interface HeraldMessage<T = unknown> {
  /** The channel it was published to. */
  channel: string;
  /** Its position in the channel's log: opaque, increasing; resume with it. */
  id: string;
  /** The publisher's event name, when it gave one. */
  event?: string;
  /** The published JSON data. */
  data: T;
}

/**
 * Why the gateway could not give every message: `trimmed` (dropped by its history size),
 * `expired` (the log expired after its TTL of silence), `broker_reset` (the broker lost its
 * data, as in a restart of a memory-broker gateway), `replay_cap` (more was missed than one replay
 * carries: only the newest came), `link_lost` (the gateway lost its broker link and messages
 * published meanwhile are gone). A gateway that predates reasons sends none.
 */
export type GapReason = 'trimmed' | 'expired' | 'broker_reset' | 'replay_cap' | 'link_lost';

/** Told to `onGap`: the gateway could not prove that nothing was missed on this channel. */
export interface GapInfo {
  channel: string;
  /** The transport that reported the gap. */
  transport: TransportName;
  /** The position the client resumed from, when it had one. */
  since?: string;
  /** Why, as the gateway said; absent when it did not say. */
  reason?: GapReason;
}

/**
 * A WebSocket constructor: the browser's `WebSocket`, or the `ws` package's in Node.js.
 * Only the browser-compatible part of the API is used.
 */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The part of a WebSocket the client uses (the browser API, which `ws` implements too). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
}

/** An EventSource constructor (only used when given explicitly; see `HeraldClientOptions.EventSource`). */
export type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

/** The part of an EventSource the client uses. */
export interface EventSourceLike {
  readonly readyState: number;
  close(): void;
  onopen: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  addEventListener(type: string, listener: (ev: any) => any): void;
}

/** A `fetch` implementation (the global one by default). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** Reconnect timing: exponential backoff with full jitter. */
export interface ReconnectOptions {
  /** First backoff ceiling in ms [500]. The n-th retry waits a random time in [0, min(maxDelayMs, initialDelayMs * 2^n)). */
  initialDelayMs?: number;
  /** Largest backoff ceiling in ms [30000]. */
  maxDelayMs?: number;
  /** A connection that stayed up this long resets the backoff [15000]. */
  stableAfterMs?: number;
}

export interface HeraldClientOptions {
  /** herald's base URL, for example `https://push.example.com` (ws:// and wss:// work too). */
  url: string;
  /** Returns a JWT that allows subscribing. Called on every connect and when the server asks for a fresh one. */
  getToken: () => string | Promise<string>;
  /** Transports to use, best first [`['websocket', 'sse', 'poll']`]. */
  transports?: TransportName[];
  /** The WebSocket constructor [globalThis.WebSocket]. Node.js 20 has none: pass the `ws` package's. */
  WebSocket?: WebSocketConstructor;
  /**
   * An EventSource constructor. By default SSE runs over `fetch` streams, which can send the
   * token in an Authorization header and sees every event name. Give this only where `fetch`
   * cannot stream: the token then travels in the `access_token` query parameter, and messages
   * published with an event name are only seen when the name is listed in `sseEventNames`.
   */
  EventSource?: EventSourceConstructor;
  /** Event names to listen for when `EventSource` is used [[]]. */
  sseEventNames?: string[];
  /** The fetch implementation [globalThis.fetch]. */
  fetch?: FetchLike;
  reconnect?: ReconnectOptions;
  /** How long opening a transport may take before the next one is tried, in ms [10000]. */
  connectTimeoutMs?: number;
  /**
   * After falling back to a worse transport, the better one is tried again in the background
   * after this many ms, and again at this interval while it keeps failing [120000]. The first
   * retry comes after 0.5-1.5 s, in case the fallback was caused by a gateway restart.
   */
  upgradeRetryMs?: number;
  /** Long-poll wait in seconds, at most the server's maximum of 60 [25]. */
  pollTimeoutSec?: number;
  /**
   * No byte from the server for this long means the connection is dead [45000]. The WebSocket
   * transport sends a ping when a third of it passed in silence.
   */
  idleTimeoutMs?: number;
}

export interface SubscribeHandlers<T = unknown> {
  /** Each message of the channel, in order, once. */
  onMessage: (message: HeraldMessage<T>) => void;
  /** Messages may have been missed (history trimmed, gateway restarted without its data): refetch your state. */
  onGap?: (gap: GapInfo) => void;
  /** The subscription was refused (`forbidden`, `invalid-channel`, ...) or a handler threw. */
  onError?: (error: import('./errors.js').HeraldError) => void;
}

export interface SubscribeOptions {
  /**
   * Resume after this message id ('0': everything the gateway retains). Without it the
   * subscription starts live. Ignored when the channel is already subscribed by this client.
   */
  since?: string;
}

/** What `subscribe` returns. */
export interface Subscription {
  readonly channel: string;
  /** The id of the last message delivered on the channel (or the channel's position when known). */
  readonly lastId: string | undefined;
  /** Stops these handlers; the channel is unsubscribed when no handlers are left. */
  unsubscribe(): void;
}

/** Payload of the connection state events. */
export interface ConnectionEvent {
  state: ConnectionState;
  /** The transport in use (connected) or being tried (connecting). */
  transport?: TransportName;
  /** WebSocket close code, or HTTP status, that ended the connection. */
  code?: number;
  reason?: string;
  /** When disconnected: the delay before the next attempt. */
  retryInMs?: number;
  error?: import('./errors.js').HeraldError;
}

export interface ClientEvents {
  connecting: ConnectionEvent;
  connected: ConnectionEvent;
  disconnected: ConnectionEvent;
  closed: ConnectionEvent;
  /** Every change of state (all of the above). */
  state: ConnectionEvent;
  /** A switch to another transport without a disconnect (an upgrade after a fallback). */
  transport: { from: TransportName; to: TransportName };
  /** Problems that belong to no subscription: refused tokens, getToken failures, handler exceptions. */
  error: import('./errors.js').HeraldError;
}

export interface PublishOptions {
  /** An event name for the message. */
  event?: string;
  /** Makes retries safe; generated when not given, and reused by the retries of this call. */
  idempotencyKey?: string;
  /** Retries on 429, 503 and network errors [3]. */
  retries?: number;
  /** A token with publish rights [getToken()]. */
  token?: string;
}
