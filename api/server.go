// Package api is herald's HTTP API, served with Echo: publishing (one message, or many at once),
// channel history and channel info, health and readiness, Prometheus metrics, the OpenAPI
// document, and the subscribe endpoints (/v1/ws, /v1/sse, /v1/poll), which it hands to the
// connection core untouched.
//
// Every error is an RFC 9457 problem document (application/problem+json) whose "type" is a short
// stable code ("invalid-channel", "forbidden", ...); openapi/openapi.yaml lists them per route.
//
// Invariants:
//   - A token never reaches a log: request logs carry the path and the query with
//     auth.RedactQuery applied, and never the Authorization header or cookies.
//   - Request bodies are read through http.MaxBytesReader, so no request makes the server buffer
//     more than its route's limit.
//   - The WebSocket and SSE routes get the net/http ResponseWriter itself (not Echo's pooled
//     wrapper), so the gateway can hijack the connection and keep it after the handler returns.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/cors"
	"github.com/herald-gateway/herald/gateway/admission"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/metrics"
	"github.com/herald-gateway/herald/openapi"
)

// Gateway is what the API needs from the connection core (implemented by package gateway).
type Gateway interface {
	// ServeWebSocket upgrades GET /v1/ws; it hijacks the connection.
	ServeWebSocket(w http.ResponseWriter, r *http.Request)
	// ServeSSE serves GET /v1/sse; it hijacks the connection once the headers are written and
	// writes its own CORS headers.
	ServeSSE(w http.ResponseWriter, r *http.Request)
	// ServePoll serves GET /v1/poll.
	ServePoll(w http.ResponseWriter, r *http.Request)
	// Subscribers returns the number of this node's subscribers of a channel.
	Subscribers(channel string) int
	// AwaitFanOutRoom waits, for at most max, until the node's fan-out has room for more
	// messages, and reports whether it has.
	AwaitFanOutRoom(ctx context.Context, max time.Duration) bool
}

// Defaults for the zero values of Options.
const (
	DefaultMaxMessageBytes = 65536
	DefaultMaxBatch        = 100
	DefaultFanOutWait      = 5 * time.Second
	DefaultBodyTimeout     = 10 * time.Second
)

// Options configure the API. Broker and Auth are required.
type Options struct {
	// Broker stores and reads messages.
	Broker broker.Broker
	// Gateway serves the subscribe endpoints and counts subscribers. When nil, /v1/ws, /v1/sse
	// and /v1/poll answer 404 and channel info reports 0 subscribers.
	Gateway Gateway
	// Auth verifies tokens and API keys.
	Auth *auth.Verifier
	// Metrics receive the publish counters. When nil, unregistered series are used.
	Metrics *metrics.Metrics
	// Registry is served at /metrics (the caller registers the Go runtime and process collectors
	// and herald's Metrics on it). When nil, /metrics answers 404.
	Registry *prometheus.Registry
	// MaxMessageBytes is the largest message data in bytes (DefaultMaxMessageBytes when 0); a
	// publish past it answers 413.
	MaxMessageBytes int
	// MaxBatch is the most messages in one POST /v1/messages (DefaultMaxBatch when 0); more
	// answer 413.
	MaxBatch int
	// HistoryPageBytes bounds a history page: its messages' data and event names add up to at
	// most this many bytes, past it one message (DefaultHistoryPageBytes when 0). A page cut
	// short says more, and the client reads on from its next.
	HistoryPageBytes int
	// BodyTimeout is how long a publish's body may take to arrive once its handler starts
	// reading it (DefaultBodyTimeout when 0, none when negative); past it the request answers
	// 408 and the connection is closed.
	BodyTimeout time.Duration
	// FanOutWait is how long a publish may wait for this node's fan-out to make room
	// (Gateway.AwaitFanOutRoom) before it answers 429 (DefaultFanOutWait when 0).
	FanOutWait time.Duration
	// PublishLimiter limits each credential's publish rate; a publish over it answers 429. The
	// gateway's WebSocket publishes share it (nil: no limit).
	PublishLimiter *admission.PublishLimiter
	// CORS decides which browser origins may call the browser-facing routes.
	CORS cors.Policy
	// Logger receives request logs and internal errors. When nil, nothing is logged.
	Logger *slog.Logger
	// Ready, when set, is an extra readiness check for /readyz.
	Ready func(ctx context.Context) error
}

