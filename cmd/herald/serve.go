package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/cors"
	"github.com/herald-gateway/herald/gateway"
	"github.com/herald-gateway/herald/gateway/admission"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/memory"
	"github.com/herald-gateway/herald/gateway/broker/valkey"
	"github.com/herald-gateway/herald/gateway/metrics"
)

// serveConfig is everything `herald serve` can be told.
type serveConfig struct {
	gcPercent         string
	listen            string
	debugListen       string
	jwtSecret         string
	jwtPublicKeyFiles listValue
	jwksURL           string
	jwtIssuer         string
	jwtAudience       string
	apiKeys           listValue
	valkeyURL         string
	valkeyTimeout     time.Duration
	historySize       int
	historyTTL        time.Duration
	historyRules      listValue
	idempotencyWindow time.Duration
	maxMessageBytes   int
	maxBatch          int
	historyPageBytes  int
	allowedOrigins    listValue
	maxChannels       int
	replayCap         int
	queueBytes        int
	replayQueueBytes  int
	fanOutBacklog     int
	heartbeat         time.Duration
	headerTimeout     time.Duration
	bodyTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	shutdownTimeout   time.Duration
	logLevel          string
	logFormat         string
	admission         admissionConfig
}

func serveFlags(stderr io.Writer) (*flagSet, *serveConfig) {
	c := &serveConfig{}
	fs := newFlagSet("herald serve", "herald serve: run the gateway and its HTTP API.\n\n"+
		"With no flags it uses the in-memory broker, listens on :8080 and, since no key is\n"+
		"configured, makes an ephemeral HMAC secret and prints development tokens.", stderr)
	str := func(p *string, name, env, def, usage string) {
		fs.StringVar(p, name, def, usage)
		fs.bindEnv(name, env)
	}
	list := func(p *listValue, name, env, usage string) {
		fs.Var(p, name, usage)
		fs.bindEnv(name, env)
	}
	num := func(p *int, name, env string, def int, usage string) {
		fs.IntVar(p, name, def, usage)
		fs.bindEnv(name, env)
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		fs.DurationVar(p, name, def, usage)
		fs.bindEnv(name, env)
	}
	str(&c.listen, "listen", "HERALD_LISTEN", ":8080", "address the HTTP API and subscribe endpoints listen on")
	str(&c.debugListen, "debug-listen", "HERALD_DEBUG_LISTEN", "", "address for pprof (/debug/pprof/); off when empty. Keep it private")
	str(&c.jwtSecret, "jwt-secret", "HERALD_JWT_SECRET", "", "HMAC secret (at least 32 bytes) that verifies HS256/384/512 tokens")
	list(&c.jwtPublicKeyFiles, "jwt-public-key-file", "HERALD_JWT_PUBLIC_KEY_FILE", "PEM file of public keys (RSA, ECDSA, Ed25519) that verify tokens; repeatable")
	str(&c.jwksURL, "jwks-url", "HERALD_JWKS_URL", "", "JWKS URL whose keys verify tokens, refreshed in the background")
	str(&c.jwtIssuer, "jwt-issuer", "HERALD_JWT_ISSUER", "", "when set, tokens must carry this iss")
	str(&c.jwtAudience, "jwt-audience", "HERALD_JWT_AUDIENCE", "", "when set, tokens must carry this aud")
	list(&c.apiKeys, "api-key", "HERALD_API_KEYS", "static API key for backends (Authorization: Bearer <key>); repeatable, the variable is comma-separated")
	str(&c.valkeyURL, "valkey-url", "HERALD_VALKEY_URL", "", "Valkey to store messages in and to share with other nodes\n(valkey://host:6379, valkeys:// for TLS, a comma list of seeds for Cluster);\nempty: the in-memory broker (one node, history lost on restart)")
	dur(&c.valkeyTimeout, "valkey-timeout", "HERALD_VALKEY_TIMEOUT", valkey.DefaultTimeout, "longest a Valkey operation may take before it fails (a publish then answers 503)")
	num(&c.historySize, "history-size", "HERALD_HISTORY_SIZE", broker.DefaultRetention.Size, "messages kept per channel for resume and history")
	dur(&c.historyTTL, "history-ttl", "HERALD_HISTORY_TTL", broker.DefaultRetention.TTL, "how long a channel's history lives after its last publish")
	list(&c.historyRules, "history-rule", "HERALD_HISTORY_RULES", "history for channels starting with a prefix: PREFIX=SIZE or PREFIX=SIZE/TTL\n(for example chat:=100/1h); repeatable, the variable is comma-separated")
	dur(&c.idempotencyWindow, "idempotency-window", "HERALD_IDEMPOTENCY_WINDOW", broker.DefaultIdempotencyWindow, "how long Idempotency-Key values are remembered")
	num(&c.maxMessageBytes, "max-message-bytes", "HERALD_MAX_MESSAGE_BYTES", 65536, "largest message data accepted (413 past it)")
	num(&c.maxBatch, "max-batch", "HERALD_MAX_BATCH", api.DefaultMaxBatch, "most messages in one batch publish")
	num(&c.historyPageBytes, "history-page-bytes", "HERALD_HISTORY_PAGE_BYTES", api.DefaultHistoryPageBytes, "most bytes of message data in one history page (past it one message; the page says more)")
	list(&c.allowedOrigins, "allowed-origins", "HERALD_ALLOWED_ORIGINS", "browser origins allowed to connect (https://shop.example), with credentials; repeatable,\nthe variable is comma-separated; none: any origin, without credentials")
	num(&c.maxChannels, "max-channels-per-connection", "HERALD_MAX_CHANNELS_PER_CONNECTION", 128, "channels one connection may subscribe to")
	num(&c.replayCap, "replay-cap", "HERALD_REPLAY_CAP", 1000, "most messages replayed on one subscribe (past it: the newest, and recovered=false)")
	num(&c.queueBytes, "queue-bytes", "HERALD_QUEUE_BYTES", 1<<20, "outbound bytes queued for a slow client before it is disconnected (4008);\na resume's replay does not count")
	num(&c.replayQueueBytes, "replay-queue-bytes", "HERALD_REPLAY_QUEUE_BYTES", 64<<20, "replay bytes queued for a client on top of --queue-bytes before it is disconnected\n(4008): a client resuming many channels without reading holds no more")
	num(&c.fanOutBacklog, "fanout-backlog", "HERALD_FANOUT_BACKLOG", 1_000_000, "deliveries (messages x local subscribers) queued for fan-out before publishes wait;\na larger backlog batches more messages per write at saturation, and adds latency")
	dur(&c.heartbeat, "heartbeat", "HERALD_HEARTBEAT", 15*time.Second, "interval of WebSocket pings and SSE keep-alive comments")
	dur(&c.headerTimeout, "header-timeout", "HERALD_HEADER_TIMEOUT", 10*time.Second, "longest a request's line and headers may take to arrive (a WebSocket upgrade's too);\npast it the connection is closed")
	dur(&c.bodyTimeout, "body-timeout", "HERALD_BODY_TIMEOUT", api.DefaultBodyTimeout, "longest a publish's body may take to arrive (408 and the connection closed past it)")
	dur(&c.writeTimeout, "write-timeout", "HERALD_WRITE_TIMEOUT", 30*time.Second, "longest a response may take to be written to a client that does not read;\na long-poll gets its wait on top. WebSocket and SSE streams have their own flow control")
	dur(&c.idleTimeout, "idle-timeout", "HERALD_IDLE_TIMEOUT", 2*time.Minute, "longest an idle keep-alive HTTP connection is kept open")
	dur(&c.shutdownTimeout, "shutdown-timeout", "HERALD_SHUTDOWN_TIMEOUT", 10*time.Second, "time given to clients to drain on SIGTERM")
	admissionFlags(fs, &c.admission)
	str(&c.logLevel, "log-level", "HERALD_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.logFormat, "log-format", "HERALD_LOG_FORMAT", "text", "text or json")
	str(&c.gcPercent, "gc-percent", "GOGC", strconv.Itoa(defaultGCPercent), "heap growth over the live heap, in percent, before the Go garbage collector runs; off:\n"+
		"never (then set GOMEMLIMIT). herald holds many connections and allocates little per message, so 50\n"+
		"(the runtime's default is 100) keeps about a third less memory for little CPU")
	return fs, c
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := serveFlags(stderr)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald serve takes no arguments, got %q\n", fs.Args())
		return errUsage
	}
	log, err := newLogger(c.logLevel, c.logFormat, stderr)
	if err != nil {
		return err
	}
	gcPercent, err := parseGCPercent(c.gcPercent)
	if err != nil {
		fmt.Fprintf(stderr, "--gc-percent: %v\n", err)
		return errUsage
	}
	debug.SetGCPercent(gcPercent)
	retention, err := c.retention()
	if err != nil {
		return err
	}

	if err := c.checkExplicitSecret(fs); err != nil {
		return err
	}
	authCfg := auth.Config{
		HMACSecret: []byte(c.jwtSecret), PublicKeyFiles: c.jwtPublicKeyFiles.items, JWKSURL: c.jwksURL,
		Issuer: c.jwtIssuer, Audience: c.jwtAudience, APIKeys: c.apiKeys.items,
	}
	devMode := c.jwtSecret == "" && len(c.jwtPublicKeyFiles.items) == 0 && c.jwksURL == "" && len(c.apiKeys.items) == 0
	if devMode {
		authCfg.HMACSecret = ephemeralSecret()
	}
	verifier, err := auth.New(ctx, authCfg)
	if err != nil {
		return err // package auth's errors say "auth: " already
	}
	defer verifier.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	admit, admitMetrics, err := c.admission.controller(reg)
	if err != nil {
		return err
	}
	publishLimit, err := c.admission.publishLimiter()
	if err != nil {
		return err
	}

	gw, err := gateway.New(gateway.Config{
		Auth: verifier, Metrics: m, CORS: cors.New(c.allowedOrigins.items), Logger: log,
		MaxChannelsPerConn: c.maxChannels, ReplayCap: c.replayCap, MaxMessageBytes: c.maxMessageBytes,
		QueueBytes: c.queueBytes, ReplayQueueBytes: c.replayQueueBytes, FanOutBacklog: c.fanOutBacklog, Heartbeat: c.heartbeat,
		Admission: admit, PublishLimiter: publishLimit, HTTPIdleTimeout: c.idleTimeout,
	})
	if err != nil {
		return err
	}
	b, brokerName, err := openBroker(ctx, c, gw, retention, log)
	if err != nil {
		_ = gw.Shutdown(context.Background())
		return err
	}
	defer b.Close()
	gw.Start(b)

	handler := api.New(api.Options{
		Broker: b, Gateway: gw, Auth: verifier, Metrics: m, Registry: reg, PublishLimiter: publishLimit,
		MaxMessageBytes: c.maxMessageBytes, MaxBatch: c.maxBatch, HistoryPageBytes: c.historyPageBytes, BodyTimeout: c.bodyTimeout, CORS: cors.New(c.allowedOrigins.items), Logger: log,
	})
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		_ = gw.Shutdown(context.Background())
		return fmt.Errorf("listen: %w", err)
	}
	srv := c.httpServer(handler, log)
	// The listener is bound: say so (and print the development banner) before the first
	// request can be answered, so that whoever waits for readiness finds the banner written.
	log.Info("herald is serving", "listen", ln.Addr().String(), "broker", brokerName, "version", version)
	if devMode {
		printDevBanner(stdout, ln.Addr(), authCfg.HMACSecret)
	}
	served := make(chan error, 1)
	// Through the gateway's listener, keep-alive publisher connections can move to the epoll
	// core and back (see gateway.Gateway.Listener).
	// Beneath it, the admission listener backs off when the process is out of descriptors.
	go func() { served <- srv.Serve(gw.Listener(admission.Listener(ln, log, admitMetrics))) }()
	if c.debugListen != "" {
		stopDebug := serveDebug(c.debugListen, log)
		defer stopDebug()
	}

	select {
	case err := <-served:
		_ = gw.Shutdown(context.Background())
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: refusing new connections, asking clients to reconnect elsewhere")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	// Both at once: the HTTP server stops accepting and waits for requests in flight, and the
	// gateway answers its long-polls at once (so that wait is short) and tells WebSocket and SSE
	// clients, which the HTTP server no longer tracks after the hijack, to reconnect elsewhere.
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := gw.Shutdown(shutdownCtx); err != nil {
		log.Warn("gateway shutdown", "err", err)
	}
	<-httpDone
	log.Info("stopped")
	return nil
}

