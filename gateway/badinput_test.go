package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/api/auth"
)

// Every bad input gets a clear error and leaves other connections untouched: each test below
// keeps a bystander subscriber and checks it still receives messages afterwards.

func bystander(t *testing.T, e *testEnv) func() {
	c := e.dialWS(bearer(e.token([]string{"*"}, nil, time.Hour)))
	c.expect("connected")
	c.send(map[string]any{"type": "subscribe", "channel": "bystander"})
	c.expect("subscribed")
	return func() {
		t.Helper()
		id := e.publish("bystander", `"still here"`)
		if m := c.expect("message"); m["id"] != id.String() {
			t.Fatalf("bystander got %v", m)
		}
	}
}

func TestWebSocketBadFrames(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.MaxFrameBytes = 1024; c.MaxChannelsPerConn = 2 }))
	check := bystander(t, e)
	tok := e.token([]string{"*"}, []string{"ok:*"}, time.Hour)

	closes := []struct {
		name string
		send func(c *wsClient)
		code int
	}{
		{"non-JSON text", func(c *wsClient) { c.sendRaw(ws.OpText, []byte("hello")) }, 4000},
		{"JSON that is not an object", func(c *wsClient) { c.sendRaw(ws.OpText, []byte(`[1,2]`)) }, 4000},
		{"non-integer id", func(c *wsClient) { c.sendRaw(ws.OpText, []byte(`{"type":"ping","id":"x"}`)) }, 4000},
		{"binary frame", func(c *wsClient) { c.sendRaw(ws.OpBinary, []byte{1, 2, 3}) }, 1003},
		{"frame over the limit", func(c *wsClient) {
			c.sendRaw(ws.OpText, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 2000)+`"}`))
		}, 1009},
		{"invalid UTF-8", func(c *wsClient) { c.sendRaw(ws.OpText, []byte{'"', 0xff, '"'}) }, 1007},
		{"bad token in auth frame", func(c *wsClient) { c.send(map[string]any{"type": "auth", "token": "nonsense"}) }, 1008},
		{"expired token in auth frame", func(c *wsClient) {
			c.send(map[string]any{"type": "auth", "token": e.token([]string{"*"}, nil, -time.Hour)})
		}, 4001},
	}
	for _, tc := range closes {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dialWS(nil)
			c.t = t
			tc.send(c)
			ce := c.expectClose(tc.code)
			if tc.code != 1009 && ce.reason == "" {
				t.Fatalf("close %d without a reason", tc.code)
			}
		})
	}

	errs := []struct {
		name  string
		auth  bool
		frame map[string]any
		code  string
	}{
		{"subscribe before auth", false, map[string]any{"type": "subscribe", "id": 1, "channel": "a"}, "unauthenticated"},
		{"unknown type", true, map[string]any{"type": "dance", "id": 1}, "unknown-type"},
		{"invalid channel", true, map[string]any{"type": "subscribe", "id": 1, "channel": "no spaces"}, "invalid-channel"},
		{"invalid since", true, map[string]any{"type": "subscribe", "id": 1, "channel": "a", "since": "yesterday"}, "invalid-since"},
		{"publish without permission", true, map[string]any{"type": "publish", "id": 1, "channel": "other", "data": 1}, "forbidden"},
		{"publish without data", true, map[string]any{"type": "publish", "id": 1, "channel": "ok:1"}, "invalid-data"},
		{"unsubscribe unknown", true, map[string]any{"type": "unsubscribe", "id": 1, "channel": "a"}, "not-subscribed"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dialWS(nil)
			c.t = t
			if tc.auth {
				c.auth(tok)
			}
			c.send(tc.frame)
			m := c.expect("error")
			if m["code"] != tc.code || m["id"] != float64(1) || m["message"] == "" {
				t.Fatalf("error frame %v, want code %s", m, tc.code)
			}
			// The connection is still usable.
			c.send(map[string]any{"type": "ping", "id": 9})
			c.expect("pong")
		})
	}

	t.Run("forbidden channel", func(t *testing.T) {
		c := e.dialWS(bearer(e.token([]string{"orders:1"}, nil, time.Hour)))
		c.t = t
		c.expect("connected")
		c.send(map[string]any{"type": "subscribe", "id": 5, "channel": "orders:2"})
		if m := c.expect("error"); m["code"] != "forbidden" {
			t.Fatalf("%v", m)
		}
	})
	t.Run("more channels than allowed", func(t *testing.T) {
		c := e.dialWS(bearer(tok))
		c.t = t
		c.expect("connected")
		for i, ch := range []string{"x1", "x2"} {
			c.send(map[string]any{"type": "subscribe", "id": i, "channel": ch})
			c.expect("subscribed")
		}
		c.send(map[string]any{"type": "subscribe", "id": 3, "channel": "x3"})
		if m := c.expect("error"); m["code"] != "too-many-channels" {
			t.Fatalf("%v", m)
		}
		c.send(map[string]any{"type": "subscribe", "id": 4, "channel": "x1"})
		if m := c.expect("error"); m["code"] != "already-subscribed" {
			t.Fatalf("%v", m)
		}
	})
	check()
}

