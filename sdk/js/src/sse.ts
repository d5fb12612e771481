import { HeraldError, problemError } from './errors.js';
import { SSEParser, type SSEBlock } from './sse-parser.js';
import { blockedStatus, endpoint, gapReason, networkError, OpenError, retryAfterMs, type Host, type LostInfo, type Transport } from './transport.js';
import type { EventSourceConstructor, EventSourceLike, FetchLike } from './types.js';

/** Handles one parsed SSE block for the stream over `channels`. Shared by both SSE transports. */
interface StreamState {
  /** The id-only event that pins the cursor after the replay has been seen: the stream is live. */
  live: boolean;
  tokenExpired: boolean;
  /** The reconnect hint of herald.shutdown. */
  shutdownMs: number | undefined;
}

function handleBlock(t: Transport, host: Host, channels: string[], block: SSEBlock, st: StreamState): void {
  if (block.data !== null) {
    switch (block.type) {
      case 'herald.gap': {
        const d = parseJSON(block.data) as { channel?: unknown; reason?: unknown } | undefined;
        if (d && typeof d.channel === 'string') host.gap(t, d.channel, host.position(d.channel), !st.live, gapReason(d.reason));
        break;
      }
      case 'herald.token-expired':
        st.tokenExpired = true;
        break;
      case 'herald.shutdown': {
        const d = parseJSON(block.data) as { reconnect_after_ms?: unknown } | undefined;
        if (d && typeof d.reconnect_after_ms === 'number') st.shutdownMs = d.reconnect_after_ms;
        break;
      }
      default: {
        const d = parseJSON(block.data) as { channel?: unknown; id?: unknown; data?: unknown } | undefined;
        if (d && typeof d.channel === 'string' && typeof d.id === 'string') {
          const msg: { channel: string; id: string; data: unknown; event?: string } = { channel: d.channel, id: d.id, data: d.data };
          if (block.type !== 'message') msg.event = block.type;
          host.message(t, msg);
        }
      }
    }
  }
  if (block.id !== undefined && block.id !== '') {
    host.cursor(t, channels, block.id);
    if (block.data === null) st.live = true;
  }
}

