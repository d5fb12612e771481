// Tokens: getToken on connect, again on the server's refresh frame (WebSocket, without a
// disconnect), and after an expiry the server enforces (WebSocket 4001, SSE herald.token-expired).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { HeraldClient } from '../dist/index.js';
import { Herald, delay, mintToken, recorder, waitFor } from './support/herald.mjs';

// Heartbeats every second, so the gateway notices a token's end quickly.
const herald = new Herald({ args: ['--heartbeat', '1s'] });
before(() => herald.start());
after(() => herald.stop());

test('websocket: the refresh frame makes the client send a fresh token; the connection stays', { timeout: 20_000 }, async () => {
  const issued = [];
  const client = new HeraldClient({
    url: herald.url,
    WebSocket,
    // The first token lives 3 s (the gateway asks for a new one within a minute of expiry).
    getToken: async () => (issued.push(Date.now()), mintToken({ ttlSec: issued.length === 1 ? 3 : 3600 })),
  });
  const r = recorder(client);
  try {
    client.subscribe('refresh:1', r.handlers, { since: '0' });
    await waitFor(() => issued.length >= 2, 5000, 'the refresh');
    await delay(3500); // past the first token's expiry
    await herald.publish('refresh:1', 'still here');
    await waitFor(() => r.messages.length === 1, 5000, 'a message after the first token expired');
    assert.deepEqual(r.states.map((s) => s.state), ['connecting', 'connected'], 'no disconnect');
  } finally {
    client.close();
  }
});

test('websocket: when refreshing fails the server closes with 4001; the client reconnects with a new token and resumes', { timeout: 20_000 }, async () => {
  let calls = 0;
  const client = new HeraldClient({
    url: herald.url,
    WebSocket,
    getToken: async () => {
      calls++;
      if (calls === 2) throw new Error('token service down'); // the refresh fails
      return mintToken({ ttlSec: calls === 1 ? 2 : 3600 });
    },
  });
  const r = recorder(client);
  try {
    client.subscribe('expire-ws:1', r.handlers, { since: '0' });
    await herald.publish('expire-ws:1', 1);
    await waitFor(() => r.states.some((s) => s.state === 'disconnected'), 8000, 'the 4001');
    await herald.publish('expire-ws:1', 2);
    const d = r.states.find((s) => s.state === 'disconnected');
    assert.equal(d.code, 4001);
    assert.equal(d.retryInMs, 0, 'reconnects at once');
    await waitFor(() => r.messages.length === 2, 8000, 'both messages');
    assert.deepEqual(r.data(), [1, 2]);
    assert.ok(r.clientErrors.some((e) => e.code === 'get-token'), 'the failed refresh is reported');
    assert.deepEqual(r.gaps, []);
  } finally {
    client.close();
  }
});

test('sse: herald.token-expired ends the stream; the client reconnects at once with a new token and resumes', { timeout: 20_000 }, async () => {
  let calls = 0;
  const client = new HeraldClient({
    url: herald.url,
    transports: ['sse'],
    getToken: async () => (calls++, mintToken({ ttlSec: calls === 1 ? 2 : 3600 })),
  });
  const r = recorder(client);
  try {
    client.subscribe('expire-sse:1', r.handlers, { since: '0' });
    await herald.publish('expire-sse:1', 1);
    await waitFor(() => r.states.some((s) => s.state === 'disconnected'), 8000, 'the expiry');
    await herald.publish('expire-sse:1', 2);
    await waitFor(() => r.messages.length === 2, 8000, 'both messages');
    const d = r.states.find((s) => s.state === 'disconnected');
    assert.equal(d.reason, 'token expired');
    assert.equal(d.retryInMs, 0);
    assert.deepEqual(r.data(), [1, 2]);
    assert.ok(calls >= 2);
    assert.deepEqual(r.gaps, []);
  } finally {
    client.close();
  }
});