func TestWebSocketFloodIsRateLimited(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.FrameRateLimit = 20 }))
	check := bystander(t, e)
	c := e.dialWS(bearer(e.token([]string{"*"}, nil, time.Hour)))
	c.expect("connected")
	// All 50 frames in one write, so they are all in the server's hands when it closes: frames
	// arriving after the close would make the kernel answer with a reset, which can destroy
	// the close frame before the client reads it.
	var flood []byte
	for i := range 50 {
		frame, _ := wsTextFrame(fmt.Sprintf(`{"type":"ping","id":%d}`, i))
		flood = append(flood, frame...)
	}
	if _, err := c.conn.Write(flood); err != nil {
		t.Fatal(err)
	}
	pongs := 0
	for {
		m, err := c.read(5 * time.Second)
		if err != nil {
			ce, ok := err.(*closeErr)
			if !ok || ce.code != 4029 {
				t.Fatalf("ended with %v, want close 4029", err)
			}
			break
		}
		if m["type"] == "pong" {
			pongs++
		}
	}
	if pongs != 20 {
		t.Fatalf("%d pongs before the limit, want 20", pongs)
	}
	check()
}

func TestWebSocketUpgradeRefusals(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.CORS = corsOnly("https://shop.example") }))
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
		code   string
	}{
		{"wrong signature", bearer(mintWith(t, []byte("another-secret-that-is-long-enough-xx"))), 401, "invalid-token"},
		{"expired", bearer(e.token([]string{"*"}, nil, -time.Hour)), 401, "token-expired"},
		{"origin not allowed", http.Header{"Origin": {"https://evil.example"}}, 403, "origin-not-allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dialWS(e.addr, tc.header)
			if err == nil {
				t.Fatal("upgrade succeeded")
			}
			if !strings.Contains(err.Error(), http.StatusText(tc.status)) && !strings.Contains(err.Error(), itoa(tc.status)) {
				t.Fatalf("err %v, want status %d", err, tc.status)
			}
		})
	}
	// The allowed origin upgrades.
	c, err := dialWS(e.addr, http.Header{"Origin": {"https://shop.example"}})
	if err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
}

func TestWebSocketAuthTimeout(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.AuthTimeout = time.Second; c.Tick = 100 * time.Millisecond }))
	c := e.dialWS(nil)
	start := time.Now()
	c.expectClose(1008)
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 1s", d)
	}
}

func TestSSEBadRequests(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.MaxChannelsPerConn = 2 }))
	check := bystander(t, e)
	tok := e.token([]string{"orders:*"}, nil, time.Hour)
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
		status int
		code   string
	}{
		{"no channel", "access_token=" + tok, nil, 400, "missing-channel"},
		{"too many channels", "channel=orders:1&channel=orders:2&channel=orders:3&access_token=" + tok, nil, 400, "too-many-channels"},
		{"invalid channel", "channel=a%20b&access_token=" + tok, nil, 400, "invalid-channel"},
		{"malformed Last-Event-ID", "channel=orders:1&access_token=" + tok, http.Header{"Last-Event-Id": {"abc"}}, 400, "invalid-cursor"},
		{"cursor for the wrong number of channels", "channel=orders:1&since=1-0,2-0&access_token=" + tok, nil, 400, "invalid-cursor"},
		{"no token", "channel=orders:1", nil, 401, "unauthorized"},
		{"garbage token", "channel=orders:1&access_token=abc", nil, 401, "invalid-token"},
		{"alg none", "channel=orders:1&access_token=" + algNoneToken(), nil, 401, "invalid-token"},
		{"forbidden channel", "channel=secret&access_token=" + tok, nil, 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp := e.openSSE(tc.query, tc.header)
			if c != nil {
				t.Fatal("stream started")
			}
			checkProblem(t, resp, tc.status, tc.code)
		})
	}
	check()
}

