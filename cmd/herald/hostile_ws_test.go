package main

import (
	"encoding/binary"
	"fmt"
	"net"
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

// wsgResetDuringSubscribes runs the attacker's loop (wsgAttack); then nothing of it may stay
// behind: no subscription, no goroutine.
func wsgResetDuringSubscribes(t *testing.T, s *server) {
	// A well-behaved client first, so that what herald starts once (a broker client's
	// connections) is part of the baseline.
	c := openWS(t, s, wsOpts{query: s.sub})
	c.write(wsgSubscribes())
	for range 64 {
		c.expect("subscribed")
	}
	c.conn.Close()
	waitUntil(t, 5*time.Second, func() bool { return mustMetric(t, s, "herald_subscriptions") == 0 },
		"a closed client's subscriptions released")
	baseline := wsgSettledGoroutines(t, s)

	wsgAttack(t, s)
	var conns, subs, goroutines int
	waitUntil(t, 15*time.Second, func() bool {
		conns = mustMetric(t, s, `herald_connections{transport="websocket"}`)
		subs, goroutines = mustMetric(t, s, "herald_subscriptions"), mustMetric(t, s, "go_goroutines")
		// A little slack: the runtime and net/http come and go on their own.
		return conns == 0 && subs == 0 && goroutines <= baseline+3
	}, "every connection gone, no subscription and the goroutines back to %d; have %s connections, %s subscriptions, %s goroutines",
		baseline, func() string { return strconv.Itoa(conns) }, func() string { return strconv.Itoa(subs) },
		func() string { return strconv.Itoa(goroutines) })
	// The node still serves, and counts exactly its one subscription.
	c = openWS(t, s, wsOpts{query: s.sub})
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "wsg:after"})
	c.expect("subscribed")
	if n := mustMetric(t, s, "herald_subscriptions"); n != 1 {
		t.Fatalf("%d subscriptions with one client subscribed to one channel", n)
	}
}

// wsgSettledGoroutines returns herald's goroutine count once the background work of released
// subscriptions (broker unsubscribes) has ended: the first of two equal readings in a row.
func wsgSettledGoroutines(t *testing.T, s *server) int {
	t.Helper()
	prev, n := -1, 0
	waitUntil(t, 10*time.Second, func() bool {
		prev, n = n, mustMetric(t, s, "go_goroutines")
		return n == prev
	}, "herald's goroutine count settles")
	return n
}

// wsgSubscribes is 64 subscribe frames, to channels wsg:0 to wsg:63.
func wsgSubscribes() []byte {
	var b []byte
	for j := range 64 {
		b = append(b, clientFrame(ws.OpText, fmt.Appendf(nil, `{"type":"subscribe","id":%d,"channel":"wsg:%d"}`, j, j))...)
	}
	return b
}

// wsgAttack is the attacker's loop: 150 times, connect, send 64 subscribes in one write and
// reset the connection at once.
func wsgAttack(t *testing.T, s *server) {
	flood := wsgSubscribes()
	for range 150 {
		c := dialWS(t, s, wsOpts{query: s.sub})
		c.write(flood)
		c.conn.(*net.TCPConn).SetLinger(0) // close sends a reset
		c.conn.Close()
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
		return clientFrame(ws.OpText, []byte(`{"type":"subscribe","channel":"`+channel+`"}`))
	}
	for _, tc := range []struct {
		name  string
		token string
		setup func(c *wsClient)
		frame []byte
	}{
		{"forbidden subscribes", wsgToken(t, "wsg:mine"), nil, subscribe("wsg:theirs")},
		{"duplicate subscribes", s.sub, func(c *wsClient) {
			c.send(map[string]any{"type": "subscribe", "channel": "wsg:dup"})
			c.expect("subscribed")
		}, subscribe("wsg:dup")},
		{"ping control frames", s.sub, nil, clientFrame(ws.OpPing, []byte("x"))},
		{"pong control frames", s.sub, nil, clientFrame(ws.OpPong, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := openWS(t, s, wsOpts{query: tc.token})
			if tc.setup != nil {
				tc.setup(c)
			}
			// One write, so the whole flood is in herald's hands when it closes (see
			// TestWebSocketFloodIsRateLimited in the gateway).
			c.write([]byte(strings.Repeat(string(tc.frame), 300)))
			if code, _ := c.closed(); code != 4029 {
				t.Fatalf("closed with %d, want 4029", code)
			}
		})
	}
	// Successful subscribes stay exempt: more of them than the limit are all answered.
	c := openWS(t, s, wsOpts{query: s.sub})
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
	c := openWS(t, s, wsOpts{query: wsgToken(t, "wsg:*")})
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
	var info struct{ Subscribers int }
	getJSON(t, s, "/v1/channels/"+channel, s.pub, &info)
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
			c := openWS(t, s, wsOpts{query: s.sub})
			c.write(clientFrame(ws.OpClose, tc.payload))
			if got, _ := c.closed(); int(got) != tc.want {
				t.Fatalf("answered with %d, want %d", got, tc.want)
			}
		})
	}
}
