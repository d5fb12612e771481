// Transport fallback through a proxy that refuses WebSocket upgrades (403, or a dropped socket)
// and, in one case, streaming too; and the way back to WebSocket once upgrades get through.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { HeraldClient } from '../dist/index.js';
import { Herald, delay, mintToken, recorder, startProxy, waitFor } from './support/herald.mjs';

const herald = new Herald();
before(() => herald.start());
after(() => herald.stop());

async function roundTrip(client, r, ch) {
  client.subscribe(ch, r.handlers, { since: '0' });
  await waitFor(() => client.state === 'connected', 15_000, 'connected');
  const ids = await herald.publishAll(ch, [1, 2, 3]);
  await waitFor(() => r.messages.length === 3, 10_000, 'messages');
  assert.deepEqual(r.data(), [1, 2, 3]);
  assert.deepEqual(r.messages.map((m) => m.id), ids);
}

for (const mode of ['403', 'drop']) {
  test(`upgrade refused by the proxy (${mode}): falls back to SSE at once`, { timeout: 20_000 }, async () => {
    const proxy = await startProxy(herald.port, { mode });
    const client = new HeraldClient({ url: proxy.url, getToken: () => mintToken(), WebSocket });
    const r = recorder(client);
    try {
      const t0 = Date.now();
      await roundTrip(client, r, `fallback-${mode}:1`);
      assert.equal(client.transport, 'sse');
      assert.ok(proxy.state.upgrades >= 1, 'WebSocket was tried first');
      assert.deepEqual(r.states.map((s) => [s.state, s.transport]), [['connecting', 'websocket'], ['connected', 'sse']]);
      assert.ok(Date.now() - t0 < 5000, 'no backoff before the fallback');
      assert.deepEqual(r.clientErrors, []);
    } finally {
      client.close();
      await proxy.close();
    }
  });
}

test('upgrades and streaming both refused: long-poll', { timeout: 20_000 }, async () => {
  const proxy = await startProxy(herald.port, { mode: '403', blockSSE: true });
  const client = new HeraldClient({ url: proxy.url, getToken: () => mintToken(), WebSocket, pollTimeoutSec: 5 });
  const r = recorder(client);
  try {
    await roundTrip(client, r, 'fallback-poll:1');
    assert.equal(client.transport, 'poll');
  } finally {
    client.close();
    await proxy.close();
  }
});

test('back to WebSocket when upgrades get through again, without losing or repeating a message', { timeout: 30_000 }, async () => {
  const proxy = await startProxy(herald.port, { mode: '403' });
  const client = new HeraldClient({ url: proxy.url, getToken: () => mintToken(), WebSocket, upgradeRetryMs: 500 });
  const r = recorder(client);
  const ch = 'upgrade:1';
  let n = 0;
  let publishing = true;
  const publisher = (async () => {
    while (publishing) {
      await herald.publish(ch, ++n);
      await delay(10);
    }
  })();
  try {
    client.subscribe(ch, r.handlers, { since: '0' });
    await waitFor(() => client.transport === 'sse', 10_000, 'SSE');
    await waitFor(() => r.messages.length >= 5, 10_000, 'messages over SSE');
    const probesBefore = proxy.state.upgrades;
    await delay(1200);
    assert.ok(proxy.state.upgrades > probesBefore, 'the client tried WebSocket again');
    assert.equal(client.transport, 'sse');
    proxy.state.mode = 'pass';
    await waitFor(() => client.transport === 'websocket', 10_000, 'the upgrade');
    const atSwitch = r.messages.length;
    await waitFor(() => r.messages.length >= atSwitch + 5, 10_000, 'messages over WebSocket');
  } finally {
    publishing = false;
    await publisher;
  }
  try {
    await waitFor(() => r.messages.length === n, 10_000, 'every message');
    assert.deepEqual(r.data(), Array.from({ length: n }, (_, i) => i + 1));
    assert.deepEqual(r.transports, [{ from: 'sse', to: 'websocket' }]);
    assert.ok(!r.states.some((s) => s.state === 'disconnected'), 'the switch is not a disconnect');
    assert.deepEqual(r.gaps, []);
  } finally {
    client.close();
    await proxy.close();
  }
});