func checkProblem(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d %s: %s, want %d problem", resp.StatusCode, resp.Header.Get("Content-Type"), body, status)
	}
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type != code || p.Detail == "" || p.Status != status {
		t.Fatalf("problem %s, want type %s", body, code)
	}
}

func mintWith(t *testing.T, secret []byte) string {
	tok, err := auth.MintHMAC(secret, auth.MintClaims{Subscribe: []string{"*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// algNoneToken is an unsigned token claiming every permission.
func algNoneToken() string {
	enc := func(s string) string { return strings.TrimRight(b64(s), "=") }
	return enc(`{"alg":"none","typ":"JWT"}`) + "." + enc(`{"herald":{"subscribe":["*"]},"exp":9999999999}`) + "."
}

// TestRefusedHandshakeClosesTheConnection: a request to /v1/ws that is not a valid upgrade gets
// its 400 and the connection is closed, not leaked.
func TestRefusedHandshakeClosesTheConnection(t *testing.T) {
	e := newEnv(t)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the connection stayed open: %v (read %q)", err, got)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 400") {
		t.Fatalf("answer %q", got)
	}
}

// TestSSERefusalIsReadableCrossOrigin: a refused SSE request carries CORS headers, so a page on
// another origin can read why (a bad token is not a network failure).
// Without an allowlist the page gets "*"; a listed origin gets itself, with credentials.
func TestSSERefusalIsReadableCrossOrigin(t *testing.T) {
	for _, tc := range []struct {
		origins           []string
		allowOrigin, cred string
	}{
		{nil, "*", ""},
		{[]string{"https://shop.example"}, "https://shop.example", "true"},
	} {
		e := newEnv(t, withConfig(func(c *Config) { c.CORS = corsOnly(tc.origins...) }))
		_, resp := e.openSSE("channel=x&access_token=bad", http.Header{"Origin": {"https://shop.example"}})
		h := resp.Header
		if resp.StatusCode != 401 || h.Get("Access-Control-Allow-Origin") != tc.allowOrigin || h.Get("Access-Control-Allow-Credentials") != tc.cred {
			t.Fatalf("allowlist %v: status %d, headers %v", tc.origins, resp.StatusCode, h)
		}
	}
}

// TestFloodStillSendingAfterTheCloseReads4029: a client that floods frame by frame and goes on
// writing after herald closed it still reads its 4029. Bytes reaching a closed socket make the
// kernel answer with a reset that destroys the unread close frame; herald lingers instead (shut
// down for writing, input dropped, closed a moment later), so the close frame arrives.
func TestFloodStillSendingAfterTheCloseReads4029(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.FrameRateLimit = 20 }))
	check := bystander(t, e)
	c := e.dialWS(bearer(e.token([]string{"*"}, nil, time.Hour)))
	c.expect("connected")
	frame, _ := wsTextFrame(`{"type":"ping"}`)
	// Well past the limit, each frame its own write, with a pause that lets the server read
	// (and, past the limit, close) between them: most of these arrive after the close.
	for range 400 {
		if _, err := c.conn.Write(frame); err != nil {
			break // the end of the stream reached us: stop writing, as a client would
		}
		time.Sleep(100 * time.Microsecond)
	}
	for {
		m, err := c.read(5 * time.Second)
		if err != nil {
			if ce, ok := err.(*closeErr); !ok || ce.code != 4029 {
				t.Fatalf("ended with %v, want close 4029", err)
			}
			break
		}
		if m["type"] != "pong" {
			t.Fatalf("got %v, want pongs, then close 4029", m)
		}
	}
	// A client that has not noticed the close yet goes on writing for a moment: it must not be
	// answered with a reset (which some clients, Node's among them, report as a dropped
	// connection, 1006, before they read the close frame they hold).
	for i := range 5 {
		if _, err := c.conn.Write(frame); err != nil {
			t.Fatalf("write %d after the close: %v; want the socket to linger, not reset", i, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	check()
}
