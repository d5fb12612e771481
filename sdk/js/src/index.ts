export { HeraldClient } from './client.js';
export { HeraldError } from './errors.js';
export { SSEParser, type SSEBlock } from './sse-parser.js';
export type {
  ClientEvents,
  ConnectionEvent,
  ConnectionState,
  EventSourceConstructor,
  EventSourceLike,
  FetchLike,
  GapInfo,
  GapReason,
  HeraldClientOptions,
  HeraldMessage,
  PublishOptions,
  ReconnectOptions,
  SubscribeHandlers,
  SubscribeOptions,
  Subscription,
  TransportName,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';
