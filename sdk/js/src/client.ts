import { Backoff, refusalDelay } from './backoff.js';
import { Emitter } from './emitter.js';
import { HeraldError, problemError, refusedStatus } from './errors.js';
import { compareIds, splitCursor, validChannel } from './ids.js';
import { PollTransport } from './poll.js';
import { EventSourceTransport, FetchSSETransport } from './sse.js';
import { endpoint, networkError, OpenError, retryAfterMs, sleep, type Host, type LostInfo, type Transport, type TransportSettings } from './transport.js';
import { WebSocketTransport } from './ws.js';
import type {
  ClientEvents,
  ConnectionEvent,
  ConnectionState,
  EventSourceConstructor,
  FetchLike,
  GapInfo,
  HeraldClientOptions,
  HeraldMessage,
  PublishOptions,
  SubscribeHandlers,
  SubscribeOptions,
  Subscription,
  TransportName,
  WebSocketConstructor,
} from './types.js';

interface HandlerEntry {
  handlers: SubscribeHandlers<any>;
  active: boolean;
}

interface ChannelEntry {
  channel: string;
  handlers: HandlerEntry[];
  /** The last delivered id, or the channel's position when known; undefined: live only. */
  pos: string | undefined;
  /** The position a gap was last reported for, so a repeated report is not passed on twice. */
  gapAt: string | undefined;
}

const ALL: TransportName[] = ['websocket', 'sse', 'poll'];
const ID = /^\d+(-\d+)?$/;

/**
 * A herald subscriber for browsers and Node.js 20: WebSocket first, then Server-Sent Events,
 * then long-polling; reconnects with exponential backoff and full jitter and resumes every
 * channel from the last message it delivered.
 *
 * ```ts
 * const client = new HeraldClient({ url: 'https://push.example.com', getToken: () => fetchToken() });
 * const sub = client.subscribe('orders:42', { onMessage: (m) => render(m.data), onGap: () => reload() });
 * ```
 */
export class HeraldClient {
  private readonly settings: TransportSettings;
  private readonly getTokenFn: () => string | Promise<string>;
  private readonly order: TransportName[];
  private readonly WebSocketCtor: WebSocketConstructor | undefined;
  private readonly EventSourceCtor: EventSourceConstructor | undefined;
  private readonly sseEventNames: string[];
  private readonly fetchFn: FetchLike | undefined;
  private readonly upgradeRetryMs: number;
  private readonly backoff: Backoff;
  private readonly emitter = new Emitter<ClientEvents>();
  private readonly subs = new Map<string, ChannelEntry>();
  private readonly host: Host;

  private _state: ConnectionState = 'idle';
  private active: Transport | undefined;
  private opening: Transport | undefined;
  private probing: Transport | undefined;
  private roundGen = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private stableTimer: ReturnType<typeof setTimeout> | undefined;
  private probeTimer: ReturnType<typeof setTimeout> | undefined;
  private probes = 0;
  private demotedUntil = new Map<TransportName, number>();
  private onlineListener: (() => void) | undefined;

  constructor(options: HeraldClientOptions) {
    if (!options || typeof options.url !== 'string' || !options.url) throw new TypeError('HeraldClient: url is required');
    if (typeof options.getToken !== 'function') throw new TypeError('HeraldClient: getToken is required');
    const g = globalThis as { WebSocket?: WebSocketConstructor; fetch?: FetchLike; ReadableStream?: unknown };
    let base = options.url.replace(/^ws(s?):/i, 'http$1:');
    if (!base.endsWith('/')) base += '/';
    new URL(base); // throws on a bad URL
    this.fetchFn = options.fetch ?? (typeof g.fetch === 'function' ? g.fetch.bind(globalThis) : undefined);
    this.settings = {
      baseUrl: base,
      fetch: this.fetchFn,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 45_000,
      pollTimeoutSec: Math.max(1, Math.min(60, Math.round(options.pollTimeoutSec ?? 25))),
    };
    this.getTokenFn = options.getToken;
    this.WebSocketCtor = options.WebSocket ?? g.WebSocket;
    this.EventSourceCtor = options.EventSource;
    this.sseEventNames = options.sseEventNames ?? [];
    this.upgradeRetryMs = options.upgradeRetryMs ?? 120_000;
    this.backoff = new Backoff(options.reconnect);
    const wanted = options.transports ?? ALL;
    for (const t of wanted) if (!ALL.includes(t)) throw new TypeError(`HeraldClient: unknown transport ${JSON.stringify(t)}`);
    this.order = wanted.filter((t, i) => wanted.indexOf(t) === i && this.available(t));
    if (this.order.length === 0) {
      throw new TypeError(
        'HeraldClient: no usable transport: pass a WebSocket constructor (in Node.js: the ws package) or a fetch that can stream',
      );
    }
    this.host = this.makeHost();
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this._state;
  }

