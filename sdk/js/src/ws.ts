import { HeraldError, parseRetryAfter, problemFromText, refusedStatus } from './errors.js';
import { endpoint, gapReason, networkError, OpenError, type Host, type LostInfo, type Transport } from './transport.js';
import type { WebSocketConstructor, WebSocketLike } from './types.js';

const OPEN = 1;
// herald allows 100 client frames per 10 s; keep a margin for its fixed window.
const FRAME_BUDGET = 90;
const FRAME_WINDOW_MS = 10_000;

interface ServerFrame {
  type?: string;
  id?: number;
  channel?: string;
  recovered?: boolean;
  last_id?: string;
  reason?: string;
  event?: string;
  data?: unknown;
  code?: string;
  message?: string;
  expires_in?: number;
}

type Pending =
  | { type: 'subscribe'; channel: string; since: string | undefined }
  | { type: 'unsubscribe'; channel: string }
  | { type: 'auth' }
  | { type: 'ping' };

/** Parses the server's reconnect hint from a 1001/1012 close reason (`reconnect_after_ms=N`). */
export function reconnectHint(reason: string): number | undefined {
  const m = /reconnect_after_ms=(\d+)/.exec(reason);
  return m ? Number(m[1]) : undefined;
}

/** What a close code asks of the client. */
export function lostFromClose(code: number, reason: string): LostInfo {
  const info: LostInfo = { code, reason };
  switch (code) {
    case 1001: // going away: the server's jittered hint, else backoff
    case 1012: {
      const hint = reconnectHint(reason);
      if (hint !== undefined) info.delayMs = hint;
      break;
    }
    case 4008: // slow consumer: resume at once, nothing retained is lost
      info.delayMs = 0;
      break;
    case 4001: // token expired: reconnect at once with a fresh token
      info.delayMs = 0;
      info.error = new HeraldError('token-expired', reason || 'token expired', { status: code, transport: 'websocket' });
      break;
    case 1008:
      info.error = new HeraldError('policy', reason || 'refused by policy (token or origin)', { status: code, transport: 'websocket' });
      break;
    case 4003:
      info.error = new HeraldError('forbidden', reason || 'forbidden', { status: code, transport: 'websocket' });
      break;
  }
  return info;
}

