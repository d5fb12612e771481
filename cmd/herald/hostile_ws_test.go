package main

import (
	"bufio"
	"context"
	"encoding/binary"
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

	"github.com/gobwas/ws"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// A hostile WebSocket client against the real binary: what it sends must end in a clear error
// or close code, and must leave nothing behind once it is gone.

// wsgStart runs herald with a known JWT secret (and args), so tests can mint narrow tokens.
func wsgStart(t *testing.T, args ...string) *server {
	t.Helper()
	s := startServer(t, freePort(t), append([]string{"--jwt-secret", nodeSecret}, args...)...)
	s.sub = wsgToken(t, "*")
	var err error
	if s.pub, err = auth.MintHMAC([]byte(nodeSecret), auth.MintClaims{Publish: []string{"*"}, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	return s
}

// wsgToken mints a token that may subscribe to the given patterns.
func wsgToken(t *testing.T, subscribe ...string) string {
	t.Helper()
	tok, err := auth.MintHMAC([]byte(nodeSecret), auth.MintClaims{Subscribe: subscribe, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wsgConn is a WebSocket client that writes frames byte for byte and reads every server frame.
type wsgConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// wsgDial connects with token on the upgrade request and waits for connected.
func wsgDial(t *testing.T, s *server, token string) *wsgConn {
	t.Helper()
	conn, br, _, err := ws.Dial(context.Background(), strings.Replace(s.base, "http", "ws", 1)+"/v1/ws?access_token="+token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	c := &wsgConn{t: t, conn: conn, br: br}
	if m := c.expect("connected"); m["session"] == nil {
		t.Fatalf("connected without session: %v", m)
	}
	return c
}

// wsgFrame is a masked client frame.
func wsgFrame(op ws.OpCode, payload []byte) []byte {
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), payload...)))
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

func (c *wsgConn) write(p []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(p); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsgConn) send(v map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.write(wsgFrame(ws.OpText, b))
}

// next returns the next server frame (pings are answered and skipped).
func (c *wsgConn) next() (ws.OpCode, []byte) {
	c.t.Helper()
	for {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			c.t.Fatalf("reading a frame header: %v", err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			c.t.Fatalf("reading a frame: %v", err)
		}
		if h.OpCode != ws.OpPing {
			return h.OpCode, payload
		}
		c.write(wsgFrame(ws.OpPong, payload))
	}
}

// nextJSON returns the next text frame, failing on anything else.
func (c *wsgConn) nextJSON() map[string]any {
	c.t.Helper()
	op, p := c.next()
	var m map[string]any
	if op != ws.OpText || json.Unmarshal(p, &m) != nil {
		c.t.Fatalf("got opcode %v %q, want a JSON text frame", op, p)
	}
	return m
}

func (c *wsgConn) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.nextJSON()
	if m["type"] != typ {
		c.t.Fatalf("got %v, want a %q frame", m, typ)
	}
	return m
}

// closeCode reads until the server's close frame, skipping other frames, and returns its code
// (1005 for none).
func (c *wsgConn) closeCode() int {
	c.t.Helper()
	for {
		op, p := c.next()
		if op != ws.OpClose {
			continue
		}
		if len(p) < 2 {
			return 1005
		}
		return int(binary.BigEndian.Uint16(p))
	}
}

// wsgMetric reads one series from /metrics (name with its labels, as /metrics prints it).
func wsgMetric(t *testing.T, s *server, name string) int {
	t.Helper()
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return int(v)
}

// wsgResetDuringSubscribes runs the attacker's loop (wsgAttack); then nothing of it may stay
// behind: no subscription, no goroutine.
func wsgResetDuringSubscribes(t *testing.T, s *server) {
	// A well-behaved client first, so that what herald starts once (a broker client's
	// connections) is part of the baseline.
	c := wsgDial(t, s, s.sub)
	c.write(wsgSubscribes())
	for range 64 {
		c.expect("subscribed")
	}
	c.conn.Close()
	waitUntil(t, 5*time.Second, func() bool { return wsgMetric(t, s, "herald_subscriptions") == 0 },
		"a closed client's subscriptions released")
	baseline := wsgSettledGoroutines(t, s)

	wsgAttack(t, s)
	var conns, subs, goroutines int
	waitUntil(t, 15*time.Second, func() bool {
		conns = wsgMetric(t, s, `herald_connections{transport="websocket"}`)
		subs, goroutines = wsgMetric(t, s, "herald_subscriptions"), wsgMetric(t, s, "go_goroutines")
		// A little slack: the runtime and net/http come and go on their own.
		return conns == 0 && subs == 0 && goroutines <= baseline+3
	}, "every connection gone, no subscription and the goroutines back to %d; have %s connections, %s subscriptions, %s goroutines",
		baseline, func() string { return strconv.Itoa(conns) }, func() string { return strconv.Itoa(subs) },
		func() string { return strconv.Itoa(goroutines) })
	// The node still serves, and counts exactly its one subscription.
	c = wsgDial(t, s, s.sub)
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "wsg:after"})
	c.expect("subscribed")
	if n := wsgMetric(t, s, "herald_subscriptions"); n != 1 {
		t.Fatalf("%d subscriptions with one client subscribed to one channel", n)
	}
}

// wsgSettledGoroutines returns herald's goroutine count once the background work of released
// subscriptions (broker unsubscribes) has ended: the first of two equal readings in a row.
func wsgSettledGoroutines(t *testing.T, s *server) int {
	t.Helper()
	prev, n := -1, 0
	waitUntil(t, 10*time.Second, func() bool {
		prev, n = n, wsgMetric(t, s, "go_goroutines")
		return n == prev
	}, "herald's goroutine count settles")
	return n
}

// wsgSubscribes is 64 subscribe frames, to channels wsg:0 to wsg:63.
func wsgSubscribes() []byte {
	var b []byte
	for j := range 64 {
		b = append(b, wsgFrame(ws.OpText, fmt.Appendf(nil, `{"type":"subscribe","id":%d,"channel":"wsg:%d"}`, j, j))...)
	}
	return b
}

// wsgAttack is the attacker's loop: 150 times, connect, send 64 subscribes in one write and
// reset the connection at once.
func wsgAttack(t *testing.T, s *server) {
	flood := wsgSubscribes()
	for range 150 {
		conn, _, _, err := ws.Dial(context.Background(), strings.Replace(s.base, "http", "ws", 1)+"/v1/ws?access_token="+s.sub)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(flood); err != nil {
			t.Fatal(err)
		}
		conn.(*net.TCPConn).SetLinger(0) // close sends a reset
		conn.Close()
	}
}

func TestHostileResetDuringSubscribesLeaksNothing(t *testing.T) {
	wsgResetDuringSubscribes(t, wsgStart(t))
}

func TestHostileResetDuringSubscribesLeaksNothingValkey(t *testing.T) {
	v := valkeytest.StartServer(t)
	wsgResetDuringSubscribes(t, wsgStart(t, "--valkey-url", v.URL(), "--valkey-timeout", "5s"))
}

// TestHostileFloodsEndIn4029: every frame counts toward the frame limit (100 per 10 s) except
// subscribes that succeed, so floods of refused subscribes or of control frames are closed.
func TestHostileFloodsEndIn4029(t *testing.T) {
	s := wsgStart(t)
	subscribe := func(channel string) []byte {
		return wsgFrame(ws.OpText, []byte(`{"type":"subscribe","channel":"`+channel+`"}`))
	}
	for _, tc := range []struct {
		name  string
		token string
		setup func(c *wsgConn)
		frame []byte
	}{
		{"forbidden subscribes", wsgToken(t, "wsg:mine"), nil, subscribe("wsg:theirs")},
		{"duplicate subscribes", s.sub, func(c *wsgConn) {
			c.send(map[string]any{"type": "subscribe", "channel": "wsg:dup"})
			c.expect("subscribed")
		}, subscribe("wsg:dup")},
		{"ping control frames", s.sub, nil, wsgFrame(ws.OpPing, []byte("x"))},
		{"pong control frames", s.sub, nil, wsgFrame(ws.OpPong, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := wsgDial(t, s, tc.token)
			c.t = t
			if tc.setup != nil {
				tc.setup(c)
			}
			// One write, so the whole flood is in herald's hands when it closes (see
			// TestWebSocketFloodIsRateLimited in the gateway).
			c.write([]byte(strings.Repeat(string(tc.frame), 300)))
			if code := c.closeCode(); code != 4029 {
				t.Fatalf("closed with %d, want 4029", code)
			}
		})
	}
	// Successful subscribes stay exempt: more of them than the limit are all answered.
	c := wsgDial(t, s, s.sub)
	var many []byte
	for j := range 128 {
		many = append(many, subscribe("wsg:ok"+strconv.Itoa(j))...)
	}
	c.write(many)
	for range 128 {
		c.expect("subscribed")
	}
}

// TestHostileNarrowerTokenEndsSubscriptions: an auth frame that replaces the token ends the
// subscriptions the new token does not allow, each with an error frame, and their messages stop.
func TestHostileNarrowerTokenEndsSubscriptions(t *testing.T) {
	s := wsgStart(t)
	c := wsgDial(t, s, wsgToken(t, "wsg:*"))
	for i, ch := range []string{"wsg:kept", "wsg:lost"} {
		c.send(map[string]any{"type": "subscribe", "id": i, "channel": ch})
		c.expect("subscribed")
	}
	c.send(map[string]any{"type": "auth", "id": 7, "token": wsgToken(t, "wsg:kept")})
	if m := c.expect("connected"); m["id"] != float64(7) {
		t.Fatalf("connected %v, want id 7", m)
	}
	m := c.expect("error")
	if m["code"] != "forbidden" || m["channel"] != "wsg:lost" || !strings.Contains(m["message"].(string), "wsg:lost") {
		t.Fatalf("error frame %v, want forbidden for wsg:lost", m)
	}
	if n := wsgSubscribers(t, s, "wsg:lost"); n != 0 {
		t.Fatalf("wsg:lost has %d subscribers after the token dropped it", n)
	}
	// The channel the new token lacks sends nothing more; the kept one still does.
	s.publish("wsg:lost", `"gone"`)
	s.publish("wsg:kept", `"here"`)
	m = c.expect("message")
	if m["channel"] != "wsg:kept" {
		t.Fatalf("got %v, want only messages of wsg:kept", m)
	}
	// Subscribing to it again is refused as any forbidden channel is.
	c.send(map[string]any{"type": "subscribe", "id": 8, "channel": "wsg:lost"})
	if m := c.expect("error"); m["code"] != "forbidden" || m["id"] != float64(8) {
		t.Fatalf("%v", m)
	}
}

// wsgSubscribers reads a channel's subscriber count from the HTTP API.
func wsgSubscribers(t *testing.T, s *server, channel string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+"/v1/channels/"+channel, nil)
	req.Header.Set("Authorization", "Bearer "+s.pub)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ Subscribers int }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&info) != nil {
		t.Fatalf("channel info: %d", resp.StatusCode)
	}
	return info.Subscribers
}