// envelopeRoom is what a publish body may hold besides the message data: the field names, the
// event name, whitespace and, in a batch item, the channel name.
const envelopeRoom = 4096

// server holds the handlers' shared, read-only state.
type server struct {
	broker   broker.Broker
	gateway  Gateway
	auth     *auth.Verifier
	metrics  *metrics.Metrics
	cors     cors.Policy
	log      *slog.Logger
	ready    func(ctx context.Context) error
	maxData  int
	maxBatch int
	// historyPageBytes bounds a history page (Options.HistoryPageBytes).
	historyPageBytes int
	// bodyTimeout bounds the read of a request body (see readDeadline); none when not positive.
	bodyTimeout time.Duration
	// fanOutWait bounds a publish's wait for the node's fan-out (see awaitFanOut).
	fanOutWait time.Duration
	// limiter limits each credential's publishes (nil: no limit).
	limiter *admission.PublishLimiter
}

// New builds the API's Echo instance; it is an http.Handler to serve (Echo's own Start methods
// work too). It panics when opts.Broker or opts.Auth is nil: those are programming errors.
func New(opts Options) *echo.Echo {
	if opts.Broker == nil || opts.Auth == nil {
		panic("api: Options.Broker and Options.Auth are required")
	}
	s := &server{
		broker:   opts.Broker,
		gateway:  opts.Gateway,
		auth:     opts.Auth,
		metrics:  opts.Metrics,
		cors:     opts.CORS,
		log:      opts.Logger,
		ready:    opts.Ready,
		maxData:  opts.MaxMessageBytes,
		maxBatch: opts.MaxBatch,

		historyPageBytes: opts.HistoryPageBytes,
		bodyTimeout:      opts.BodyTimeout,

		fanOutWait: opts.FanOutWait,
		limiter:    opts.PublishLimiter,
	}
	if s.fanOutWait <= 0 {
		s.fanOutWait = DefaultFanOutWait
	}
	if s.metrics == nil {
		s.metrics = metrics.New(nil)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxData <= 0 {
		s.maxData = DefaultMaxMessageBytes
	}
	if s.maxBatch <= 0 {
		s.maxBatch = DefaultMaxBatch
	}
	if s.bodyTimeout == 0 {
		s.bodyTimeout = DefaultBodyTimeout
	}
	if s.historyPageBytes <= 0 {
		s.historyPageBytes = DefaultHistoryPageBytes
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(s.observe)
	s.routes(e, opts.Registry)
	return e
}

// routes mounts every route.
func (s *server) routes(e *echo.Echo, reg *prometheus.Registry) {
	// The CORS middleware is applied here, once, rather than passed to Echo as route
	// middleware, which Echo would wrap around the handler again on every request.
	browser := s.corsHeaders
	e.POST("/v1/channels/:channel/messages", browser(s.publish))
	e.GET("/v1/channels/:channel/messages", browser(s.history))
	e.GET("/v1/channels/:channel", browser(s.channelInfo))
	e.POST("/v1/messages", browser(s.publishBatch))
	for _, p := range []string{"/v1/channels/:channel/messages", "/v1/channels/:channel", "/v1/messages"} {
		e.OPTIONS(p, s.preflight)
	}

	if g := s.gateway; g != nil {
		e.GET("/v1/ws", hijackable(g.ServeWebSocket))
		e.GET("/v1/sse", hijackable(g.ServeSSE)) // the gateway writes the CORS headers itself
		e.GET("/v1/poll", browser(echo.WrapHandler(http.HandlerFunc(g.ServePoll))))
		e.OPTIONS("/v1/sse", s.preflight)
		e.OPTIONS("/v1/poll", s.preflight)
	}

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if reg != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	}
	e.GET("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", openapi.Spec)
	})
}

// hijackable adapts a handler that may hijack the connection: it gets net/http's own
// ResponseWriter, which implements http.Hijacker and http.Flusher, instead of Echo's Response,
// which is pooled and reused once the route returns.
func hijackable(h http.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h(c.Response().Writer, c.Request())
		return nil
	}
}
