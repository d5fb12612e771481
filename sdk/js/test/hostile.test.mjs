// Attacker moves against a real herald with a client this project did not write: the `ws` npm
// package and Node's own http client, used raw (not through the SDK). Each test is one move the
// adversarial review of issue 11 made; the Go side of the same moves is in
// cmd/herald/hostile_*_test.go. What is asserted is what a user of the gateway would check: other
// clients keep working, nothing stays behind, every bad input gets a clear refusal.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { Herald, mintToken, waitFor } from './support/herald.mjs';

const herald = new Herald();
before(() => herald.start());
after(() => herald.stop());

const wsURL = () => herald.url.replace('http', 'ws') + '/v1/ws';

/** Opens a raw WebSocket with a bearer token and collects its frames and close. */
function openWS(token = mintToken()) {
  const ws = new WebSocket(wsURL(), { headers: { Authorization: 'Bearer ' + token } });
  const st = { ws, frames: [], closed: null };
  ws.on('message', (d) => st.frames.push(JSON.parse(d.toString())));
  ws.on('close', (code, reason) => (st.closed = { code, reason: reason.toString() }));
  ws.on('error', () => {});
  st.open = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return st;
}

/** A sample of herald's /metrics: the value of the first series named name (labels ignored). */
async function metric(name) {
  const text = await (await fetch(herald.url + '/metrics')).text();
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ') || line.startsWith(name + '{')) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      seen = true;
    }
  }
  assert.ok(seen, `metric ${name} is served`);
  return sum;
}

/** A WebSocket close frame as a client sends it (masked), with any payload. */
function maskedClose(payload) {
  const mask = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.from(payload).map((b, i) => b ^ mask[i % 4]);
  return Buffer.concat([Buffer.from([0x88, 0x80 | body.length]), mask, body]);
}

/**
 * Sends 500 frames in one socket write: all of them reach herald at once. (The flood sent frame
 * by frame, still going after the close, is a test of its own.)
 */
function flood(ws, sendOne) {
  ws._socket.cork();
  for (let i = 0; i < 500; i++) sendOne();
  ws._socket.uncork();
}

function closePayload(code, reason = '') {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, Buffer.from(reason)]);
}

test('subscribes in flight when the socket is reset leave nothing behind', { timeout: 60_000 }, async () => {
  for (let round = 0; round < 40; round++) {
    const st = openWS();
    await st.open;
    for (let i = 0; i < 32; i++) {
      st.ws.send(JSON.stringify({ type: 'subscribe', id: i + 1, channel: `leak:${round}:${i}`, since: '0' }));
    }
    st.ws.terminate(); // a reset, not a close handshake
  }
  await waitFor(async () => (await metric('herald_subscriptions')) === 0, 15_000, 'no subscription left');
  // The node still serves: a new subscriber gets a published message.
  const st = openWS();
  await st.open;
  st.ws.send(JSON.stringify({ type: 'subscribe', id: 1, channel: 'leak:after' }));
  await waitFor(() => st.frames.some((f) => f.type === 'subscribed'), 5_000, 'subscribed');
  await herald.publish('leak:after', { ok: true });
  await waitFor(() => st.frames.some((f) => f.type === 'message'), 5_000, 'the message');
  st.ws.close();
});

