package gateway

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/cors"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/memory"
	"github.com/herald-gateway/herald/gateway/metrics"
)

// testEnv is a gateway with a memory broker behind a real HTTP server on loopback.
type testEnv struct {
	t       *testing.T
	gw      *Gateway
	broker  *memory.Broker
	metrics *metrics.Metrics
	addr    string // host:port
	secret  []byte
	srv     *http.Server
}

// envSetup is what the options of newEnv may change before the gateway starts.
type envSetup struct {
	cfg  Config
	mem  memory.Options
	wrap func(*memory.Broker) broker.Broker // the broker the gateway is started with [the memory broker]
}

type envOption func(*envSetup)

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	secret := []byte("test-secret-that-is-long-enough-for-hs256!")
	verifier, err := auth.New(context.Background(), auth.Config{HMACSecret: secret, APIKeys: []string{"backend-key"}})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(nil)
	setup := envSetup{cfg: Config{Auth: verifier, Metrics: m}}
	for _, o := range opts {
		o(&setup)
	}
	gw, err := New(setup.cfg)
	if err != nil {
		t.Fatal(err)
	}
	setup.mem.Handler = gw
	b := memory.New(setup.mem)
	if setup.wrap != nil {
		gw.Start(setup.wrap(b))
	} else {
		gw.Start(b)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", gw.ServeWebSocket)
	mux.HandleFunc("GET /v1/sse", gw.ServeSSE)
	mux.HandleFunc("GET /v1/poll", gw.ServePoll)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	e := &testEnv{t: t, gw: gw, broker: b, metrics: m, addr: ln.Addr().String(), secret: secret, srv: srv}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		gw.Shutdown(ctx)
		b.Close()
		verifier.Close()
	})
	return e
}

func withConfig(f func(*Config)) envOption { return func(s *envSetup) { f(&s.cfg) } }

func withRetention(size int, ttl time.Duration) envOption {
	return func(s *envSetup) {
		s.mem.Retention = broker.RetentionPolicy{Default: broker.Retention{Size: size, TTL: ttl}}
	}
}

// withBroker starts the gateway with wrap's broker around the memory broker (which the test
// env still holds as e.broker).
func withBroker(wrap func(*memory.Broker) broker.Broker) envOption {
	return func(s *envSetup) { s.wrap = wrap }
}

// token mints a token allowing the given subscribe patterns (and publish ones).
func (e *testEnv) token(subscribe []string, publish []string, ttl time.Duration) string {
	e.t.Helper()
	tok, err := auth.MintHMAC(e.secret, auth.MintClaims{Subject: "tester", Subscribe: subscribe, Publish: publish, TTL: ttl})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *testEnv) publish(channel, data string) broker.ID {
	e.t.Helper()
	res, err := e.broker.Publish(context.Background(), broker.PublishRequest{Channel: channel, Data: json.RawMessage(data)})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.ID
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: "+format, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- WebSocket client ----

type wsClient struct {
	t        testing.TB
	conn     net.Conn
	br       *bufio.Reader
	autoPong bool
}

type closeErr struct {
	code   int
	reason string
}

func (c *closeErr) Error() string { return fmt.Sprintf("closed %d %q", c.code, c.reason) }

func (e *testEnv) dialWS(header http.Header) *wsClient {
	e.t.Helper()
	c, err := dialWS(e.addr, header)
	if err != nil {
		e.t.Fatal(err)
	}
	c.t = e.t
	e.t.Cleanup(func() { c.conn.Close() })
	return c
}

func dialWS(addr string, header http.Header) (*wsClient, error) {
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(header), Timeout: 5 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+addr+"/v1/ws")
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsClient{conn: conn, br: br, autoPong: true}, nil
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(ws.OpText, b)
}

func (c *wsClient) sendRaw(op ws.OpCode, payload []byte) {
	c.t.Helper()
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), payload...)))
	if err := ws.WriteFrame(c.conn, f); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next text frame's JSON, answering pings; a close frame is a *closeErr.