/** Protocol v1 over WebSocket: one connection, any number of channels, subscribed one by one. */
export class WebSocketTransport implements Transport {
  readonly name = 'websocket' as const;
  private ws: WebSocketLike | undefined;
  private closed = false;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  /** Channels this connection subscribed to (or is subscribing to), with the request id. */
  private server = new Map<string, { reqId: number; failed: boolean }>();
  private lastRecv = 0;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private started = false;
  private outbox: string[] = [];
  private sent: number[] = []; // when the frames of the current window went out
  private flushTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly host: Host,
    private readonly ctor: WebSocketConstructor,
  ) {}

  private url(): string {
    const u = new URL(endpoint(this.host.settings.baseUrl, 'v1/ws'));
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    return u.toString();
  }

  open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let opened = false;
      const fail = (err: OpenError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.teardown();
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new OpenError(true, new HeraldError('timeout', 'websocket: no connected frame in time', { transport: 'websocket' }))),
        this.host.settings.connectTimeoutMs,
      );
      let ws: WebSocketLike;
      try {
        ws = new this.ctor(this.url());
      } catch (err) {
        fail(new OpenError(true, networkError(err, 'websocket')));
        return;
      }
      this.ws = ws;
      ws.onerror = () => {}; // the close event that follows says what happened
      // The ws package (Node.js) shows the answer to an upgrade it did not get; a browser's
      // WebSocket hides it, and a refusal there looks like the network failing (see onclose).
      onRefusedUpgrade(ws, (err) => fail(new OpenError(!refusedStatus(err.status), err, err.retryAfterMs)));
      ws.onopen = () => {
        opened = true;
        this.lastRecv = Date.now();
        this.host.getToken().then(
          (token) => {
            if (!settled && !this.closed) this.send({ type: 'auth', id: this.request({ type: 'auth' }), token });
          },
          (err) => fail(new OpenError(false, err instanceof HeraldError ? err : new HeraldError('get-token', String(err), { cause: err }))),
        );
      };
      ws.onmessage = (ev: { data: unknown }) => {
        if (this.closed) return;
        this.lastRecv = Date.now();
        const frame = parseFrame(ev.data);
        if (!frame) return;
        if (!settled) {
          if (frame.type === 'connected') {
            settled = true;
            clearTimeout(timer);
            this.pending.delete(frame.id ?? -1);
            this.watchdog = setInterval(() => this.checkIdle(), Math.max(50, Math.floor(this.host.settings.idleTimeoutMs / 3)));
            resolve();
          }
          return;
        }
        this.onFrame(frame);
      };
      ws.onclose = (ev: { code?: number; reason?: string }) => {
        const code = ev.code ?? 1006;
        const reason = ev.reason ?? '';
        if (!settled) {
          if (!opened) {
            fail(new OpenError(true, new HeraldError('network', 'websocket: could not connect (upgrade refused or network down)', { status: code, transport: 'websocket' })));
            return;
          }
          const info = lostFromClose(code, reason);
          if (info.error || code === 1001 || code === 1012) {
            // herald answered: a token or policy problem, or it is shutting down
            fail(new OpenError(false, info.error ?? new HeraldError('going-away', reason || 'server going away', { status: code, transport: 'websocket' }), info.delayMs));
          } else {
            fail(new OpenError(true, new HeraldError('network', `websocket: closed before authenticating (${code}${reason ? ' ' + reason : ''})`, { status: code, transport: 'websocket' })));
          }
          return;
        }
        if (this.closed) return;
        this.teardown();
        this.host.lost(this, lostFromClose(code, reason));
      };
    });
  }

  start(): void {
    this.started = true;
    this.sync();
  }

  update(): void {
    if (this.started) this.sync();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.teardown();
  }

  private teardown(): void {
    clearInterval(this.watchdog);
    clearTimeout(this.retryTimer);
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.outbox.length = 0;
    const ws = this.ws;
    this.ws = undefined;
    if (!ws) return;
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = () => {}; // some implementations report closing a connecting socket as an error
    try {
      ws.close(1000);
    } catch {
      // already closed
    }
  }

  private request(p: Pending): number {
    const id = this.nextId++;
    this.pending.set(id, p);
    return id;
  }

  /**
   * Sends a frame, paced: herald closes a connection that sends more than 100 frames in 10 s
   * (4029), and resubscribing up to 128 channels after a reconnect must not trip that. Frames
   * past the budget wait, in order, for the window to move on.
   */
  private send(frame: object): void {
    this.outbox.push(JSON.stringify(frame));
    this.flush();
  }

  private flush(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) {
      this.outbox.length = 0;
      return;
    }
    const now = Date.now();
    while (this.sent.length > 0 && now - this.sent[0]! >= FRAME_WINDOW_MS) this.sent.shift();
    while (this.outbox.length > 0 && this.sent.length < FRAME_BUDGET) {
      this.sent.push(now);
      try {
        ws.send(this.outbox.shift()!);
      } catch {
        return; // the close event follows
      }
    }
    if (this.outbox.length > 0 && this.flushTimer === undefined) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        this.flush();
      }, FRAME_WINDOW_MS - (now - this.sent[0]!) + 10);
    }
  }

  /** Brings the server's subscriptions in line with the client's channels. */
  private sync(): void {
    if (this.closed || !this.ws) return;
    const want = new Set(this.host.channels());
    for (const ch of want) {
      if (this.server.has(ch)) continue;
      const since = this.host.position(ch);
      const id = this.request({ type: 'subscribe', channel: ch, since });
      this.server.set(ch, { reqId: id, failed: false });
      this.send(since === undefined ? { type: 'subscribe', id, channel: ch } : { type: 'subscribe', id, channel: ch, since });
    }
    for (const [ch, s] of this.server) {
      if (want.has(ch)) continue;
      this.server.delete(ch);
      if (!s.failed) this.send({ type: 'unsubscribe', id: this.request({ type: 'unsubscribe', channel: ch }), channel: ch });
    }
  }

  private onFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'message':
        if (typeof f.channel === 'string' && typeof f.id === 'string') {
          const msg: { channel: string; id: string; data: unknown; event?: string } = { channel: f.channel, id: f.id, data: f.data };
          if (typeof f.event === 'string' && f.event) msg.event = f.event;
          this.host.message(this, msg);
        }
        return;
      case 'subscribed': {
        const p = this.take(f.id);
        if (p?.type !== 'subscribe' || this.server.get(p.channel)?.reqId !== f.id) return;
        this.host.subscribed(this, p.channel, p.since, f.recovered !== false, typeof f.last_id === 'string' ? f.last_id : undefined, gapReason(f.reason));
        return;
      }
      case 'error': {
        const p = this.take(f.id);
        const err = new HeraldError(f.code || 'error', f.message || 'error', {
          transport: 'websocket',
          ...(p?.type === 'subscribe' ? { channel: p.channel } : {}),
        });
        if (p?.type === 'subscribe') {
          const s = this.server.get(p.channel);
          if (!s || s.reqId !== f.id) return;
          if (f.code === 'unavailable') {
            // the broker is busy: ask again shortly
            this.server.delete(p.channel);
            clearTimeout(this.retryTimer);
            this.retryTimer = setTimeout(() => this.sync(), 500 + Math.random() * 1500);
            return;
          }
          if (f.code === 'already-subscribed') return;
          s.failed = true;
          this.host.channelError(this, p.channel, err);
          return;
        }
        if (p?.type === 'unsubscribe') return;
        this.host.error(this, err);
        return;
      }
      case 'gap':
        // messages were lost on their way to the gateway (a broker outage longer than the history)
        if (typeof f.channel === 'string') this.host.gap(this, f.channel, this.host.position(f.channel), false, gapReason(f.reason));
        return;
      case 'refresh':
        this.host.getToken().then(
          (token) => this.send({ type: 'auth', id: this.request({ type: 'auth' }), token }),
          (err) => this.host.error(this, err instanceof HeraldError ? err : new HeraldError('get-token', String(err), { cause: err })),
        );
        return;
      case 'connected':
      case 'unsubscribed':
      case 'pong':
      case 'ack':
        this.take(f.id);
        return;
    }
  }

  private take(id: number | undefined): Pending | undefined {
    if (typeof id !== 'number') return undefined;
    const p = this.pending.get(id);
    this.pending.delete(id);
    return p;
  }

  /** Dead-connection detection: ping after a third of the idle timeout, give up after all of it. */
  private checkIdle(): void {
    const silent = Date.now() - this.lastRecv;
    const limit = this.host.settings.idleTimeoutMs;
    if (silent >= limit) {
      this.teardown();
      if (!this.closed) this.host.lost(this, { code: 1006, reason: `no data from the server for ${silent} ms` });
      return;
    }
    if (silent >= limit / 3) this.send({ type: 'ping', id: this.request({ type: 'ping' }) });
  }
}

