// A node that refuses subscriber connections for its load: `503 over-capacity` when it is full,
// `429 connect-rate-limited` when an address connects too fast, each with a Retry-After. On every
// transport the client reports the refusal as a state (not an error), stays on the transport it
// tried (a refusal is not a blocked transport), waits at least the Retry-After, connects once it
// may, and receives what is published after. An early attempt, or a fallback to another transport,
// would be refused too and counted in herald_connection_refusals_total.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { HeraldClient } from '../dist/index.js';
import { refusalDelay } from '../dist/backoff.js';
import { Herald, mintToken, recorder, waitFor } from './support/herald.mjs';

const cases = [
  {
    name: 'over-capacity',
    args: ['--max-connections', '1'],
    status: 503,
    reason: 'node_full',
    // Holds the node's one slot with an SSE stream; returns what frees it.
    prepare: async (herald) => {
      const ac = new AbortController();
      const res = await fetch(herald.url + '/v1/sse?channel=refusal-hold', {
        headers: { Authorization: 'Bearer ' + mintToken(), Accept: 'text/event-stream' },
        signal: ac.signal,
      });
      assert.equal(res.status, 200, 'the stream holding the slot');
      return () => ac.abort();
    },
  },
  {
    name: 'connect-rate-limited',
    args: ['--connect-rate-per-ip', '0.5', '--connect-burst-per-ip', '1'],
    status: 429,
    reason: 'address_rate',
    // Takes the address's one token with a poll that answers at once.
    prepare: async (herald) => {
      const res = await fetch(herald.url + '/v1/poll?channel=refusal-hold&timeout=0', { headers: { Authorization: 'Bearer ' + mintToken() } });
      assert.equal(res.status, 200, 'the poll taking the token');
      await res.text();
      return () => {};
    },
  },
];

// The transports the client may use: every one from the transport under test on, so that a
// fallback after a refusal would show.
const from = { websocket: ['websocket', 'sse', 'poll'], sse: ['sse', 'poll'], poll: ['poll'] };

async function refusals(herald, reason) {
  const text = await (await fetch(herald.url + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`herald_connection_refusals_total{reason="${reason}"} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

for (const transport of ['websocket', 'sse', 'poll']) {
  describe(`a refused connect over ${transport}`, { concurrency: 2 }, () => {
    for (const c of cases) {
      test(`${c.name}: waits for the Retry-After, then connects`, { timeout: 20_000 }, async () => {
        const herald = new Herald({ args: c.args });
        await herald.start();
        const client = new HeraldClient({
          url: herald.url,
          getToken: () => mintToken(),
          transports: from[transport],
          WebSocket,
          pollTimeoutSec: 2,
          reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
        });
        try {
          const free = await c.prepare(herald);
          const r = recorder(client);
          const timed = [];
          client.on('state', (e) => timed.push({ ...e, at: Date.now() }));
          const channel = `refused-${transport}:${c.name}`;
          const sub = client.subscribe(channel, r.handlers);

          const refusal = await waitFor(() => timed.find((e) => e.state === 'disconnected' && e.error), 10_000, 'the refusal');
          assert.equal(refusal.error.status, c.status, `refusal: ${refusal.error.code} ${refusal.error.message}`);
          assert.equal(refusal.error.code, c.name);
          assert.equal(refusal.error.transport, transport, 'refused on the transport tried first');
          assert.ok(refusal.error.retryAfterMs >= 1000, `Retry-After ${refusal.error.retryAfterMs}`);
          assert.ok(refusal.retryInMs >= refusal.error.retryAfterMs, `retryInMs ${refusal.retryInMs} < Retry-After ${refusal.error.retryAfterMs}`);
          free();

          await waitFor(() => client.state === 'connected' && sub.lastId !== undefined, 10_000, 'connected after the refusal');
          const next = timed.find((e) => e.at >= refusal.at && e.state === 'connecting');
          assert.ok(next.at - refusal.at >= refusal.error.retryAfterMs, `next attempt ${next.at - refusal.at} ms after the refusal, Retry-After ${refusal.error.retryAfterMs}`);
          assert.equal(client.transport, transport, 'no fallback');
          assert.deepEqual(r.transports, []);
          assert.deepEqual(r.clientErrors, [], 'a refusal is a state, not an error');
          const n = await refusals(herald, c.reason);
          if (transport === 'poll' && c.name === 'connect-rate-limited') {
            // Every poll is a connect, so the polls after connecting are paced by refusals too:
            // at most one per Retry-After.
            const most = 1 + Math.ceil((Date.now() - refusal.at) / refusal.error.retryAfterMs);
            assert.ok(n <= most, `${n} refusals (${c.reason}) in ${Date.now() - refusal.at} ms, want at most ${most}`);
          } else {
            assert.equal(n, 1, `refusals (${c.reason}): the client came back early or fell back`);
          }

          await herald.publish(channel, 'after');
          await waitFor(() => r.messages.length === 1, 10_000, 'the message published after');
          assert.deepEqual(r.data(), ['after']);
        } finally {
          client.close();
          await herald.stop();
        }
      });
    }
  });
}

test('refusalDelay: never under the Retry-After, spread over a quarter of it, else the backoff', () => {
  for (let i = 0; i < 200; i++) {
    const d = refusalDelay(2000, 100);
    assert.ok(d >= 2000 && d <= 2500, `Retry-After 2000, backoff 100: ${d}`);
  }
  assert.equal(refusalDelay(2000, 9000), 9000);
  assert.equal(refusalDelay(undefined, 300), 300);
  assert.equal(refusalDelay(0, 300), 300);
});
