// Test support: a real `herald serve` process, tokens, publishing, and proxies that get in the
// way (one that refuses WebSocket upgrades, one that cuts every connection on demand).
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { buildHerald, heraldBin } from './build-herald.mjs';

export const SECRET = 'sdk-js-tests-hmac-secret-0123456789abcdef';

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 JWT for herald. */
export function mintToken({ subscribe = ['*'], publish = ['*'], ttlSec = 3600, sub = 'sdk-js-test' } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url({ alg: 'HS256', typ: 'JWT' });
  const payload = b64url({ sub, iat: now, exp: now + ttlSec, herald: { subscribe, publish } });
  const sig = createHmac('sha256', SECRET).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls cond() every 20 ms until it is truthy, or fails after timeoutMs. */
export async function waitFor(cond, timeoutMs = 10_000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/** A herald serve process on a free loopback port; restart keeps the port. */
export class Herald {
  constructor({ args = [] } = {}) {
    this.args = args;
    this.port = 0;
    this.proc = undefined;
    this.log = '';
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!existsSync(heraldBin)) buildHerald();
    if (!this.port) this.port = await freePort();
    const proc = spawn(heraldBin, ['serve', '--listen', `127.0.0.1:${this.port}`, '--jwt-secret', SECRET, '--log-level', 'warn', ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    running.add(proc);
    proc.stdout.on('data', (d) => (this.log += d));
    proc.stderr.on('data', (d) => (this.log += d));
    proc.on('exit', () => running.delete(proc));
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error('herald exited at start:\n' + this.log);
      try {
        return (await fetch(this.url + '/healthz')).ok;
      } catch {
        return false;
      }
    }, 15_000, 'herald to listen');
    return this;
  }

  /** Stops the process (SIGKILL: a crash; SIGTERM: a graceful shutdown) and waits for it. */
  async stop(signal = 'SIGKILL') {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await exited;
  }

  async restart(signal = 'SIGKILL') {
    await this.stop(signal);
    await this.start();
  }

  /** Publishes one message; returns its id. */
  async publish(channel, data, { event, token = mintToken() } = {}) {
    const res = await fetch(`${this.url}/v1/channels/${encodeURIComponent(channel)}/messages`, {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify(event === undefined ? { data } : { data, event }),
    });
    if (res.status !== 201) throw new Error(`publish: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()).id;
  }

  /** Publishes data values one after the other; returns their ids. */
  async publishAll(channel, values) {
    const ids = [];
    for (const v of values) ids.push(await this.publish(channel, v));
    return ids;
  }
}

/**
 * An HTTP proxy in front of herald that forwards plain requests (streaming the responses, so SSE
 * and long-poll work) but refuses WebSocket upgrades, as some corporate proxies do:
 * mode '403' answers them with 403, 'drop' closes the socket without a word, 'pass' forwards.
 * blockSSE makes it answer /v1/sse with 502 too.
 */
export async function startProxy(targetPort, { mode = '403', blockSSE = false } = {}) {
  const sockets = new Set();
  const state = { mode, blockSSE, upgrades: 0 };
  const server = http.createServer((req, res) => {
    if (state.blockSSE && req.url.startsWith('/v1/sse')) {
      res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end('proxy: streaming is not allowed here');
      return;
    }
    const headers = { ...req.headers, host: `127.0.0.1:${targetPort}` };
    const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers, agent: false }, (ur) => {
      const h = { ...ur.headers };
      delete h.connection;
      delete h['transfer-encoding'];
      delete h['keep-alive'];
      res.writeHead(ur.statusCode, h);
      res.flushHeaders();
      ur.on('data', (c) => res.write(c));
      ur.on('end', () => res.end());
      ur.on('error', () => res.destroy());
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
    res.on('close', () => up.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket, head) => {
    state.upgrades++;
    if (state.mode === '403') {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 27\r\nConnection: close\r\n\r\nproxy: upgrades not allowed');
      return;
    }
    if (state.mode === 'drop') {
      socket.destroy();
      return;
    }
    const up = net.connect(targetPort, '127.0.0.1', () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + '\r\n');
      if (head?.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
    socket.on('close', () => up.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    state,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(r);
      }),
  };
}

/** A TCP proxy that can cut every connection and refuse new ones until unblocked. */
export async function startTcpProxy(targetPort) {
  const pairs = new Set();
  let blocked = false;
  const server = net.createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const up = net.connect(targetPort, '127.0.0.1');
    const pair = { client, up };
    pairs.add(pair);
    const end = () => {
      client.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    block() {
      blocked = true;
      for (const { client, up } of pairs) {
        client.destroy();
        up.destroy();
      }
      pairs.clear();
    },
    unblock() {
      blocked = false;
    },
    close: () =>
      new Promise((r) => {
        for (const { client, up } of pairs) {
          client.destroy();
          up.destroy();
        }
        server.close(r);
      }),
  };
}

/** Records what a subscription and a client report. */
export function recorder(client) {
  const r = { messages: [], gaps: [], errors: [], states: [], transports: [], clientErrors: [] };
  client.on('state', (e) => r.states.push(e));
  client.on('transport', (e) => r.transports.push(e));
  client.on('error', (e) => r.clientErrors.push(e));
  r.handlers = {
    onMessage: (m) => r.messages.push(m),
    onGap: (g) => r.gaps.push(g),
    onError: (e) => r.errors.push(e),
  };
  r.data = () => r.messages.map((m) => m.data);
  return r;
}
