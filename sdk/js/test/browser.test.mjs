// The built SDK in a real browser: headless Debian chromium (driven by playwright-core) loads a
// page from another origin than herald. It receives messages over WebSocket, over SSE through a
// proxy that refuses upgrades, and over long-poll; then the gateway restarts and every client
// resumes by itself. The page records what it saw in window.__results, which this test asserts.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Herald, mintToken, startProxy } from './support/herald.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const sdkRoot = resolve(fileURLToPath(import.meta.url), '../..');
const types = { '.js': 'text/javascript', '.html': 'text/html', '.map': 'application/json', '.ts': 'text/plain' };

/** The page's origin: the test page, the built SDK under /dist, and a token endpoint. */
async function startStatic() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/token') {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store' });
      res.end(mintToken({ subscribe: ['browser:*'], publish: [] }));
      return;
    }
    let file;
    if (url.pathname === '/') file = join(sdkRoot, 'test/browser/index.html');
    else if (url.pathname.startsWith('/dist/') || url.pathname.startsWith('/src/')) file = join(sdkRoot, normalize(url.pathname));
    if (!file || !file.startsWith(sdkRoot) || !existsSync(file)) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

const herald = new Herald();
let proxy, site, context, page, profile;
const pageErrors = []; // uncaught exceptions in the page
const consoleErrors = []; // failed loads while the gateway is down and the like: for diagnosis

before(async () => {
  await herald.start();
  proxy = await startProxy(herald.port, { mode: '403' });
  site = await startStatic();
  profile = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await site?.close();
  await proxy?.close();
  await herald.stop();
});

const channels = { websocket: 'browser:ws', sse: 'browser:sse', poll: 'browser:poll' };
const results = () => page.evaluate(() => JSON.parse(JSON.stringify(window.__results)));
async function waitForCounts(n, timeout = 15_000) {
  try {
    await page.waitForFunction((n) => Object.values(window.__results).every((r) => r.messages.length >= n), n, { timeout, polling: 50 });
  } catch (err) {
    throw new Error(`${err.message}\nresults: ${JSON.stringify(await results(), null, 1)}\npage errors: ${pageErrors.join('\n')}\nconsole: ${consoleErrors.join('\n')}\nherald log: ${herald.log}`);
  }
}

test('browser: WebSocket, SSE through an upgrade-refusing proxy, long-poll, all cross-origin; then a gateway restart', { timeout: 60_000 }, async () => {
  assert.notEqual(new URL(site.url).port, String(herald.port), 'the page is on another origin');
  await page.goto(`${site.url}/?herald=${encodeURIComponent(herald.url)}&proxy=${encodeURIComponent(proxy.url)}`);
  await page.waitForFunction(() => window.__ready === true, null, { timeout: 10_000 });
  await page.waitForFunction(() => Object.values(window.__results).every((r) => r.transport !== null), null, { timeout: 15_000 });

  for (const ch of Object.values(channels)) await herald.publishAll(ch, [1, 2, 3]);
  await waitForCounts(3);
  let r = await results();
  assert.equal(r.websocket.transport, 'websocket');
  assert.equal(r.sse.transport, 'sse', 'the proxy refuses upgrades: SSE');
  assert.equal(r.poll.transport, 'poll');
  assert.ok(proxy.state.upgrades >= 1, 'the browser tried a WebSocket through the proxy first');
  for (const name of Object.keys(channels)) {
    assert.deepEqual(r[name].messages.map((m) => m.data), [1, 2, 3], name);
    assert.deepEqual(r[name].errors, [], name);
  }

  // The gateway crashes and comes back without its history.
  await herald.restart('SIGKILL');
  for (const ch of Object.values(channels)) await herald.publishAll(ch, [4, 5]);
  await page.waitForFunction(
    () => Object.values(window.__results).every((r) => r.states.filter((s) => s.state === 'connected').length >= 2),
    null,
    { timeout: 20_000, polling: 50 },
  );
  for (const ch of Object.values(channels)) await herald.publishAll(ch, [6, 7]);
  await waitForCounts(7);
  // A client whose better transport was refused while the gateway was starting may have come
  // back over the next one; it switches back within a couple of seconds.
  await page.waitForFunction(
    () => window.__results.websocket.transport === 'websocket' && window.__results.sse.transport === 'sse',
    null,
    { timeout: 10_000 },
  );
  await new Promise((res) => setTimeout(res, 300));
  r = await results();
  for (const name of Object.keys(channels)) {
    assert.deepEqual(r[name].messages.map((m) => m.data), [1, 2, 3, 4, 5, 6, 7], `${name}: each message once, in order`);
    assert.equal(r[name].gaps.length, 1, `${name}: one gap`);
    assert.equal(r[name].gaps[0].reason, 'broker_reset', `${name}: the gap says why`);
    assert.ok(r[name].states.some((s) => s.state === 'disconnected'), name);
  }
  assert.equal(r.websocket.transport, 'websocket');
  assert.equal(r.sse.transport, 'sse');
  assert.deepEqual(pageErrors, [], 'no uncaught exception in the page');
});

