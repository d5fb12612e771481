import { Backoff, refusalDelay } from './backoff.js';
import { HeraldError, problemError, refusedStatus } from './errors.js';
import { blockedStatus, endpoint, gapReason, networkError, OpenError, sleep, type Host, type Transport } from './transport.js';
import type { FetchLike, GapReason, HeraldMessage } from './types.js';

export interface PollResponse {
  messages: Array<{ channel: string; id: string; event?: string; data: unknown }>;
  cursor: string;
  recovered: boolean;
  /** The answer stopped short (1000 messages of a channel, or its byte budget): more may follow the cursor. */
  more?: boolean;
  /** The channels with a gap and why (a gateway that predates reasons sends bare names). */
  gaps?: Array<{ channel: string; reason?: GapReason } | string>;
}

/** One GET /v1/poll. Throws HeraldError (code `network` for transport problems, with status for HTTP ones). */
export async function pollOnce(
  fetch: FetchLike,
  baseUrl: string,
  token: string,
  channels: string[],
  cursor: string | undefined,
  timeoutSec: number,
  signal?: AbortSignal,
  budgetMs = timeoutSec * 1000 + 10_000,
): Promise<PollResponse> {
  const q = new URLSearchParams();
  for (const ch of channels) q.append('channel', ch);
  if (cursor !== undefined) q.set('since', cursor);
  q.set('timeout', String(timeoutSec));
  const ac = new AbortController();
  const abort = () => ac.abort();
  signal?.addEventListener('abort', abort);
  const timer = setTimeout(abort, budgetMs);
  try {
    let res: Response;
    try {
      res = await fetch(endpoint(baseUrl, 'v1/poll', q), { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store', signal: ac.signal });
    } catch (err) {
      throw networkError(err, 'poll');
    }
    if (!res.ok) throw await problemError(res, 'poll');
    let body: PollResponse;
    try {
      body = (await res.json()) as PollResponse;
    } catch (err) {
      throw networkError(err, 'poll');
    }
    if (!body || !Array.isArray(body.messages) || typeof body.cursor !== 'string') {
      throw new HeraldError('network', 'poll: unexpected response', { transport: 'poll', status: res.status });
    }
    return body;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
}

/**
 * HTTP long-polling: GET /v1/poll with the channels and their cursor, again and again. A change
 * of channels cancels the request in flight and asks again with the new set.
 */
export class PollTransport implements Transport {
  readonly name = 'poll' as const;
  private closed = false;
  private started = false;
  private token: string | undefined;
  private ac: AbortController | undefined;
  private channels: string[] = [];
  private first: { channels: string[]; resp: PollResponse } | undefined;
  private quick = 0; // answers asked for at once in a row (never more than 2: no tight loop)
  private wake: (() => void) | undefined;
  /** Spaces the polls the node refuses in a row (429, 503) when it gives no Retry-After. */
  private readonly refusals = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000 });
  private readonly done = new AbortController(); // aborted by close

  constructor(
    private readonly host: Host,
    private readonly fetch: FetchLike,
  ) {}

  async open(): Promise<void> {
    const channels = this.host.channels();
    if (channels.length === 0) return;
    const ac = new AbortController();
    this.ac = ac;
    try {
      this.token = await this.host.getToken();
      const cursor = await this.host.cursorFor(channels);
      const resp = await pollOnce(this.fetch, this.host.settings.baseUrl, this.token, channels, cursor, 0, ac.signal, this.host.settings.connectTimeoutMs);
      this.first = { channels, resp };
    } catch (err) {
      const e = err instanceof HeraldError ? err : networkError(err, 'poll');
      const transport = e.code === 'network' || (e.status !== undefined && blockedStatus(e.status));
      throw new OpenError(transport, e, e.retryAfterMs);
    }
  }

  start(): void {
    this.started = true;
    void this.loop();
  }

  update(): void {
    if (!this.started || this.closed) return;
    const want = this.host.channels();
    if (want.length === this.channels.length && want.every((c, i) => c === this.channels[i])) return;
    this.ac?.abort();
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.done.abort();
    this.ac?.abort();
    this.wake?.();
  }

  private async loop(): Promise<void> {
    if (this.first) {
      const { channels, resp } = this.first;
      this.first = undefined;
      this.channels = channels;
      this.process(channels, resp);
    }
    let authRetried = false;
    while (!this.closed) {
      const channels = this.host.channels();
      this.channels = channels;
      if (channels.length === 0) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
        continue;
      }
      const ac = new AbortController();
      this.ac = ac;
      let resp: PollResponse;
      try {
        this.token ??= await this.host.getToken();
        const cursor = await this.host.cursorFor(channels);
        // A channel without a position (just subscribed, live only) gets one from an answer
        // that does not wait, so the subscription is confirmed at once as on the other transports.
        const missing = channels.some((c) => this.host.position(c) === undefined);
        this.quick = missing ? this.quick + 1 : 0;
        const wait = missing && this.quick <= 2 ? 0 : this.host.settings.pollTimeoutSec;
        resp = await pollOnce(this.fetch, this.host.settings.baseUrl, this.token, channels, cursor, wait, ac.signal);
      } catch (err) {
        if (this.closed) return;
        if (ac.signal.aborted) continue; // the channels changed
        const e = err instanceof HeraldError ? err : networkError(err, 'poll');
        if (e.status === 401 && !authRetried) {
          authRetried = true;
          this.token = undefined; // a fresh token on the next request
          continue;
        }
        if (refusedStatus(e.status)) {
          // The node is full or this client polls too fast. The position is kept and nothing is
          // lost: poll again after the backoff delay, never before the Retry-After.
          // A change of channels does not cut the wait short; close does.
          await sleep(refusalDelay(e.retryAfterMs, this.refusals.next()), this.done.signal);
          continue;
        }
        if (e.status === 400 || e.status === 403) {
          this.host.streamError(this, e);
        }
        this.host.lost(this, { error: e, ...(e.status !== undefined ? { code: e.status } : {}) });
        return;
      }
      authRetried = false;
      this.refusals.reset();
      if (this.closed) return;
      this.process(channels, resp);
    }
  }

  private process(channels: string[], resp: PollResponse): void {
    const gaps = (resp.gaps ?? []).map((g) => (typeof g === 'string' ? { channel: g, reason: undefined } : g));
    for (const g of gaps) this.host.gap(this, g.channel, this.host.position(g.channel), true, gapReason(g.reason));
    for (const m of resp.messages) {
      const msg: HeraldMessage = { channel: m.channel, id: m.id, data: m.data };
      if (m.event) msg.event = m.event;
      this.host.message(this, msg);
    }
    this.host.cursor(this, channels, resp.cursor);
    // A gap without messages means the channel's log has nothing after our position: it was
    // lost (a gateway restart with the memory broker) or expired. The cursor the gateway returns
    // keeps our old position, and asking again from it reports the gap again at once, in a tight
    // loop. Whatever the log holds from now on is new to us, so read it from the start.
    for (const { channel } of gaps) {
      if (!resp.messages.some((m) => m.channel === channel)) this.host.rewind(this, channel);
    }
  }
}
