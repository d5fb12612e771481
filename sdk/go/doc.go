// Package herald is the Go client of the herald push gateway.
//
// A [Publisher] sends messages over the HTTP API: one at a time ([Publisher.Publish]), many at
// once ([Publisher.PublishBatch]), and reads a channel's history ([Publisher.History],
// [Publisher.HistoryPager]). Every publish carries an Idempotency-Key, generated per call and
// reused by its retries, so a publish retried after a timeout or a dropped connection is stored
// once. Failures the server can recover from (429, 502, 503, 504, network errors) are retried
// with exponential backoff and full jitter, honouring Retry-After; every other failure is a
// [*ProblemError] carrying the server's problem+json document.
//
// A [Client] subscribes: over one WebSocket (the default) or one Server-Sent Events stream
// ([WithTransport]([SSE])), any number of channels. It connects in the background, reconnects by
// itself with exponential backoff and full jitter (following the server's hints: the
// reconnect_after_ms of a shutdown, an immediate resume after a slow-consumer close) and resumes
// every channel from the last id it received, so a handler sees each retained message once, in
// order. When the server cannot prove that nothing was missed (history trimmed, log lost) the
// channel's gap callback runs before the messages that follow: refetch that channel's state.
//
// Invariants of this package:
//   - A channel's handler is called from one goroutine at a time, in id order, and its gap
//     callback runs in that same order. Handlers of different channels run concurrently.
//   - A channel's resume position only moves forward through what the server sent on it, and is
//     updated before the message is queued for its handler.
//   - No lock is held while writing to a socket or calling user code (handlers, callbacks, token
//     functions).
//   - Close stops every goroutine the Client started before it returns.
package herald