func (c *wsClient) read(timeout time.Duration) (map[string]any, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, err
		}
		if !h.Fin || h.Rsv != 0 || h.Masked || h.Length > 1<<24 {
			return nil, &protocolErr{fmt.Sprintf("malformed server frame header %+v", h)}
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return nil, err
		}
		switch h.OpCode {
		case ws.OpPing:
			if c.autoPong {
				c.sendRaw(ws.OpPong, payload)
			}
			continue
		case ws.OpClose:
			ce := &closeErr{code: 1005}
			if len(payload) >= 2 {
				ce.code = int(binary.BigEndian.Uint16(payload))
				ce.reason = string(payload[2:])
			}
			return nil, ce
		case ws.OpText:
			var m map[string]any
			if err := json.Unmarshal(payload, &m); err != nil {
				return nil, &protocolErr{fmt.Sprintf("server sent non-JSON %.200q", payload)}
			}
			return m, nil
		default:
			return nil, &protocolErr{fmt.Sprintf("server sent opcode %v", h.OpCode)}
		}
	}
}

// protocolErr is a server frame no client should ever get.
type protocolErr struct{ what string }

func (e *protocolErr) Error() string { return e.what }

func (c *wsClient) next() map[string]any {
	c.t.Helper()
	m, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("reading frame: %v", err)
	}
	return m
}

// expect reads the next frame and checks its type.
func (c *wsClient) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["type"] != typ {
		c.t.Fatalf("got frame %v, want type %q", m, typ)
	}
	return m
}

// expectClose reads until the server closes and checks the code.
func (c *wsClient) expectClose(code int) *closeErr {
	c.t.Helper()
	for {
		m, err := c.read(10 * time.Second)
		if err == nil {
			if m["type"] == "error" {
				continue
			}
			c.t.Fatalf("got frame %v while waiting for close %d", m, code)
		}
		var ce *closeErr
		if !errors.As(err, &ce) {
			c.t.Fatalf("connection ended without close frame (%v), want close %d", err, code)
		}
		if ce.code != code {
			c.t.Fatalf("close code %d (%q), want %d", ce.code, ce.reason, code)
		}
		return ce
	}
}

// auth sends an auth frame and waits for connected.
func (c *wsClient) auth(token string) {
	c.t.Helper()
	c.send(map[string]any{"type": "auth", "token": token})
	c.expect("connected")
}

// ---- SSE client: parses the stream as the HTML standard's EventSource does ----

type sseClient struct {
	t           testing.TB
	resp        *http.Response
	br          *bufio.Reader
	mu          sync.Mutex // guards lastEventID and retry, written by run
	lastEventID string
	retry       int
	events      chan sseEvent
	errs        chan error
}

type sseEvent struct {
	id    string // lastEventId at dispatch
	event string
	data  string
}

func (e *testEnv) sseURL(query string) string { return "http://" + e.addr + "/v1/sse?" + query }

// openSSE connects; a non-200 answer is returned as the response for the caller to check.
func (e *testEnv) openSSE(query string, header http.Header) (*sseClient, *http.Response) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.sseURL(query), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		return nil, resp
	}
	c := &sseClient{t: e.t, resp: resp, br: bufio.NewReader(resp.Body), events: make(chan sseEvent, 10000), errs: make(chan error, 1)}
	go c.run()
	e.t.Cleanup(func() { resp.Body.Close() })
	return c, resp
}

func (c *sseClient) run() {
	var data strings.Builder
	var event string
	hasData := false
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.errs <- err
			close(c.events)
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if hasData {
				c.events <- sseEvent{id: c.lastID(), event: event, data: strings.TrimSuffix(data.String(), "\n")}
			}
			data.Reset()
			event, hasData = "", false
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			c.mu.Lock()
			c.lastEventID = value
			c.mu.Unlock()
		case "event":
			event = value
		case "data":
			data.WriteString(value + "\n")
			hasData = true
		case "retry":
			c.mu.Lock()
			fmt.Sscan(value, &c.retry)
			c.mu.Unlock()
		}
	}
}

func (c *sseClient) next() sseEvent {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatalf("stream ended: %v", <-c.errs)
		}
		return ev
	case <-time.After(5 * time.Second):
		c.t.Fatal("no SSE event within 5s")
	}
	return sseEvent{}
}

// message decodes an event's data as herald's SSE message payload.
func (ev sseEvent) message(t testing.TB) (channel, id, data string) {
	t.Helper()
	var m struct {
		Channel string          `json:"channel"`
		ID      string          `json:"id"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	return m.Channel, m.ID, string(m.Data)
}

func (c *sseClient) close() { c.resp.Body.Close() }

// lastID is what EventSource would send as Last-Event-ID on reconnect.
func (c *sseClient) lastID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastEventID
}

func (c *sseClient) retryMs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retry
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func corsOnly(origins ...string) cors.Policy { return cors.New(origins) }