  /** The transport in use, when connected. */
  get transport(): TransportName | undefined {
    return this.active?.name;
  }

  /** Listens to a client event; returns a function that stops listening. */
  on<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void {
    return this.emitter.on(event, listener);
  }

  off<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): void {
    this.emitter.off(event, listener);
  }

  /** Connects now (subscribe() does it by itself). */
  connect(): void {
    if (this._state === 'closed') throw new HeraldError('closed', 'the client is closed');
    if (this._state === 'idle') {
      if (typeof globalThis.addEventListener === 'function' && !this.onlineListener) {
        // A browser that comes back online reconnects at once instead of waiting out the backoff.
        this.onlineListener = () => {
          if (this._state === 'disconnected') this.reconnectNow();
        };
        globalThis.addEventListener('online', this.onlineListener);
      }
      void this.round();
    }
  }

  /**
   * Subscribes to a channel. Messages arrive in order, each once, across reconnects. Several
   * subscriptions to one channel share one server subscription; their handlers run in the
   * order they subscribed.
   */
  subscribe<T = unknown>(
    channel: string,
    handlers: SubscribeHandlers<T> | ((message: HeraldMessage<T>) => void),
    options: SubscribeOptions = {},
  ): Subscription {
    if (this._state === 'closed') throw new HeraldError('closed', 'the client is closed');
    if (!validChannel(channel)) {
      throw new HeraldError('invalid-channel', `invalid channel name ${JSON.stringify(channel)}: use 1-255 of A-Z a-z 0-9 _ . : @ / = + -`, { channel });
    }
    const h: SubscribeHandlers<T> = typeof handlers === 'function' ? { onMessage: handlers } : handlers;
    if (!h || typeof h.onMessage !== 'function') throw new TypeError('subscribe: onMessage is required');
    if (options.since !== undefined && !ID.test(options.since)) {
      throw new HeraldError('invalid-since', `since must be a message id such as 1732700000000-0, or 0; got ${JSON.stringify(options.since)}`, { channel });
    }
    let entry = this.subs.get(channel);
    const isNew = !entry;
    if (!entry) {
      entry = { channel, handlers: [], pos: options.since, gapAt: undefined };
      this.subs.set(channel, entry);
    }
    const he: HandlerEntry = { handlers: h, active: true };
    entry.handlers.push(he);
    const e = entry;
    if (isNew) this.channelsChanged();
    return {
      channel,
      get lastId() {
        return e.pos;
      },
      unsubscribe: () => {
        if (!he.active) return;
        he.active = false;
        const i = e.handlers.indexOf(he);
        if (i >= 0) e.handlers.splice(i, 1);
        if (e.handlers.length === 0 && this.subs.get(channel) === e) {
          this.subs.delete(channel);
          this.channelsChanged();
        }
      },
    };
  }

  /** The last delivered id of a subscribed channel (what a reconnect resumes from). */
  lastId(channel: string): string | undefined {
    return this.subs.get(channel)?.pos;
  }

  /**
   * Publishes over HTTP (POST /v1/channels/{channel}/messages) with a token that has publish
   * rights. Retries 429, 503 and network errors with backoff and the same Idempotency-Key, so a
   * retry never creates a second message.
   */
  async publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<{ id: string; channel: string }> {
    const fetch = this.fetchFn;
    if (!fetch) throw new TypeError('publish needs fetch');
    const key = options.idempotencyKey ?? randomKey();
    const retries = options.retries ?? 3;
    const backoff = new Backoff({ initialDelayMs: 200, maxDelayMs: 5000 });
    const body = JSON.stringify(options.event === undefined ? { data } : { data, event: options.event });
    for (let attempt = 0; ; attempt++) {
      const token = options.token ?? (await this.token());
      let res: Response | undefined;
      let err: HeraldError;
      let wait: number | undefined;
      try {
        res = await fetch(endpoint(this.settings.baseUrl, `v1/channels/${encodeURIComponent(channel)}/messages`), {
          method: 'POST',
          headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json', 'Idempotency-Key': key },
          body,
        });
      } catch (e) {
        res = undefined;
        err = networkError(e, 'poll');
      }
      if (res) {
        if (res.ok) return (await res.json()) as { id: string; channel: string };
        err = await problemError(res);
        wait = retryAfterMs(res);
        if (res.status !== 429 && res.status !== 503) throw err;
      }
      if (attempt >= retries) throw err!;
      await sleep(wait ?? backoff.next());
    }
  }

  /** Closes the connection and stops reconnecting. Subscriptions end; no handler runs after this. */
  close(): void {
    if (this._state === 'closed') return;
    this.roundGen++;
    clearTimeout(this.retryTimer);
    clearTimeout(this.stableTimer);
    clearTimeout(this.probeTimer);
    for (const t of [this.active, this.opening, this.probing]) t?.close();
    this.active = this.opening = this.probing = undefined;
    if (this.onlineListener) globalThis.removeEventListener?.('online', this.onlineListener);
    for (const e of this.subs.values()) for (const h of e.handlers) h.active = false;
    this.subs.clear();
    this.setState('closed', {});
  }

  // ---- connection management ----

  private available(t: TransportName): boolean {
    switch (t) {
      case 'websocket':
        return typeof this.WebSocketCtor === 'function';
      case 'sse':
        return typeof this.EventSourceCtor === 'function' || (this.fetchFn !== undefined && typeof (globalThis as { ReadableStream?: unknown }).ReadableStream === 'function');
      case 'poll':
        return this.fetchFn !== undefined;
    }
  }

  private create(name: TransportName): Transport {
    switch (name) {
      case 'websocket':
        return new WebSocketTransport(this.host, this.WebSocketCtor!);
      case 'sse':
        return this.EventSourceCtor
          ? new EventSourceTransport(this.host, this.EventSourceCtor, this.sseEventNames)
          : new FetchSSETransport(this.host, this.fetchFn!);
      case 'poll':
        return new PollTransport(this.host, this.fetchFn!);
    }
  }

  private setState(state: ConnectionState, ev: Omit<ConnectionEvent, 'state'>): void {
    this._state = state;
    const payload: ConnectionEvent = { state, ...ev };
    if (state !== 'idle') this.report(this.emitter.emit(state, payload));
    this.report(this.emitter.emit('state', payload));
  }

  /** One connection attempt: the transports in order, from the best one not known to be blocked. */
  private async round(): Promise<void> {
    const gen = ++this.roundGen;
    clearTimeout(this.retryTimer);
    const now = Date.now();
    let start = this.order.findIndex((n) => !((this.demotedUntil.get(n) ?? 0) > now));
    if (start < 0) start = 0;
    this.setState('connecting', { transport: this.order[start]! });
    let failure: OpenError | undefined;
    for (let i = start; i < this.order.length; i++) {
      const t = this.create(this.order[i]!);
      this.opening = t;
      try {
        await t.open();
      } catch (err) {
        if (gen !== this.roundGen) return;
        this.opening = undefined;
        failure = err instanceof OpenError ? err : new OpenError(true, networkError(err, t.name));
        if (!failure.transportFailure) break; // herald answered: another transport would hear the same
        continue;
      }
      if (gen !== this.roundGen) {
        t.close();
        return;
      }
      this.opening = undefined;
      // The better transports failed while this one got through: something on the way blocks them.
      for (let j = start; j < i; j++) this.demotedUntil.set(this.order[j]!, now + this.upgradeRetryMs);
      this.activate(t);
      return;
    }
    const error = failure?.error;
    if (error && error.code !== 'network' && error.code !== 'timeout' && error.code !== 'going-away' && !refusedStatus(error.status)) this.report([error]);
    const delay = refusedStatus(error?.status) ? refusalDelay(failure?.retryAfterMs, this.backoff.next()) : (failure?.retryAfterMs ?? this.backoff.next());
    this.setState('disconnected', { retryInMs: delay, ...(error ? { error, reason: error.message } : {}), ...(error?.status ? { code: error.status } : {}) });
    this.retryTimer = setTimeout(() => void this.round(), delay);
  }

  private activate(t: Transport): void {
    this.active = t;
    this.probes = 0;
    clearTimeout(this.stableTimer);
    this.stableTimer = setTimeout(() => this.backoff.reset(), this.backoff.stableAfterMs);
    this.setState('connected', { transport: t.name });
    if (this.active !== t) return; // a listener closed the client
    t.start();
    t.update();
    this.scheduleProbe();
  }

  private reconnectNow(): void {
    clearTimeout(this.retryTimer);
    void this.round();
  }

  private lost(t: Transport, info: LostInfo): void {
    if (t === this.probing) {
      this.probing = undefined;
      t.close();
      return;
    }
    if (t !== this.active) return;
    t.close();
    this.active = undefined;
    clearTimeout(this.stableTimer);
    clearTimeout(this.probeTimer);
    this.probing?.close();
    this.probing = undefined;
    const refused = refusedStatus(info.error?.status);
    if (info.error && info.error.code !== 'network' && info.error.code !== 'token-expired' && !refused) this.report([info.error]);
    const delay = refused ? refusalDelay(info.error?.retryAfterMs, this.backoff.next()) : (info.delayMs ?? this.backoff.next());
    const ev: Omit<ConnectionEvent, 'state'> = { transport: t.name, retryInMs: delay };
    if (info.code !== undefined) ev.code = info.code;
    if (info.reason !== undefined) ev.reason = info.reason;
    if (info.error) ev.error = info.error;
    this.setState('disconnected', ev);
    if (this._state !== 'disconnected') return;
    this.retryTimer = setTimeout(() => void this.round(), delay);
  }

  /** After a fallback, tries the better transports again in the background. */
  private scheduleProbe(): void {
    clearTimeout(this.probeTimer);
    const cur = this.active ? this.order.indexOf(this.active.name) : 0;
    if (cur <= 0) return;
    // The first retry comes soon: a gateway that restarts can refuse the better transport and
    // then accept the next one a moment later, and that is no reason to stay on the worse one.
    const delay = this.probes === 0 ? Math.min(500 + Math.random() * 1000, this.upgradeRetryMs) : this.upgradeRetryMs;
    this.probeTimer = setTimeout(() => void this.probe(), delay);
  }

  private async probe(): Promise<void> {
    const from = this.active;
    if (!from) return;
    this.probes++;
    const cur = this.order.indexOf(from.name);
    for (let i = 0; i < cur; i++) {
      const name = this.order[i]!;
      const t = this.create(name);
      this.probing = t;
      try {
        await t.open();
      } catch (err) {
        if (this.probing === t) this.probing = undefined;
        if (this.active !== from) return;
        if (err instanceof OpenError && !err.transportFailure) break; // herald answered (a refusal, say): the way is not blocked
        this.demotedUntil.set(name, Date.now() + this.upgradeRetryMs);
        continue;
      }
      if (this.probing !== t || this.active !== from) {
        t.close();
        if (this.active === from) this.scheduleProbe();
        return;
      }
      // Switch: the old transport stops before the new one subscribes from the positions it
      // left, so nothing is delivered twice or skipped.
      this.probing = undefined;
      this.demotedUntil.delete(name);
      from.close();
      this.active = t;
      this.probes = 0;
      this.report(this.emitter.emit('transport', { from: from.name, to: t.name }));
      this.report(this.emitter.emit('state', { state: 'connected', transport: t.name }));
      t.start();
      t.update();
      this.scheduleProbe();
      return;
    }
    this.scheduleProbe();
  }

  private channelsChanged(): void {
    if (this._state === 'idle') {
      this.connect();
      return;
    }
    this.active?.update();
  }

  private async token(): Promise<string> {
    let token: string;
    try {
      token = await this.getTokenFn();
    } catch (err) {
      throw new HeraldError('get-token', 'getToken failed: ' + (err instanceof Error ? err.message : String(err)), { cause: err });
    }
    if (typeof token !== 'string' || !token) throw new HeraldError('get-token', 'getToken returned no token');
    return token;
  }

  /** Passes errors to the 'error' listeners (or the console when there are none). */
  private report(errors: unknown[]): void {
    for (const err of errors) {
      const e = err instanceof HeraldError ? err : new HeraldError('handler', 'a listener threw: ' + String(err), { cause: err });
      if (this.emitter.has('error')) {
        this.emitter.emit('error', e);
      } else if (typeof console !== 'undefined') {
        console.error('herald:', e);
      }
    }
  }

  private deliver(entry: ChannelEntry, call: (h: SubscribeHandlers<any>) => void): void {
    for (const he of [...entry.handlers]) {
      if (!he.active) continue;
      try {
        call(he.handlers);
      } catch (err) {
        const e = new HeraldError('handler', `a handler of ${entry.channel} threw: ${err instanceof Error ? err.message : String(err)}`, {
          channel: entry.channel,
          cause: err,
        });
        if (he.handlers.onError) {
          try {
            he.handlers.onError(e);
          } catch (err2) {
            this.report([err2]);
          }
        } else {
          this.report([e]);
        }
      }
    }
  }

  private makeHost(): Host {
    const client = this;
    const live = (t: Transport) => t === client.active || t === client.opening || t === client.probing;
    return {
      settings: this.settings,
      getToken: () => client.token(),
      channels: () => [...client.subs.keys()],
      position: (ch) => client.subs.get(ch)?.pos,
      async cursorFor(channels) {
        const pos = channels.map((c) => client.subs.get(c)?.pos);
        if (pos.every((p) => p === undefined)) return undefined;
        // An empty slot starts that channel live while the others resume.
        return pos.map((p) => p ?? '').join(',');
      },
      message(t, msg) {
        if (!live(t)) return;
        const e = client.subs.get(msg.channel);
        if (!e) return;
        if (e.pos !== undefined && (compareIds(msg.id, e.pos) ?? 1) <= 0) return; // already delivered
        e.pos = msg.id;
        client.deliver(e, (h) => h.onMessage(msg));
      },
      gap(t, channel, since, resume, reason) {
        if (!live(t)) return;
        const e = client.subs.get(channel);
        if (!e) return;
        if (resume) {
          const at = since ?? '';
          if (e.gapAt === at) return; // the same gap again: the log is still behind this position
          e.gapAt = at;
        } else {
          e.gapAt = undefined;
        }
        const info: GapInfo = { channel, transport: t.name };
        if (since !== undefined) info.since = since;
        if (reason !== undefined) info.reason = reason;
        client.deliver(e, (h) => h.onGap?.(info));
      },
      cursor(t, channels, cursor) {
        if (!live(t)) return;
        const parts = splitCursor(cursor, channels.length);
        if (!parts) return;
        channels.forEach((c, i) => {
          const e = client.subs.get(c);
          if (e && (e.pos === undefined || (compareIds(parts[i]!, e.pos) ?? 1) > 0)) e.pos = parts[i];
        });
      },
      rewind(t, channel) {
        if (!live(t)) return;
        const e = client.subs.get(channel);
        if (e) e.pos = '0';
      },
      subscribed(t, channel, since, recovered, lastId, reason) {
        if (!live(t)) return;
        const e = client.subs.get(channel);
        if (!e) return;
        if (since === undefined) {
          // live only: the channel's position now is where a reconnect resumes from
          if (e.pos === undefined && lastId !== undefined) e.pos = lastId;
          return;
        }
        if (recovered) return;
        // The log is behind our position (lost or expired): follow the gateway's timeline.
        if (lastId !== undefined && (compareIds(lastId, since) ?? 0) < 0 && e.pos === since) e.pos = lastId;
        this.gap(t, channel, since, true, reason);
      },
      channelError(t, channel, error) {
        if (!live(t)) return;
        const e = client.subs.get(channel);
        if (!e) return;
        // A refused subscription is over: its handlers hear why and get nothing more.
        client.subs.delete(channel);
        for (const he of e.handlers) he.active = false;
        for (const he of e.handlers) {
          try {
            if (he.handlers.onError) he.handlers.onError(error);
            else client.report([error]);
          } catch (err) {
            client.report([err]);
          }
        }
        client.active?.update();
      },
      streamError(t, error) {
        if (!live(t)) return;
        for (const e of client.subs.values()) {
          for (const he of e.handlers) {
            if (!he.active) continue;
            try {
              he.handlers.onError?.(error);
            } catch (err) {
              client.report([err]);
            }
          }
        }
      },
      error(t, error) {
        if (live(t)) client.report([error]);
      },
      lost: (t, info) => client.lost(t, info),
    };
  }
}

function randomKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
}