// errEmptySecret is the startup error for a --jwt-secret (or HERALD_JWT_SECRET) given but empty.
var errEmptySecret = errors.New("--jwt-secret (HERALD_JWT_SECRET) is set but empty: set it to 32 or more random bytes " +
	"(openssl rand -base64 48), or unset it; with no credential at all herald runs in development mode")

// checkExplicitSecret refuses a secret given as "": that is a template's blank left unfilled
// (HERALD_JWT_SECRET= in an env file), and treating it as absent would start development mode,
// with printed tokens and a throwaway secret, on a server meant to verify real tokens.
func (c *serveConfig) checkExplicitSecret(fs *flagSet) error {
	if fs.isGiven("jwt-secret") && c.jwtSecret == "" {
		return errEmptySecret
	}
	return nil
}

// httpServer is the HTTP server of the API and the subscribe endpoints, with the timeouts that
// keep a slow or silent client from holding a goroutine: ReadHeaderTimeout for the request line
// and headers (a WebSocket upgrade is a request like any until its headers are read), the API's
// BodyTimeout for a publish's body (set per request: routes without a body, like a long-poll,
// read nothing for minutes), WriteTimeout for every response, reset by net/http for each request
// (a long-poll extends its own by its wait; WebSocket and SSE connections leave net/http's
// deadlines behind when the epoll core takes their descriptor over), and IdleTimeout between
// keep-alive requests.
func (c *serveConfig) httpServer(handler http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{Handler: handler, ReadHeaderTimeout: c.headerTimeout, WriteTimeout: c.writeTimeout,
		IdleTimeout: c.idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// openBroker opens the Valkey broker when a URL is configured, else the memory broker.
func openBroker(ctx context.Context, c *serveConfig, gw *gateway.Gateway, retention broker.RetentionPolicy, log *slog.Logger) (broker.Broker, string, error) {
	if c.valkeyURL == "" {
		return memory.New(memory.Options{Handler: gw, Retention: retention, IdempotencyWindow: c.idempotencyWindow}), "memory", nil
	}
	b, err := valkey.New(ctx, valkey.Options{URL: c.valkeyURL, Handler: gw, Retention: retention,
		IdempotencyWindow: c.idempotencyWindow, Timeout: c.valkeyTimeout, Logger: log})
	if err != nil {
		return nil, "", fmt.Errorf("valkey: %w", err)
	}
	return b, "valkey", nil
}

// retention builds the history policy from --history-size, --history-ttl and --history-rule.
func (c *serveConfig) retention() (broker.RetentionPolicy, error) {
	if c.historySize <= 0 || c.historyTTL <= 0 {
		return broker.RetentionPolicy{}, errors.New("--history-size and --history-ttl must be positive")
	}
	p := broker.RetentionPolicy{Default: broker.Retention{Size: c.historySize, TTL: c.historyTTL}}
	for _, rule := range c.historyRules.items {
		r, err := parseHistoryRule(rule, p.Default)
		if err != nil {
			return p, err
		}
		p.Rules = append(p.Rules, r)
	}
	return p, nil
}

// parseHistoryRule reads PREFIX=SIZE or PREFIX=SIZE/TTL.
func parseHistoryRule(s string, def broker.Retention) (broker.RetentionRule, error) {
	bad := fmt.Errorf("history rule %q: want PREFIX=SIZE or PREFIX=SIZE/TTL, for example chat:=100/1h", s)
	prefix, spec, ok := strings.Cut(s, "=")
	if !ok || prefix == "" {
		return broker.RetentionRule{}, bad
	}
	sizeText, ttlText, hasTTL := strings.Cut(spec, "/")
	size, err := strconv.Atoi(sizeText)
	if err != nil || size <= 0 {
		return broker.RetentionRule{}, bad
	}
	r := broker.RetentionRule{Prefix: prefix, Retention: broker.Retention{Size: size, TTL: def.TTL}}
	if hasTTL {
		if r.TTL, err = time.ParseDuration(ttlText); err != nil || r.TTL <= 0 {
			return broker.RetentionRule{}, bad
		}
	}
	return r, nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func ephemeralSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return []byte(base64.RawURLEncoding.EncodeToString(b))
}

// printDevBanner prints tokens and curl lines to try the gateway at once.
func printDevBanner(w io.Writer, addr net.Addr, secret []byte) {
	sub, _ := auth.MintHMAC(secret, auth.MintClaims{Subject: "dev-subscriber", Subscribe: []string{"*"}, TTL: 24 * time.Hour})
	pub, _ := auth.MintHMAC(secret, auth.MintClaims{Subject: "dev-publisher", Subscribe: []string{"*"}, Publish: []string{"*"}, TTL: 24 * time.Hour})
	host := "localhost"
	port := "8080"
	if tcp, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(tcp.Port)
		if !tcp.IP.IsUnspecified() {
			host = tcp.IP.String()
		}
	}
	base := "http://" + net.JoinHostPort(host, port)
	fmt.Fprintf(w, `
==================== DEVELOPMENT MODE: NOT FOR PRODUCTION ====================
No --jwt-secret, public key, JWKS URL or API key is configured, so herald made an
ephemeral HMAC secret. These tokens (valid 24h) die with this process.

  SUB=%s
  PUB=%s

Subscribe (SSE) in one terminal:
  curl -N "%s/v1/sse?channel=demo" -H "Authorization: Bearer $SUB"

Publish in another:
  curl -X POST %s/v1/channels/demo/messages -H "Authorization: Bearer $PUB" \
       -H "Content-Type: application/json" -d '{"data":{"hello":"world"}}'

WebSocket: connect to ws://%s/v1/ws, send {"type":"auth","token":"<SUB>"}, then
{"type":"subscribe","id":1,"channel":"demo","since":"0"}.
===============================================================================
`, sub, pub, base, base, strings.TrimPrefix(base, "http://"))
}

// serveDebug serves pprof on a separate listener; it returns a function that stops it.
func serveDebug(addr string, log *slog.Logger) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug listener", "err", err)
		}
	}()
	log.Info("pprof is serving", "listen", addr)
	return func() { _ = srv.Close() }
}

// defaultGCPercent is herald's garbage collector target when neither GOGC nor --gc-percent is set.
const defaultGCPercent = 50

// parseGCPercent reads --gc-percent (GOGC's syntax: a percentage, or off) for
// debug.SetGCPercent. The runtime reads GOGC by itself at start; the flag binds the same variable
// so that herald's default (50, not the runtime's 100) applies only when GOGC is unset.
//
// Measured at 15,000 idle subscribers, 50 instead of 100 takes resident memory per connection
// from about 1.5 KiB to 1.1 KiB (WebSocket) and from 1.4 to 1.0 KiB (SSE), while the CPU per
// delivery of a fan-out and of a connect burst stayed within run-to-run noise.
func parseGCPercent(s string) (int, error) {
	if s == "" {
		return defaultGCPercent, nil // GOGC= (empty) means "the default" to the runtime too
	}
	if strings.EqualFold(s, "off") {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a percentage (0 or more) or off, got %q", s)
	}
	return n, nil
}