/** The part of the `ws` package's WebSocket (an EventEmitter) that shows a refused upgrade. */
interface NodeWebSocket {
  on(event: 'unexpected-response', listener: (req: unknown, res: NodeResponse) => void): unknown;
}

/** The part of Node.js's http.IncomingMessage read from a refused upgrade. */
interface NodeResponse {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
  on(event: 'data', listener: (chunk: { toString(): string; length: number }) => void): unknown;
  on(event: 'end' | 'close' | 'error' | 'aborted', listener: () => void): unknown;
}

/** The most of a refused upgrade's body that is read (herald's problem documents are far smaller). */
const MAX_REFUSAL_BODY = 64 << 10;

/**
 * With the ws package, calls refused with the server's answer when it does not upgrade: its
 * status, problem document and Retry-After. Without a listener, ws would report only "Unexpected
 * server response" and a 1006 close. The caller closes the socket, which aborts the request.
 */
function onRefusedUpgrade(ws: WebSocketLike, refused: (err: HeraldError) => void): void {
  const node = ws as unknown as Partial<NodeWebSocket>;
  if (typeof node.on !== 'function') return;
  node.on('unexpected-response', (_req, res) => {
    const status = res.statusCode ?? 0;
    const ra = res.headers['retry-after'];
    const retryAfter = parseRetryAfter(Array.isArray(ra) ? ra[0] : ra);
    let body = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      refused(problemFromText(status, body, retryAfter, 'websocket'));
    };
    res.on('data', (chunk) => {
      if (body.length < MAX_REFUSAL_BODY) body += chunk.toString();
    });
    res.on('end', finish);
    res.on('close', finish);
    res.on('aborted', finish);
    res.on('error', finish);
  });
}

function parseFrame(data: unknown): ServerFrame | undefined {
  if (typeof data !== 'string') return undefined;
  try {
    const f = JSON.parse(data) as unknown;
    return f && typeof f === 'object' ? (f as ServerFrame) : undefined;
  } catch {
    return undefined;
  }
}