test('invalid UTF-8 in published data is refused and breaks no subscriber', { timeout: 30_000 }, async () => {
  const channel = 'utf8:attack';
  const good = await herald.publish(channel, { n: 1 });
  const body = Buffer.concat([Buffer.from('{"data":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
  const res = await new Promise((resolve, reject) => {
    const req = http.request(`${herald.url}/v1/channels/${channel}/messages`, {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + mintToken(), 'Content-Type': 'application/json', 'Content-Length': body.length },
    }, (r) => {
      let text = '';
      r.on('data', (c) => (text += c));
      r.on('end', () => resolve({ status: r.statusCode, type: r.headers['content-type'], text }));
    });
    req.on('error', reject);
    req.end(body);
  });
  assert.equal(res.status, 400, res.text);
  assert.match(res.type, /application\/problem\+json/);

  // Over WebSocket: the frame itself is valid UTF-8 only if the bytes are escaped, so the
  // attacker sends a binary frame holding the same bytes; it must not be stored either.
  const pub = openWS();
  await pub.open;
  pub.ws.send(Buffer.concat([Buffer.from(`{"type":"publish","id":9,"channel":"${channel}","data":"`), Buffer.from([0xff]), Buffer.from('"}')]));
  await waitFor(() => pub.frames.some((f) => f.type === 'error') || pub.closed, 5_000, 'a refusal');
  assert.ok(!pub.frames.some((f) => f.type === 'ack'), 'nothing acknowledged');

  const after = await herald.publish(channel, { n: 2 });
  const sub = openWS();
  await sub.open;
  sub.ws.send(JSON.stringify({ type: 'subscribe', id: 1, channel, since: '0' }));
  await waitFor(() => sub.frames.filter((f) => f.type === 'message').length === 2, 5_000, 'the replay');
  assert.deepEqual(sub.frames.filter((f) => f.type === 'message').map((f) => f.id), [good, after]);
  assert.equal(sub.closed, null, 'the subscriber is still connected');
  sub.ws.close();
  pub.ws.close();
});

for (const [name, payload] of [
  ['1005 (reserved)', closePayload(1005)],
  ['1006 (reserved)', closePayload(1006)],
  ['999 (below the range)', closePayload(999)],
  ['5000 (above the range)', closePayload(5000)],
  ['a one-byte payload', Buffer.from([3])],
  ['a reason that is not UTF-8', Buffer.concat([closePayload(1000), Buffer.from([0xc3, 0x28])])],
]) {
  test(`a close frame with ${name} is answered with 1002`, { timeout: 10_000 }, async () => {
    const st = openWS();
    await st.open;
    st.ws._socket.write(maskedClose(payload));
    await waitFor(() => st.closed, 5_000, 'the close');
    assert.equal(st.closed.code, 1002);
  });
}

test('a valid close code is echoed', { timeout: 10_000 }, async () => {
  const st = openWS();
  await st.open;
  st.ws.close(4321, 'bye');
  await waitFor(() => st.closed, 5_000, 'the close');
  assert.equal(st.closed.code, 4321);
});

test('a flood of WebSocket pings counts toward the frame limit', { timeout: 10_000 }, async () => {
  const st = openWS();
  await st.open;
  flood(st.ws, () => st.ws.ping());
  await waitFor(() => st.closed, 5_000, 'the close');
  assert.equal(st.closed.code, 4029);
});

test('a flood sent frame by frame, still sending after the close, reads 4029', { timeout: 10_000 }, async () => {
  // Each frame is its own write, and the client goes on writing after herald closed: herald
  // lingers (shut down for writing, input dropped) so the close frame is not destroyed by a reset.
  const st = openWS();
  await st.open;
  for (let i = 0; i < 500 && !st.closed; i++) {
    st.ws.ping();
    await new Promise((r) => setImmediate(r));
  }
  await waitFor(() => st.closed, 5_000, 'the close');
  assert.equal(st.closed.code, 4029);
});

test('a flood of forbidden subscribes counts toward the frame limit', { timeout: 10_000 }, async () => {
  const st = openWS(mintToken({ subscribe: ['allowed:*'] }));
  await st.open;
  let id = 0;
  flood(st.ws, () => st.ws.send(JSON.stringify({ type: 'subscribe', id: ++id, channel: 'secret:x' })));
  await waitFor(() => st.closed, 5_000, 'the close');
  assert.equal(st.closed.code, 4029);
});

test('another site cannot read with the cookie when no origin is configured', { timeout: 10_000 }, async () => {
  const channel = 'cors:private';
  await herald.publish(channel, { secret: 1 });
  for (const origin of ['https://evil.example', 'null']) {
    const res = await fetch(`${herald.url}/v1/channels/${channel}/messages?since=0`, {
      headers: { Origin: origin, Cookie: 'herald_token=' + mintToken() },
    });
    assert.notEqual(res.headers.get('access-control-allow-credentials'), 'true', origin);
    const allow = res.headers.get('access-control-allow-origin');
    assert.ok(allow === null || allow === '*', `${origin}: allow-origin ${allow}`);
    await res.arrayBuffer();
  }
});
