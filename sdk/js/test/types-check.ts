// Compiled (not run) by `npm run typecheck`: the published declarations accept what the README
// shows, with the `ws` package's WebSocket in Node.js and the browser's own classes.
import WebSocket from 'ws';
import { HeraldClient, HeraldError, type ConnectionEvent, type HeraldMessage, type Subscription } from '../dist/index.js';

interface Order {
  status: string;
}

const client = new HeraldClient({
  url: 'http://127.0.0.1:8080',
  getToken: async () => 'token',
  WebSocket,
  transports: ['websocket', 'sse', 'poll'],
  reconnect: { initialDelayMs: 500, maxDelayMs: 30_000, stableAfterMs: 15_000 },
});
const browserClient = new HeraldClient({ url: 'https://push.example.com', getToken: () => 'token', WebSocket: globalThis.WebSocket, EventSource: globalThis.EventSource, fetch: globalThis.fetch });

const sub: Subscription = client.subscribe<Order>('orders:42', {
  onMessage: (m: HeraldMessage<Order>) => m.data.status.toUpperCase(),
  onGap: (g) => g.channel,
  onError: (e: HeraldError) => e.code,
}, { since: '0' });
client.subscribe('chat:lobby', (m) => m.id);
const off = client.on('disconnected', (e: ConnectionEvent) => e.retryInMs);
client.on('transport', (e) => e.from + e.to);
client.on('error', (e) => e.status);
const last: string | undefined = sub.lastId;
void client.publish('chat:lobby', { text: 'hi' }, { event: 'said' }).then((r) => r.id);
sub.unsubscribe();
off();
client.close();
browserClient.close();
void last;