function parseJSON(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

function sseQuery(channels: string[], cursor: string | undefined, token?: string): URLSearchParams {
  const q = new URLSearchParams();
  for (const ch of channels) q.append('channel', ch);
  if (cursor !== undefined) q.set('since', cursor);
  if (token !== undefined) q.set('access_token', token);
  return q;
}

/**
 * Server-Sent Events over a fetch stream, parsed as EventSource would. The token goes in the
 * Authorization header. A change of channels reopens the stream from the current positions.
 */
export class FetchSSETransport implements Transport {
  readonly name = 'sse' as const;
  private closed = false;
  private gen = 0;
  private ac: AbortController | undefined;
  private channels: string[] = [];
  private lastRecv = 0;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private debounce: ReturnType<typeof setTimeout> | undefined;
  private startPump: (() => void) | undefined;
  private started = false;

  constructor(
    private readonly host: Host,
    private readonly fetch: FetchLike,
  ) {}

  async open(): Promise<void> {
    await this.connect();
  }

  start(): void {
    this.started = true;
    const go = this.startPump;
    this.startPump = undefined;
    go?.();
    this.watchdog = setInterval(() => this.checkIdle(), Math.max(50, Math.floor(this.host.settings.idleTimeoutMs / 3)));
  }

  update(): void {
    if (!this.started || this.closed) return;
    const want = this.host.channels();
    if (want.length === this.channels.length && want.every((c, i) => c === this.channels[i])) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.reopen(), 5);
  }

  close(): void {
    this.closed = true;
    this.gen++;
    clearTimeout(this.debounce);
    clearInterval(this.watchdog);
    this.ac?.abort();
  }

  private async reopen(): Promise<void> {
    try {
      await this.connect();
      const go = this.startPump;
      this.startPump = undefined;
      go?.();
    } catch (err) {
      if (this.closed) return;
      const e = err instanceof OpenError ? err : undefined;
      this.host.lost(this, { error: e?.error ?? networkError(err, 'sse'), ...(e?.retryAfterMs !== undefined ? { delayMs: e.retryAfterMs } : {}) });
    }
  }

  /** Opens a stream for the current channels; resolves once its first bytes arrived. */
  private async connect(): Promise<void> {
    const gen = ++this.gen;
    this.ac?.abort();
    this.ac = undefined;
    const channels = this.host.channels();
    this.channels = channels;
    if (channels.length === 0) return; // nothing to stream until a subscription comes
    const ac = new AbortController();
    this.ac = ac;
    const timer = setTimeout(() => ac.abort(), this.host.settings.connectTimeoutMs);
    let res: Response;
    let reader: ReadableStreamDefaultReader<Uint8Array>;
    let first: ReadableStreamReadResult<Uint8Array>;
    try {
      const cursor = await this.host.cursorFor(channels);
      const token = await this.host.getToken();
      const url = endpoint(this.host.settings.baseUrl, 'v1/sse', sseQuery(channels, cursor));
      try {
        res = await this.fetch(url, {
          headers: { Authorization: 'Bearer ' + token, Accept: 'text/event-stream' },
          cache: 'no-store',
          signal: ac.signal,
        });
      } catch (err) {
        throw new OpenError(true, networkError(err, 'sse'));
      }
      if (!res.ok) {
        const err = await problemError(res, 'sse');
        throw new OpenError(blockedStatus(res.status), err, retryAfterMs(res));
      }
      const type = res.headers.get('Content-Type') ?? '';
      if (!type.startsWith('text/event-stream') || !res.body) {
        ac.abort();
        throw new OpenError(true, new HeraldError('network', `sse: expected text/event-stream, got ${type || 'no body'}`, { status: res.status, transport: 'sse' }));
      }
      reader = res.body.getReader();
      try {
        first = await reader.read();
      } catch (err) {
        throw new OpenError(true, networkError(err, 'sse'));
      }
      if (first.done) throw new OpenError(true, new HeraldError('network', 'sse: the stream ended at once', { transport: 'sse' }));
    } catch (err) {
      clearTimeout(timer);
      ac.abort();
      if (err instanceof OpenError) throw err;
      if (err instanceof HeraldError) throw new OpenError(err.code === 'network' || err.code === 'timeout', err);
      throw new OpenError(true, ac.signal.aborted ? new HeraldError('timeout', 'sse: no response in time', { transport: 'sse' }) : networkError(err, 'sse'));
    }
    clearTimeout(timer);
    if (gen !== this.gen || this.closed) {
      ac.abort();
      return;
    }
    this.lastRecv = Date.now();
    this.startPump = () => void this.pump(gen, channels, reader, first.value);
  }

  private async pump(gen: number, channels: string[], reader: ReadableStreamDefaultReader<Uint8Array>, first: Uint8Array): Promise<void> {
    let retries = 0;
    let hint: number | undefined;
    const st: StreamState = { live: false, tokenExpired: false, shutdownMs: undefined };
    const parser = new SSEParser(
      (block) => {
        if (gen === this.gen) handleBlock(this, this.host, channels, block, st);
      },
      (ms) => {
        // The first retry field opens the stream; a later one is the shutdown's reconnect hint.
        if (retries++ > 0) hint = ms;
      },
    );
    let info: LostInfo = {};
    try {
      parser.feed(first);
      for (;;) {
        const { done, value } = await reader.read();
        if (gen !== this.gen) return;
        if (done) break;
        this.lastRecv = Date.now();
        parser.feed(value);
      }
      info = { reason: 'stream ended' };
      if (st.tokenExpired) info = { reason: 'token expired', delayMs: 0 };
      else if (st.shutdownMs !== undefined || hint !== undefined) info = { reason: 'server going away', delayMs: st.shutdownMs ?? hint! };
    } catch (err) {
      if (gen !== this.gen) return;
      info = { reason: 'stream broke', error: networkError(err, 'sse') };
    }
    if (gen !== this.gen || this.closed) return;
    this.gen++;
    clearInterval(this.watchdog);
    this.host.lost(this, info);
  }

  private checkIdle(): void {
    if (this.channels.length === 0 || !this.ac) return;
    const silent = Date.now() - this.lastRecv;
    if (silent < this.host.settings.idleTimeoutMs) return;
    this.gen++;
    this.ac.abort();
    clearInterval(this.watchdog);
    if (!this.closed) this.host.lost(this, { reason: `no data from the server for ${silent} ms` });
  }
}

