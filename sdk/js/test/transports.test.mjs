// Round trips over each transport against a real herald: order, event names, several channels
// on one connection, a live-only subscription, unsubscribe and close.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { HeraldClient } from '../dist/index.js';
import { Herald, delay, mintToken, recorder, waitFor } from './support/herald.mjs';

const herald = new Herald();
before(() => herald.start());
after(() => herald.stop());

for (const transport of ['websocket', 'sse', 'poll']) {
  describe(`over ${transport}`, () => {
    test('round trip: order, events, two channels, live-only, unsubscribe', { timeout: 30_000 }, async () => {
      let tokens = 0;
      const client = new HeraldClient({
        url: herald.url,
        getToken: async () => (tokens++, mintToken()),
        transports: [transport],
        WebSocket,
        pollTimeoutSec: 5,
      });
      const r = recorder(client);
      const a = `rt-${transport}:a`;
      const b = `rt-${transport}:b`;
      try {
        // Something published before subscribing, read back with since=0.
        const early = await herald.publish(a, { n: 0 });
        const subA = client.subscribe(a, r.handlers, { since: '0' });
        await waitFor(() => client.state === 'connected', 10_000, 'connected');
        assert.equal(client.transport, transport);
        await waitFor(() => r.messages.length === 1, 10_000, 'the early message');
        assert.equal(r.messages[0].id, early);

        const ids = [];
        for (let n = 1; n <= 5; n++) ids.push(await herald.publish(a, { n }, n % 2 ? { event: 'tick' } : {}));
        await waitFor(() => r.messages.length === 6, 10_000, '5 messages');
        assert.deepEqual(r.data(), [0, 1, 2, 3, 4, 5].map((n) => ({ n })));
        assert.deepEqual(r.messages.slice(1).map((m) => m.id), ids);
        assert.deepEqual(r.messages.slice(1).map((m) => m.event), ['tick', undefined, 'tick', undefined, 'tick']);
        assert.ok(r.messages.every((m) => m.channel === a));
        assert.equal(subA.lastId, ids[4]);

        // A second channel, live only, on the same connection: its position is pinned once the
        // subscription is live (WebSocket: subscribed.last_id; SSE: the cursor; poll: the cursor).
        const rb = [];
        const subB = client.subscribe(b, (m) => rb.push(m));
        await waitFor(() => subB.lastId !== undefined, 10_000, 'channel b to be live');
        await herald.publish(b, 'b1');
        await herald.publish(a, { n: 6 });
        await herald.publish(b, 'b2');
        await waitFor(() => rb.length === 2 && r.messages.length === 7, 10_000, 'messages on both channels');
        assert.deepEqual(rb.map((m) => m.data), ['b1', 'b2']);

        // Unsubscribed: nothing more for a; b goes on.
        subA.unsubscribe();
        await delay(100);
        await herald.publish(a, { n: 7 });
        await herald.publish(b, 'b3');
        await waitFor(() => rb.length === 3, 10_000, 'b3');
        await delay(200);
        assert.equal(r.messages.length, 7, 'no message after unsubscribe');
        assert.deepEqual(r.gaps, []);
        assert.deepEqual(r.errors, []);
        assert.deepEqual(r.clientErrors, []);
        assert.ok(tokens >= 1);
        assert.deepEqual(
          r.states.map((s) => s.state),
          ['connecting', 'connected'],
          'one connect, no reconnect',
        );
      } finally {
        client.close();
      }
      assert.equal(client.state, 'closed');
      assert.equal(r.states.at(-1).state, 'closed');
    });
  });
}

test('handlers of a channel run in subscription order; a throwing handler does not stop the others', { timeout: 20_000 }, async () => {
  const client = new HeraldClient({ url: herald.url, getToken: () => mintToken(), WebSocket });
  const calls = [];
  const errors = [];
  try {
    const ch = 'order:1';
    client.subscribe(ch, { onMessage: (m) => calls.push(['first', m.data]) }, { since: '0' });
    client.subscribe(ch, {
      onMessage: () => {
        throw new Error('boom');
      },
      onError: (e) => errors.push(e),
    });
    client.subscribe(ch, (m) => calls.push(['third', m.data]));
    await herald.publish(ch, 1);
    await herald.publish(ch, 2);
    await waitFor(() => calls.length === 4, 10_000, 'deliveries');
    assert.deepEqual(calls, [['first', 1], ['third', 1], ['first', 2], ['third', 2]]);
    assert.equal(errors.length, 2);
    assert.equal(errors[0].code, 'handler');
  } finally {
    client.close();
  }
});

test('a channel the token does not allow fails with forbidden; the others work', { timeout: 20_000 }, async () => {
  const client = new HeraldClient({ url: herald.url, getToken: () => mintToken({ subscribe: ['ok:*'] }), WebSocket });
  const r = recorder(client);
  try {
    const ok = [];
    client.subscribe('secret:1', r.handlers);
    client.subscribe('ok:1', (m) => ok.push(m.data), { since: '0' });
    await waitFor(() => r.errors.length === 1, 10_000, 'the error');
    assert.equal(r.errors[0].code, 'forbidden');
    assert.equal(r.errors[0].channel, 'secret:1');
    await herald.publish('ok:1', 'yes');
    await waitFor(() => ok.length === 1, 10_000, 'the allowed channel');
    assert.equal(client.lastId('secret:1'), undefined);
  } finally {
    client.close();
  }
});

test('client.publish retries with one idempotency key and returns the id', { timeout: 20_000 }, async () => {
  const client = new HeraldClient({ url: herald.url, getToken: () => mintToken(), WebSocket });
  try {
    const got = [];
    client.subscribe('pub:1', (m) => got.push(m), { since: '0' });
    const { id } = await client.publish('pub:1', { hello: 'world' }, { event: 'greeting', idempotencyKey: 'k-1' });
    const again = await client.publish('pub:1', { hello: 'world' }, { event: 'greeting', idempotencyKey: 'k-1' });
    assert.equal(again.id, id, 'the same key answers the first id');
    await waitFor(() => got.length === 1, 10_000, 'the message');
    await delay(200);
    assert.equal(got.length, 1);
    assert.deepEqual(got[0], { channel: 'pub:1', id, event: 'greeting', data: { hello: 'world' } });
  } finally {
    client.close();
  }
});

test('websocket: subscribing 120 channels at once stays within the frame rate limit of the gateway (100 per 10 s)', { timeout: 40_000 }, async () => {
  const client = new HeraldClient({ url: herald.url, getToken: () => mintToken(), WebSocket, transports: ['websocket'] });
  const r = recorder(client);
  try {
    const got = new Map();
    for (let i = 0; i < 120; i++) client.subscribe(`many:${i}`, (m) => got.set(m.channel, m.data), { since: '0' });
    await herald.publish('many:119', 'last');
    await waitFor(() => got.get('many:119') === 'last', 20_000, 'the 120th channel');
    assert.ok(!r.states.some((s) => s.state === 'disconnected'), 'not closed for sending too many frames');
  } finally {
    client.close();
  }
});