// TestHostileInvalidCloseCodesAnswered1002: RFC 6455 7.4 close codes a peer may not send, a
// one-byte close payload and a reason that is not UTF-8 are protocol errors (1002); valid codes
// are echoed.
func TestHostileInvalidCloseCodesAnswered1002(t *testing.T) {
	s := wsgStart(t)
	code := func(c uint16, reason ...byte) []byte { return append(binary.BigEndian.AppendUint16(nil, c), reason...) }
	for _, tc := range []struct {
		name    string
		payload []byte
		want    int
	}{
		{"no code", nil, 1000},
		{"one byte", []byte{3}, 1002},
		{"999", code(999), 1002},
		{"1004", code(1004), 1002},
		{"1005", code(1005), 1002},
		{"1006", code(1006), 1002},
		{"1015", code(1015), 1002},
		{"1016", code(1016), 1002},
		{"2999", code(2999), 1002},
		{"5000", code(5000), 1002},
		{"65535", code(65535), 1002},
		{"invalid UTF-8 reason", code(1000, 'o', 0xff, 'k'), 1002},
		{"1000", code(1000, []byte("bye")...), 1000},
		{"1001", code(1001), 1001},
		{"1003", code(1003), 1003},
		{"1007", code(1007), 1007},
		{"1011", code(1011), 1011},
		{"1014", code(1014), 1014},
		{"3000", code(3000), 3000},
		{"4999", code(4999, []byte("é")...), 4999},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := wsgDial(t, s, s.sub)
			c.t = t
			c.write(wsgFrame(ws.OpClose, tc.payload))
			if got := c.closeCode(); got != tc.want {
				t.Fatalf("answered with %d, want %d", got, tc.want)
			}
		})
	}
}