/**
 * SSE over a given EventSource constructor (for environments where fetch cannot stream). The
 * token travels in the access_token query parameter; the client reconnects by itself (with a
 * fresh token and its own cursor), so the EventSource is closed on its first error.
 */
export class EventSourceTransport implements Transport {
  readonly name = 'sse' as const;
  private es: EventSourceLike | undefined;
  private closed = false;
  private started = false;
  private channels: string[] = [];
  private buffered: Array<() => void> | undefined = [];
  private debounce: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly host: Host,
    private readonly ctor: EventSourceConstructor,
    private readonly eventNames: string[],
  ) {}

  async open(): Promise<void> {
    await this.connect();
  }

  start(): void {
    this.started = true;
    const b = this.buffered ?? [];
    this.buffered = undefined;
    for (const f of b) f();
  }

  update(): void {
    if (!this.started || this.closed) return;
    const want = this.host.channels();
    if (want.length === this.channels.length && want.every((c, i) => c === this.channels[i])) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.connect().catch((err: unknown) => {
        if (!this.closed) this.host.lost(this, { error: err instanceof OpenError ? err.error : networkError(err, 'sse') });
      });
    }, 5);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.debounce);
    this.es?.close();
    this.es = undefined;
  }

  private async connect(): Promise<void> {
    this.es?.close();
    this.es = undefined;
    const channels = this.host.channels();
    this.channels = channels;
    if (channels.length === 0) return;
    const cursor = await this.host.cursorFor(channels);
    const token = await this.host.getToken();
    const url = endpoint(this.host.settings.baseUrl, 'v1/sse', sseQuery(channels, cursor, token));
    await new Promise<void>((resolve, reject) => {
      let opened = false;
      const es = new this.ctor(url);
      this.es = es;
      const timer = setTimeout(() => {
        es.close();
        reject(new OpenError(true, new HeraldError('timeout', 'sse: no response in time', { transport: 'sse' })));
      }, this.host.settings.connectTimeoutMs);
      // EventSource does not dispatch the id-only event that marks the end of the replay: a gap
      // that comes before the first message counts as reported on resume.
      const st: StreamState = { live: false, tokenExpired: false, shutdownMs: undefined };
      const deliver = (type: string, ev: { data?: unknown; lastEventId?: string }) => {
        if (this.es !== es) return;
        const block: SSEBlock = { type, data: typeof ev.data === 'string' ? ev.data : null };
        if (ev.lastEventId) block.id = ev.lastEventId;
        const run = () => {
          handleBlock(this, this.host, channels, block, st);
          if (block.id !== undefined) st.live = true;
        };
        if (this.buffered) this.buffered.push(run);
        else run();
      };
      for (const type of new Set(['message', 'herald.gap', 'herald.token-expired', 'herald.shutdown', ...this.eventNames])) {
        es.addEventListener(type, (ev: { data?: unknown; lastEventId?: string }) => deliver(type, ev));
      }
      es.onopen = () => {
        opened = true;
        clearTimeout(timer);
        resolve();
      };
      es.onerror = () => {
        if (this.es !== es) return;
        es.close();
        this.es = undefined;
        if (!opened) {
          clearTimeout(timer);
          // EventSource hides the status: a refused token looks like a blocked stream.
          reject(new OpenError(true, new HeraldError('network', 'sse: EventSource could not connect', { transport: 'sse' })));
          return;
        }
        if (this.closed) return;
        if (st.tokenExpired) this.host.lost(this, { reason: 'token expired', delayMs: 0 });
        else if (st.shutdownMs !== undefined) this.host.lost(this, { reason: 'server going away', delayMs: st.shutdownMs });
        else this.host.lost(this, { reason: 'stream ended' });
      };
    });
  }
}
