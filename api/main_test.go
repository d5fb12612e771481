package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/goleak"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/memory"
	"github.com/herald-gateway/herald/gateway/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testAPIKey = "test-api-key-not-a-jwt"

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// env is one running API over real TCP, backed by a real memory broker.
type env struct {
	t      *testing.T
	srv    *httptest.Server
	echo   *echo.Echo
	mem    *memory.Broker
	reg    *prometheus.Registry
	gw     *stubGateway
	logBuf *syncBuffer
}

// envOption adjusts the Options (and the memory broker's) before the server starts.
type envOption func(*envConfig)

type envConfig struct {
	api.Options
	memory memory.Options
	// wrap, when set, wraps the memory broker (error injection).
	wrap func(broker.Broker) broker.Broker
	// noGateway leaves Options.Gateway nil.
	noGateway bool
	// realGateway serves the subscribe routes with the real connection core instead of the stub.
	realGateway bool
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	cfg := envConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	verifier, err := auth.New(context.Background(), auth.Config{HMACSecret: testSecret, APIKeys: []string{testAPIKey}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = verifier.Close() })
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	e := &env{t: t, reg: reg, gw: newStubGateway(), logBuf: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(e.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	o := cfg.Options
	o.Auth = verifier
	o.Metrics = metrics.New(reg)
	o.Registry = reg
	o.Logger = logger
	var realGW *gateway.Gateway
	switch {
	case cfg.realGateway:
		gw, err := gateway.New(gateway.Config{Auth: verifier, Metrics: o.Metrics, CORS: o.CORS, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		cfg.memory.Handler = gw
		o.Gateway = gw
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = gw.Shutdown(ctx)
		})
		realGW = gw
	case !cfg.noGateway:
		o.Gateway = e.gw
	}
	e.mem = memory.New(cfg.memory)
	t.Cleanup(func() { _ = e.mem.Close() })
	o.Broker = e.mem
	if cfg.wrap != nil {
		o.Broker = cfg.wrap(e.mem)
	}
	if realGW != nil {
		realGW.Start(o.Broker)
	}

	e.echo = api.New(o)
	e.srv = httptest.NewServer(e.echo)
	t.Cleanup(e.srv.Close)
	return e
}

func withOptions(f func(*api.Options)) envOption { return func(c *envConfig) { f(&c.Options) } }
func withMemory(f func(*memory.Options)) envOption {
	return func(c *envConfig) { f(&c.memory) }
}
func withBroker(wrap func(broker.Broker) broker.Broker) envOption {
	return func(c *envConfig) { c.wrap = wrap }
}

// token mints a JWT with the given permissions, valid for an hour.
func token(t *testing.T, publish, subscribe []string) string {
	t.Helper()
	tok, err := auth.MintHMAC(testSecret, auth.MintClaims{Subject: "test", Publish: publish, Subscribe: subscribe, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// request is one HTTP call; nil fields take defaults.
type request struct {
	method string
	path   string // with the query
	body   string
	header map[string]string
	token  string // sent as a Bearer token when set
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problemDoc is a problem document as a client reads it.
type problemDoc struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// wantProblem checks that r is a problem of the given status and type.
func (r response) wantProblem(t *testing.T, status int, typ string) problemDoc {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p problemDoc
	r.json(t, &p)
	if p.Type != typ || p.Status != status {
		t.Fatalf("problem %+v, want type %q status %d", p, typ, status)
	}
	return p
}

func (e *env) newRequest(req request) *http.Request {
	e.t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequest(method, e.srv.URL+req.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if req.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if req.token != "" {
		r.Header.Set("Authorization", "Bearer "+req.token)
	}
	for k, v := range req.header {
		if v == "" {
			r.Header.Del(k)
			continue
		}
		r.Header.Set(k, v)
	}
	return r
}

func (e *env) do(req request) response {
	e.t.Helper()
	return e.send(e.newRequest(req))
}

func (e *env) send(r *http.Request) response {
	e.t.Helper()
	resp, err := e.srv.Client().Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// publish stores one message through the API and returns its id.
func (e *env) publish(channel, body string) string {
	e.t.Helper()
	r := e.do(request{method: http.MethodPost, path: "/v1/channels/" + channel + "/messages", body: body, token: testAPIKey})
	if r.status != http.StatusCreated {
		e.t.Fatalf("publish: status %d: %s", r.status, r.body)
	}
	var out struct{ ID string }
	r.json(e.t, &out)
	return out.ID
}

// history reads a channel's log straight from the broker.
func (e *env) history(channel string) []broker.Message {
	e.t.Helper()
	page, err := e.mem.History(context.Background(), channel, broker.HistoryQuery{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return page.Messages
}

// stubGateway stands in for the connection core: the delegated routes exist and can hijack.
type stubGateway struct {
	mu          sync.Mutex
	subscribers map[string]int
	// saturated, while open, makes AwaitFanOutRoom wait as a saturated fan-out does; closing it
	// makes room.
	saturated chan struct{}
}

func newStubGateway() *stubGateway { return &stubGateway{subscribers: map[string]int{}} }

func (g *stubGateway) hijack(w http.ResponseWriter, head string, body string) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "not hijackable", http.StatusInternalServerError)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	_, _ = buf.WriteString(head + "\r\n" + body)
	_ = buf.Flush()
}

func (g *stubGateway) ServeWebSocket(w http.ResponseWriter, r *http.Request) {
	g.hijack(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "")
}

func (g *stubGateway) ServeSSE(w http.ResponseWriter, r *http.Request) {
	g.hijack(w, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n", "retry: 2000\n\n")
}

func (g *stubGateway) ServePoll(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"messages":[],"cursor":"0-0","recovered":true}`)
}

func (g *stubGateway) AwaitFanOutRoom(ctx context.Context, max time.Duration) bool {
	g.mu.Lock()
	saturated := g.saturated
	g.mu.Unlock()
	if saturated == nil {
		return true
	}
	select {
	case <-saturated:
		return true
	case <-ctx.Done():
	case <-time.After(max):
	}
	return false
}

func (g *stubGateway) Subscribers(channel string) int {
	if channel == "panic:now" {
		panic("stub gateway told to panic")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.subscribers[channel]
}

func (g *stubGateway) setSubscribers(channel string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.subscribers[channel] = n
}

// failingBroker is the real broker with errors injected: every call fails with err.
type failingBroker struct {
	broker.Broker
	err error
}

func (f failingBroker) Publish(context.Context, broker.PublishRequest) (broker.PublishResult, error) {
	return broker.PublishResult{}, f.err
}

func (f failingBroker) PublishBatch(_ context.Context, reqs []broker.PublishRequest) ([]broker.PublishResult, []error) {
	errs := make([]error, len(reqs))
	for i := range errs {
		errs[i] = f.err
	}
	return make([]broker.PublishResult, len(reqs)), errs
}

func (f failingBroker) History(context.Context, string, broker.HistoryQuery) (broker.HistoryPage, error) {
	return broker.HistoryPage{}, f.err
}

func (f failingBroker) Ready(context.Context) error { return f.err }

func failWith(err error) envOption {
	return withBroker(func(b broker.Broker) broker.Broker { return failingBroker{Broker: b, err: err} })
}

var errInternalSecret = errors.New("dial tcp 10.1.2.3:6379: secret internals")

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mintExpired mints a token that expired an hour ago (past any clock skew).
func mintExpired() (string, error) {
	return auth.MintHMAC(testSecret, auth.MintClaims{Subject: "test", Publish: []string{"*"}, Subscribe: []string{"*"}, TTL: -time.Hour})
}

// metric reads one series' value from /metrics ("" when the series is absent). series is the
// name with its labels as the text format writes them.
func (e *env) metric(series string) string {
	e.t.Helper()
	r := e.do(request{path: "/metrics"})
	if r.status != http.StatusOK {
		e.t.Fatalf("/metrics: status %d", r.status)
	}
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}
