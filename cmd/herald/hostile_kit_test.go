package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// The kit of the hostile suite (and of the e2e tests): a raw WebSocket client, a /metrics reader
// and an HTTP helper. With rawClient/rawRequest (keepalive_e2e_test.go) for HTTP/1.1 byte for
// byte, cutProxy (hostile_gaps_test.go) for a link that goes down, and startServer/startNode,
// a new attacker move needs no helper of its own.

// wsClient is a WebSocket client that writes frames byte for byte and reads every server frame.
// Reads are strict: a server frame that is masked, fragmented or has RSV bits, or a text frame
// that is not UTF-8, is an error.
type wsClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader // what the upgrade read ahead, then conn

	// readTimeout bounds each read (5 s from dialWS); 0 for none.
	readTimeout time.Duration
	// deadline, when set (by within), bounds every read instead.
	deadline time.Time
}

// wsOpts say how dialWS connects; the zero value connects without a credential.
type wsOpts struct {
	query   string        // a token sent as ?access_token=
	bearer  string        // a token sent as Authorization: Bearer
	header  http.Header   // more fields of the upgrade request
	timeout time.Duration // bounds the connect and the upgrade; 0 for no bound
}

// dialWS upgrades a connection to s's /v1/ws as o says, and closes it when the test ends.
func dialWS(t *testing.T, s *server, o wsOpts) *wsClient {
	t.Helper()
	url := strings.Replace(s.base, "http", "ws", 1) + "/v1/ws"
	if o.query != "" {
		url += "?access_token=" + o.query
	}
	h := o.header.Clone()
	if o.bearer != "" {
		if h == nil {
			h = http.Header{}
		}
		h.Set("Authorization", "Bearer "+o.bearer)
	}
	d := ws.Dialer{Timeout: o.timeout}
	if h != nil {
		d.Header = ws.HandshakeHeaderHTTP(h)
	}
	conn, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("WebSocket upgrade (%+v): %v", o, err)
	}
	t.Cleanup(func() { conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsClient{t: t, conn: conn, br: br, readTimeout: 5 * time.Second}
}

// openWS is dialWS for a credential the upgrade accepts: the first frame must be connected,
// with a session.
func openWS(t *testing.T, s *server, o wsOpts) *wsClient {
	t.Helper()
	c := dialWS(t, s, o)
	if m := c.expect("connected"); m["session"] == nil {
		t.Fatalf("connected without session: %v", m)
	}
	return c
}

// clientFrame is a masked client frame of op with payload, as bytes to write.
func clientFrame(op ws.OpCode, payload []byte) []byte {
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), payload...)))
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

// within makes every later read end by d from now, instead of readTimeout per read.
func (c *wsClient) within(d time.Duration) { c.deadline = time.Now().Add(d) }

// write writes p (frames made with clientFrame, or any bytes) as it is.
func (c *wsClient) write(p []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(p); err != nil {
		c.t.Fatalf("WebSocket write: %v", err)
	}
}

// send writes v as one text frame: a []byte as it is, anything else marshalled to JSON.
func (c *wsClient) send(v any) {
	c.t.Helper()
	p, ok := v.([]byte)
	if !ok {
		p, _ = json.Marshal(v)
	}
	c.write(clientFrame(ws.OpText, p))
}

// read returns the next server frame other than a ping (pings are answered), or the error
// that ends the connection. It does not fail the test, so a reader goroutine may call it.
func (c *wsClient) read() (ws.OpCode, []byte, error) {
	for {
		switch {
		case !c.deadline.IsZero():
			c.conn.SetReadDeadline(c.deadline)
		case c.readTimeout > 0:
			c.conn.SetReadDeadline(time.Now().Add(c.readTimeout))
		default:
			c.conn.SetReadDeadline(time.Time{})
		}
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return 0, nil, fmt.Errorf("reading a frame header: %w", err)
		}
		if h.Masked || !h.Fin || h.Rsv != 0 {
			return 0, nil, fmt.Errorf("a server frame with header %+v", h)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return 0, nil, fmt.Errorf("reading a frame: %w", err)
		}
		if h.OpCode == ws.OpText && !utf8.Valid(payload) {
			return 0, nil, fmt.Errorf("a text frame that is not UTF-8: %q", payload)
		}
		if h.OpCode != ws.OpPing {
			return h.OpCode, payload, nil
		}
		if _, err := c.conn.Write(clientFrame(ws.OpPong, payload)); err != nil {
			return 0, nil, err
		}
	}
}

// next returns the next server frame other than a ping, failing the test if there is none.
func (c *wsClient) next() (ws.OpCode, []byte) {
	c.t.Helper()
	op, p, err := c.read()
	if err != nil {
		c.t.Fatal(err)
	}
	return op, p
}

// nextJSON returns the next frame, failing on anything but a JSON text frame.
func (c *wsClient) nextJSON() map[string]any {
	c.t.Helper()
	op, p := c.next()
	var m map[string]any
	if op != ws.OpText || json.Unmarshal(p, &m) != nil {
		c.t.Fatalf("got opcode %v %q, want a JSON text frame", op, p)
	}
	return m
}

