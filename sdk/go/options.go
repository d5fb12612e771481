package herald

import (
	"context"
	"net/http"
	"time"
)

// Option configures a Publisher or a Client. Options that concern only one of them are ignored
// by the other.
type Option func(*config)

// TokenFunc returns the credential to send: a JWT or an API key. The Client calls it before
// every connection attempt, when the server asks for a fresh token (the WebSocket refresh frame)
// and after the server closed the connection because the token expired; the Publisher calls it
// before every request. Return a cached token while it is still valid for a good while.
type TokenFunc func(ctx context.Context) (string, error)

type config struct {
	token      TokenFunc
	httpClient *http.Client
	userAgent  string

	// Publisher
	retry RetryPolicy

	// Client
	transport   Transport
	reconnect   ReconnectPolicy
	heartbeat   time.Duration
	dialTimeout time.Duration
	onState     func(StateChange)
	onGap       func(channel string, reason GapReason)
	onError     func(error)
}

func defaultConfig() config {
	return config{
		userAgent: "herald-go",
		retry: RetryPolicy{
			MaxAttempts: 5, MaxElapsed: 30 * time.Second,
			Initial: 100 * time.Millisecond, Max: 5 * time.Second, AttemptTimeout: 10 * time.Second,
		},
		reconnect:   ReconnectPolicy{Initial: 250 * time.Millisecond, Max: 30 * time.Second, StableAfter: 30 * time.Second},
		heartbeat:   15 * time.Second,
		dialTimeout: 10 * time.Second,
	}
}

func newConfig(opts []Option) config {
	c := defaultConfig()
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithToken authenticates with a fixed JWT. A Client whose token expires cannot renew it; use
// WithTokenFunc for tokens that expire.
func WithToken(token string) Option {
	return WithTokenFunc(func(context.Context) (string, error) { return token, nil })
}

// WithAPIKey authenticates with a static API key from the gateway's --api-key list (sent as a
// bearer credential, like a token).
func WithAPIKey(key string) Option { return WithToken(key) }

// WithTokenFunc authenticates with the tokens fn returns; see TokenFunc for when it is called.
func WithTokenFunc(fn TokenFunc) Option { return func(c *config) { c.token = fn } }

// WithHTTPClient sets the HTTP client for the Publisher's requests and the Client's SSE
// streams. By default each Publisher and Client has its own client, whose idle connections
// Close releases.
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.httpClient = hc } }

// WithUserAgent sets the User-Agent of HTTP requests and the WebSocket handshake.
func WithUserAgent(ua string) Option { return func(c *config) { c.userAgent = ua } }

// RetryPolicy bounds a Publisher's retries. A request is tried at most MaxAttempts times and not
// retried once MaxElapsed has passed since the first attempt (or when the context would end
// before the next attempt). Between attempts it waits the server's Retry-After when there is
// one, else a random time between 0 and min(Max, Initial*2^retry) (full jitter).
type RetryPolicy struct {
	MaxAttempts    int           // attempts per call, at least 1 [5]
	MaxElapsed     time.Duration // no retry starts after this much time [30s]
	Initial        time.Duration // backoff ceiling of the first retry [100ms]
	Max            time.Duration // largest backoff ceiling [5s]
	AttemptTimeout time.Duration // limit of one attempt [10s]
}

// WithRetry sets the Publisher's retry policy. Zero fields keep their defaults; MaxAttempts 1
// turns retries off.
func WithRetry(p RetryPolicy) Option {
	return func(c *config) {
		if p.MaxAttempts > 0 {
			c.retry.MaxAttempts = p.MaxAttempts
		}
		if p.MaxElapsed > 0 {
			c.retry.MaxElapsed = p.MaxElapsed
		}
		if p.Initial > 0 {
			c.retry.Initial = p.Initial
		}
		if p.Max > 0 {
			c.retry.Max = p.Max
		}
		if p.AttemptTimeout > 0 {
			c.retry.AttemptTimeout = p.AttemptTimeout
		}
	}
}

// Transport is how a Client receives messages.
type Transport int

const (
	// WebSocket is one WebSocket to /v1/ws: channels are added and removed on the open connection.
	WebSocket Transport = iota
	// SSE is one Server-Sent Events stream from /v1/sse. Its channels are fixed per stream, so
	// subscribing or unsubscribing reopens it, resuming every channel from its position.
	SSE
)

func (t Transport) String() string {
	if t == SSE {
		return "sse"
	}
	return "websocket"
}

// WithTransport chooses the Client's transport (WebSocket by default).
func WithTransport(t Transport) Option { return func(c *config) { c.transport = t } }

// ReconnectPolicy shapes a Client's reconnects: after a failed or lost connection it waits a
// random time between 0 and min(Max, Initial*2^failures) (full jitter). A connection that stayed
// up for StableAfter resets the failure count.
type ReconnectPolicy struct {
	Initial     time.Duration // [250ms]
	Max         time.Duration // [30s]
	StableAfter time.Duration // [30s]
}

// WithReconnect sets the Client's reconnect policy. Zero fields keep their defaults.
func WithReconnect(p ReconnectPolicy) Option {
	return func(c *config) {
		if p.Initial > 0 {
			c.reconnect.Initial = p.Initial
		}
		if p.Max > 0 {
			c.reconnect.Max = p.Max
		}
		if p.StableAfter > 0 {
			c.reconnect.StableAfter = p.StableAfter
		}
	}
}

// WithHeartbeat sets the liveness interval [15s, the server's default --heartbeat]. Over
// WebSocket the Client sends a ping frame every interval; on either transport a connection on
// which nothing arrived for two intervals is declared dead and replaced. Over SSE the client
// cannot ask for traffic, so the interval must not be shorter than the server's --heartbeat.
func WithHeartbeat(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.heartbeat = d
		}
	}
}

// WithDialTimeout bounds one connection attempt (TCP, handshake, response headers) [10s].
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.dialTimeout = d
		}
	}
}

// WithStateHandler sets a callback for the Client's connection state. It is called from the
// connection goroutine, in order; it must return quickly and must not call Close.
func WithStateHandler(fn func(StateChange)) Option { return func(c *config) { c.onState = fn } }

// WithGapHandler sets the gap callback of subscriptions that have none of their own (see OnGap).
func WithGapHandler(fn func(channel string, reason GapReason)) Option {
	return func(c *config) { c.onGap = fn }
}

// WithErrorHandler sets a callback for errors that no call returns: a subscription the server
// refused (a *SubscribeError, also given to the subscription's OnError), a token function that
// failed when the server asked for a fresh token. It must return quickly.
func WithErrorHandler(fn func(error)) Option { return func(c *config) { c.onError = fn } }