// A browser's WebSocket cannot see why an upgrade failed: a node at --max-connections refuses it
// with 503 and the page sees a close 1006. The client moves on to SSE, whose refusal (and its
// Retry-After, exposed to other origins) it can read, waits for it, and then connects again from
// the WebSocket.
test('browser: a node at its connection limit: the refusal is read from SSE and waited out', { timeout: 30_000 }, async () => {
  const full = new Herald({ args: ['--max-connections', '1'] });
  await full.start();
  try {
    const hold = new AbortController();
    const held = await fetch(full.url + '/v1/sse?channel=browser:hold', {
      headers: { Authorization: 'Bearer ' + mintToken(), Accept: 'text/event-stream' },
      signal: hold.signal,
    });
    assert.equal(held.status, 200, 'the stream holding the one slot');
    await page.evaluate(async (url) => {
      const { HeraldClient } = await import('/dist/index.js');
      const out = { states: [], messages: [], errors: [] };
      window.__refusal = out;
      const client = new HeraldClient({ url, getToken: () => fetch('/token').then((r) => r.text()), reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
      window.__refusalClient = client;
      client.on('state', (e) =>
        out.states.push({ state: e.state, transport: e.transport, retryInMs: e.retryInMs, at: Date.now(), error: e.error && { code: e.error.code, status: e.error.status, transport: e.error.transport, retryAfterMs: e.error.retryAfterMs } }),
      );
      client.on('error', (e) => out.errors.push(e.code));
      client.subscribe('browser:refused', (m) => out.messages.push(m.data));
    }, full.url);
    const refusal = () => page.evaluate(() => JSON.parse(JSON.stringify(window.__refusal)));
    await page.waitForFunction(() => window.__refusal.states.some((s) => s.state === 'disconnected'), null, { timeout: 10_000 });
    const first = (await refusal()).states.find((s) => s.state === 'disconnected');
    assert.deepEqual({ ...first.error, retryAfterMs: undefined }, { code: 'over-capacity', status: 503, transport: 'sse', retryAfterMs: undefined }, 'heard over SSE');
    assert.ok(first.error.retryAfterMs >= 1000 && first.retryInMs >= first.error.retryAfterMs, JSON.stringify(first));
    hold.abort();

    await page.waitForFunction(() => window.__refusalClient.state === 'connected', null, { timeout: 10_000 });
    const r = await refusal();
    const next = r.states.find((s) => s.at >= first.at && s.state === 'connecting');
    assert.ok(next.at - first.at >= first.error.retryAfterMs, `next attempt ${next.at - first.at} ms after the refusal`);
    assert.equal(r.states.at(-1).transport, 'websocket', 'back on the WebSocket: nothing was demoted');
    assert.deepEqual(r.errors, [], 'a refusal is a state, not an error');
    await page.waitForFunction(() => window.__refusalClient.lastId('browser:refused') !== undefined, null, { timeout: 10_000 });
    await full.publish('browser:refused', 'after');
    await page.waitForFunction(() => window.__refusal.messages.length === 1, null, { timeout: 10_000 });
  } finally {
    await page.evaluate(() => window.__refusalClient?.close());
    await full.stop();
  }
});