// expect returns the next frame, failing unless it is a JSON frame of type typ.
func (c *wsClient) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.nextJSON()
	if m["type"] != typ {
		c.t.Fatalf("got %v, want a %q frame", m, typ)
	}
	return m
}

// readJSON returns the next text frame as JSON, skipping pongs, or the error that ended the
// connection: a wsutil.ClosedError for the server's close frame, which is echoed as a client
// does. It does not fail the test.
func (c *wsClient) readJSON() (map[string]any, error) {
	for {
		op, p, err := c.read()
		if err != nil {
			return nil, err
		}
		switch op {
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := closeData(p)
			echo := []byte(nil)
			if len(p) >= 2 {
				echo = p[:2]
			}
			_, _ = c.conn.Write(clientFrame(ws.OpClose, echo))
			return nil, wsutil.ClosedError{Code: code, Reason: reason}
		case ws.OpText:
			var m map[string]any
			if err := json.Unmarshal(p, &m); err != nil {
				return nil, fmt.Errorf("frame %q: %w", p, err)
			}
			return m, nil
		default:
			return nil, fmt.Errorf("a frame of opcode %v: %q", op, p)
		}
	}
}

// await reads frames until one of type typ arrives, skipping others; an error frame or a
// failed read fails the test.
func (c *wsClient) await(typ string) map[string]any {
	c.t.Helper()
	for {
		m, err := c.readJSON()
		if err != nil {
			c.t.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		if m["type"] == typ {
			return m
		}
		if m["type"] == "error" {
			c.t.Fatalf("waiting for a %s frame: got %v", typ, m)
		}
	}
}

// subscribeFrame is the subscribe frame (id 1) for channel; since "" is live only.
func subscribeFrame(channel, since string) map[string]any {
	f := map[string]any{"type": "subscribe", "id": 1, "channel": channel}
	if since != "" {
		f["since"] = since
	}
	return f
}

// subscribe subscribes to channel (since "" for live only) and returns the subscribed frame.
func (c *wsClient) subscribe(channel, since string) map[string]any {
	c.t.Helper()
	c.send(subscribeFrame(channel, since))
	return c.await("subscribed")
}

// closed reads until the server's close frame, skipping other frames, and returns its code
// (1005 for none) and reason.
func (c *wsClient) closed() (ws.StatusCode, string) {
	c.t.Helper()
	for {
		if op, p := c.next(); op == ws.OpClose {
			return closeData(p)
		}
	}
}

// closeData is the code (1005 for none) and reason of a close frame's payload.
func closeData(p []byte) (ws.StatusCode, string) {
	if len(p) < 2 {
		return ws.StatusNoStatusRcvd, ""
	}
	return ws.ParseCloseFrameData(p)
}

// metric returns the value of series (the name with its labels, as /metrics prints them) on
// s's /metrics now, and false when the page has no such series.
func metric(t *testing.T, s *server, series string) (float64, bool) {
	t.Helper()
	a := httpDo(t, "GET", s.base+"/metrics", nil)
	if a.status != 200 {
		t.Fatalf("/metrics: %d %s", a.status, a.body)
	}
	return seriesValue(a.body, series)
}

// mustMetric is metric for a series that must be there: a missing one fails the test.
func mustMetric(t *testing.T, s *server, series string) int {
	t.Helper()
	v, ok := metric(t, s, series)
	if !ok {
		t.Fatalf("/metrics has no %s", series)
	}
	return int(v)
}

// series reads /metrics over c, a keep-alive connection (one opened while descriptors were
// plentiful, say), and returns the value of each series named, 0 for a missing one, all from
// the same page.
func (c *rawClient) series(names ...string) []int {
	c.t.Helper()
	a := c.send(rawRequest("GET", "/metrics", "", "", ""))
	if a.status != 200 || a.closes {
		c.t.Fatalf("/metrics: %+v", a)
	}
	out := make([]int, len(names))
	for i, name := range names {
		v, _ := seriesValue(a.body, name)
		out[i] = int(v)
	}
	return out
}

// seriesValue finds series in a /metrics page.
func seriesValue(page, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// httpAnswer is an HTTP answer reduced to what the tests look at.
type httpAnswer struct {
	status int
	header http.Header
	body   string
	typ    string // the problem document's type, "" when the body is not one
	detail string
}

// bearer is the header of a request made with token.
func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// httpDo sends a request with the given header fields, within 10 s, and reads the whole
// answer; an SSE stream or a WebSocket that started is cut after its headers.
func httpDo(t *testing.T, method, url string, header map[string]string) httpAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	a := httpAnswer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusSwitchingProtocols || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return a // a stream that started: its headers are the answer
	}
	b, _ := io.ReadAll(resp.Body)
	a.body = string(b)
	var p struct{ Type, Detail string }
	if json.Unmarshal(b, &p) == nil {
		a.typ, a.detail = p.Type, p.Detail
	}
	return a
}

// getJSON reads a JSON answer of s's HTTP API with token into out, failing unless it is a 200.
func getJSON(t *testing.T, s *server, path, token string, out any) {
	t.Helper()
	a := httpDo(t, "GET", s.base+path, bearer(token))
	if a.status != 200 || json.Unmarshal([]byte(a.body), out) != nil {
		t.Fatalf("GET %s: %d %s", path, a.status, a.body)
	}
}
