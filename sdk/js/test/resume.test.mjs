// Resume: a gateway restart (the memory broker loses its history, so the client hears a gap and
// then gets every message published after the restart once, in order), and a client that was
// cut off while 50 messages went by a channel that keeps 10 (a gap, then the 10 retained).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { HeraldClient } from '../dist/index.js';
import { Herald, mintToken, recorder, startTcpProxy, waitFor } from './support/herald.mjs';

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('gateway restart', () => {
  const herald = new Herald();
  before(() => herald.start());
  after(() => herald.stop());

  // A graceful shutdown (WebSocket: close 1001 reconnect_after_ms=N; SSE: herald.shutdown and
  // retry: N) and a crash.
  for (const [transport, signal] of [['websocket', 'SIGTERM'], ['websocket', 'SIGKILL'], ['sse', 'SIGTERM'], ['sse', 'SIGKILL'], ['poll', 'SIGKILL']]) {
    test(`${transport}: reconnects by itself, reports the gap, gets what was published after the restart once, in order (${signal})`, { timeout: 30_000 }, async () => {
      const client = new HeraldClient({
        url: herald.url,
        getToken: () => mintToken(),
        transports: [transport],
        WebSocket,
        reconnect: { initialDelayMs: 200, maxDelayMs: 1000 },
        pollTimeoutSec: 5,
      });
      const r = recorder(client);
      const ch = `restart-${transport}-${signal}:1`;
      try {
        client.subscribe(ch, r.handlers, { since: '0' });
        await herald.publishAll(ch, [1, 2, 3]);
        await waitFor(() => r.messages.length === 3, 10_000, 'the first 3');

        await herald.restart(signal);
        // Some published before the client is back (replayed), some after (live).
        await herald.publishAll(ch, [4, 5, 6]);
        await waitFor(() => r.states.filter((s) => s.state === 'connected').length === 2, 15_000, 'the reconnect');
        await waitFor(() => r.messages.length >= 6, 10_000, 'the replay');
        await herald.publishAll(ch, [7, 8, 9, 10]);
        await waitFor(() => r.messages.length >= 10, 10_000, 'live messages');
        await new Promise((res) => setTimeout(res, 300));

        assert.deepEqual(r.data(), range(1, 10), 'every message once, in order');
        assert.equal(r.gaps.length, 1, 'one gap: the restarted gateway lost its history');
        assert.equal(r.gaps[0].channel, ch);
        assert.equal(r.gaps[0].transport, transport);
        assert.equal(r.gaps[0].reason, 'broker_reset', 'the gap says why: the gateway lost its history');
        const states = r.states.map((s) => s.state);
        assert.ok(states.includes('disconnected'), states.join(','));
        assert.equal(client.transport, transport);
        const d = r.states.find((s) => s.state === 'disconnected');
        if (signal === 'SIGTERM' && transport === 'websocket') {
          assert.equal(d.code, 1001);
          assert.match(d.reason, /^reconnect_after_ms=\d+$/);
          assert.equal(d.retryInMs, Number(d.reason.split('=')[1]), 'the server hint is the delay');
        }
        if (signal === 'SIGTERM' && transport === 'sse') {
          assert.equal(d.reason, 'server going away');
          assert.ok(d.retryInMs >= 0 && d.retryInMs <= 5000, String(d.retryInMs));
        }
      } finally {
        client.close();
      }
    });
  }
});

describe('gap on trimmed history (--history-size 10)', () => {
  const herald = new Herald({ args: ['--history-size', '10'] });
  let proxy;
  before(async () => {
    await herald.start();
    proxy = await startTcpProxy(herald.port);
  });
  after(async () => {
    await proxy.close();
    await herald.stop();
  });

  for (const transport of ['websocket', 'sse', 'poll']) {
    test(`${transport}: 50 missed while disconnected: a gap, then the 10 retained, then live`, { timeout: 30_000 }, async () => {
      const client = new HeraldClient({
        url: proxy.url,
        getToken: () => mintToken(),
        transports: [transport],
        WebSocket,
        reconnect: { initialDelayMs: 200, maxDelayMs: 1000 },
        pollTimeoutSec: 5,
      });
      const r = recorder(client);
      const ch = `trim-${transport}:1`;
      try {
        client.subscribe(ch, r.handlers);
        await waitFor(() => client.lastId(ch) !== undefined, 10_000, 'the subscription to be live');
        await herald.publish(ch, 0);
        await waitFor(() => r.messages.length === 1, 10_000, 'the first message');

        proxy.block();
        await waitFor(() => client.state === 'disconnected', 10_000, 'the disconnect');
        const missed = [];
        for (let n = 1; n <= 50; n++) missed.push(await herald.publish(ch, n));
        proxy.unblock();

        await waitFor(() => r.messages.length === 11, 15_000, 'the 10 retained');
        assert.equal(r.gaps.length, 1);
        assert.equal(r.gaps[0].reason, 'trimmed', 'the gap says why: the history was trimmed');
        assert.deepEqual(r.data(), [0, ...range(41, 50)]);
        assert.deepEqual(r.messages.slice(1).map((m) => m.id), missed.slice(40));
        await herald.publish(ch, 51);
        await waitFor(() => r.messages.length === 12, 10_000, 'a live message');
        assert.equal(r.messages[11].data, 51);
        assert.equal(r.gaps.length, 1);
      } finally {
        client.close();
      }
    });
  }
});
