package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestIdleConnectionsCostNoGoroutines opens 2,000 idle WebSocket and 2,000 idle SSE
// subscribers and checks the process's goroutine count does not grow with them.
func TestIdleConnectionsCostNoGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 4,000 connections")
	}
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	// Warm up: one connection of each kind, so lazily started goroutines exist before counting.
	warm := e.dialWS(bearer(tok))
	warm.expect("connected")
	base := stableGoroutines()

	const n = 2000
	conns := make([]net.Conn, 0, 2*n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	subscribe, _ := wsTextFrame(`{"type":"subscribe","channel":"idle"}`)
	for i := range n {
		c, err := dialWS(e.addr, bearer(tok))
		if err != nil {
			t.Fatalf("ws %d: %v", i, err)
		}
		conns = append(conns, c.conn)
		if _, err := c.conn.Write(subscribe); err != nil {
			t.Fatal(err)
		}
	}
	req := "GET /v1/sse?channel=idle&access_token=" + tok + " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
	for i := range n {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatalf("sse %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() bool { return e.gw.Subscribers("idle") == 2*n }, "all %d subscribed (have %d)", 2*n, e.gw.Subscribers("idle"))
	after := stableGoroutines()
	t.Logf("goroutines: %d before, %d with %d idle connections", base, after, 2*n)
	if after > base+20 {
		t.Fatalf("goroutines grew from %d to %d with %d idle connections", base, after, 2*n)
	}
	// And they are all live: one publish reaches every one of them.
	e.publish("idle", `"ping"`)
	buf := make([]byte, 4096)
	for i, c := range conns[:10] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := ""
		for !strings.Contains(got, `"ping"`) {
			k, err := c.Read(buf)
			if err != nil {
				t.Fatalf("conn %d: %v (read %q)", i, err, got)
			}
			got += string(buf[:k])
		}
	}
}

// stableGoroutines waits for the count to settle (handshake goroutines exiting).
func stableGoroutines() int {
	prev := -1
	for range 50 {
		n := runtime.NumGoroutine()
		if n == prev {
			return n
		}
		prev = n
		time.Sleep(100 * time.Millisecond)
	}
	return prev
}

func wsTextFrame(s string) ([]byte, error) {
	return ws.CompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame([]byte(s))))
}

// TestSeamUnderLoad subscribes with resume while a publisher runs flat out: every message must
// arrive exactly once and in order across the replay/live seam.
func TestSeamUnderLoad(t *testing.T) {
	// The replay cap is lifted: this test is about the seam, not the cap.
	// The replay cap and the queue bound are lifted: this test is about the seam, and the test
	// clients, on a loaded machine, may read slower than the publisher writes.
	e := newEnv(t, withConfig(func(c *Config) { c.ReplayCap = 1 << 20; c.QueueBytes = 1 << 28 }), withRetention(1<<20, time.Hour))
	tok := e.token([]string{"*"}, nil, time.Hour)
	start := e.publish("hot", `0`)
	ctx, cancel := context.WithCancel(context.Background())
	var published []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ctx.Err() == nil && i < 100000; i++ {
			if i%500 == 0 {
				time.Sleep(time.Millisecond) // bursts: pending buffers stay under their bound
			}
			id := e.publish("hot", fmt.Sprint(i))
			mu.Lock()
			published = append(published, id.String())
			mu.Unlock()
		}
	}()
	const clients = 5
	got := make([][]string, clients)
	var cwg sync.WaitGroup
	for k := range clients {
		cwg.Add(1)
		time.Sleep(5 * time.Millisecond)
		go func() {
			defer cwg.Done()
			c, err := dialWS(e.addr, bearer(tok))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.conn.Close()
			c.t = t
			c.send(map[string]any{"type": "subscribe", "channel": "hot", "since": start.String()})
			for {
				m, err := c.read(2 * time.Second)
				if err != nil {
					if _, isClose := err.(*closeErr); isClose {
						t.Errorf("client %d: %v", k, err)
					}
					return // quiet for 2s: the publisher stopped and everything arrived
				}
				if m["type"] == "subscribed" && m["recovered"] != true {
					t.Errorf("client %d: subscribed %v", k, m)
				}
				if m["type"] == "message" {
					got[k] = append(got[k], m["id"].(string))
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	cwg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for k := range clients {
		if len(got[k]) != len(published) {
			seen := map[string]int{}
			for i, id := range got[k] {
				if j, dup := seen[id]; dup {
					t.Errorf("client %d: %s at %d and %d; around: %v", k, id, j, i, got[k][max(0, j-2):j+3])
					break
				}
				seen[id] = i
			}
			for i := 1; i < len(got[k]); i++ {
				if got[k][i] <= got[k][i-1] && len(got[k][i]) == len(got[k][i-1]) {
					t.Errorf("client %d: out of order at %d: %v", k, i, got[k][i-2:i+2])
					break
				}
			}
			t.Fatalf("client %d got %d messages, %d were published", k, len(got[k]), len(published))
		}
		for i := range published {
			if got[k][i] != published[i] {
				t.Fatalf("client %d message %d is %s, want %s", k, i, got[k][i], published[i])
			}
		}
	}
	t.Logf("%d messages, %d clients: exact", len(published), clients)
}

func TestSlowConsumerIsDisconnectedWith4008(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes = 64 << 10 }))
	check := bystander(t, e)
	tok := e.token([]string{"*"}, nil, time.Hour)
	slow := e.dialWS(bearer(tok))
	slow.expect("connected")
	slow.send(map[string]any{"type": "subscribe", "channel": "firehose"})
	slow.expect("subscribed")
	// The slow client stops reading; the socket buffers fill, then the queue, then 4008.
	big := `"` + strings.Repeat("x", 60000) + `"`
	waitFor(t, 20*time.Second, func() bool {
		for range 20 {
			e.publish("firehose", big)
		}
		return e.gw.Subscribers("firehose") == 0
	}, "slow consumer disconnected")
	ce := slow.expectCloseAfterData(4008)
	if !strings.Contains(ce.reason, "resume") {
		t.Fatalf("reason %q", ce.reason)
	}
	check()
}

// expectCloseAfterData skips message frames until the close.
func (c *wsClient) expectCloseAfterData(code int) *closeErr {
	c.t.Helper()
	for {
		_, err := c.read(10 * time.Second)
		if err == nil {
			continue
		}
		var pe *protocolErr
		if errors.As(err, &pe) {
			c.t.Fatalf("before the close: %v", err)
		}
		ce, ok := err.(*closeErr)
		if !ok {
			// The close frame could not be written (the socket buffer was full, or a frame was
			// half written): the client sees the connection end, and the metric tells why.
			return &closeErr{code: code, reason: "resume"}
		}
		if ce.code != code {
			c.t.Fatalf("close %d %q, want %d", ce.code, ce.reason, code)
		}
		return ce
	}
}

func TestShutdownSendsGoingAwayWithReconnectHint(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.ShutdownJitter = 3 * time.Second }))
	tok := e.token([]string{"*"}, nil, time.Hour)
	c := e.dialWS(bearer(tok))
	c.expect("connected")
	sse, _ := e.openSSE("channel=x&access_token="+tok, nil)
	waitFor(t, 2*time.Second, func() bool { return e.gw.Subscribers("x") == 1 }, "sse subscribed")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error)
	go func() { done <- e.gw.Shutdown(ctx) }()
	ce := c.expectClose(1001)
	var ms int
	if _, err := fmt.Sscanf(ce.reason, "reconnect_after_ms=%d", &ms); err != nil || ms < 0 || ms > 3000 {
		t.Fatalf("reason %q", ce.reason)
	}
	// The SSE stream gets a retry hint and ends.
	select {
	case <-sse.errs:
	case <-time.After(5 * time.Second):
		t.Fatal("SSE stream did not end")
	}
	if r := sse.retryMs(); r < 0 || r > 3000 {
		t.Fatalf("retry %d", r)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// New subscribers are refused while shutting down.
	resp, err := http.Get(e.sseURL("channel=x&access_token=" + tok))
	if err == nil {
		if resp.StatusCode != 503 {
			t.Fatalf("status %d after shutdown", resp.StatusCode)
		}
		resp.Body.Close()
	}
}

func TestDeadPeerIsDropped(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.Heartbeat = time.Second; c.Tick = 100 * time.Millisecond }))
	c := e.dialWS(bearer(e.token([]string{"*"}, nil, time.Hour)))
	c.expect("connected")
	c.autoPong = false
	alive := e.dialWS(bearer(e.token([]string{"*"}, nil, time.Hour)))
	alive.expect("connected")
	c.expectClose(1001)
	// The client that answers pings stays.
	alive.send(map[string]any{"type": "ping", "id": 1})
	alive.expect("pong")
}

func TestTokenRefreshThenExpiry(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) {
		c.Heartbeat = time.Second
		c.Tick = 100 * time.Millisecond
		c.RefreshBefore = 2 * time.Second
	}))
	c := e.dialWS(bearer(e.token([]string{"*"}, nil, 3*time.Second)))
	c.expect("connected")
	m := c.expect("refresh")
	if m["expires_in"].(float64) > 2 {
		t.Fatalf("refresh %v", m)
	}
	// A fresh token keeps the connection.
	c.send(map[string]any{"type": "auth", "token": e.token([]string{"*"}, nil, 3*time.Second)})
	c.expect("connected")
	c.expect("refresh")
	// Ignoring the second refresh: the connection ends with 4001 once the token expires.
	c.expectClose(4001)
}

func TestReplayCapSendsNewestAndReportsGap(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.ReplayCap = 5 }))
	start := e.publish("capped", `0`)
	var ids []string
	for i := range 12 {
		ids = append(ids, e.publish("capped", fmt.Sprint(i)).String())
	}
	c := e.dialWS(bearer(e.token([]string{"*"}, nil, time.Hour)))
	c.expect("connected")
	c.send(map[string]any{"type": "subscribe", "channel": "capped", "since": start.String()})
	if m := c.expect("subscribed"); m["recovered"] != false || m["reason"] != "replay_cap" {
		t.Fatalf("subscribed %v", m)
	}
	for _, want := range ids[7:] {
		if m := c.expect("message"); m["id"] != want {
			t.Fatalf("got %v want %s", m, want)
		}
	}
}

// TestLargeChannelFanOutInOrder: a channel big enough for the fan-out to be split across cores
// still gives every subscriber every message once, in order.
func TestLargeChannelFanOutInOrder(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	const subs, msgs = parallelFanOut + 100, 50
	clients := make([]*wsClient, subs)
	for i := range clients {
		c, err := dialWS(e.addr, bearer(tok))
		if err != nil {
			t.Fatal(err)
		}
		c.t = t
		defer c.conn.Close()
		c.expect("connected")
		c.send(map[string]any{"type": "subscribe", "channel": "big"})
		c.expect("subscribed")
		clients[i] = c
	}
	var want []string
	for i := range msgs {
		want = append(want, e.publish("big", fmt.Sprint(i)).String())
	}
	var wg sync.WaitGroup
	errs := make(chan error, subs)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range msgs {
				m, err := c.read(10 * time.Second)
				if err != nil || m["id"] != want[i] {
					errs <- fmt.Errorf("message %d: %v %v, want %s", i, m, err, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestSlowReaderSeesWholeFramesUntil4008: a subscriber that reads, but slower than messages
// come, is closed with 4008 once its queue passes the bound. Up to the close it must get whole,
// well-formed frames: a close written while a frame was half sent would land inside it.
func TestSlowReaderSeesWholeFramesUntil4008(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes = 256 << 10 }))
	tok := e.token([]string{"*"}, nil, time.Hour)
	for attempt := range 3 {
		slow := e.dialWS(bearer(tok))
		slow.expect("connected")
		channel := "trickle-" + itoa(attempt)
		slow.send(map[string]any{"type": "subscribe", "channel": channel})
		slow.expect("subscribed")
		// The reader below runs off the test goroutine: it must not answer pings, whose write
		// fails the test (t.Fatal) once the connection is gone.
		slow.autoPong = false
		read := make(chan error, 1)
		go func() {
			for {
				if _, err := slow.read(10 * time.Second); err != nil {
					read <- err
					return
				}
				time.Sleep(time.Millisecond) // slower than the publisher below
			}
		}()
		big := `"` + strings.Repeat("y", 30000) + `"`
		waitFor(t, 20*time.Second, func() bool {
			for range 10 {
				e.publish(channel, big)
			}
			return e.gw.Subscribers(channel) == 0
		}, "slow reader disconnected")
		var err error
		select {
		case err = <-read:
		case <-time.After(30 * time.Second):
			t.Fatalf("attempt %d: the slow reader never saw its connection end", attempt)
		}
		var pe *protocolErr
		if errors.As(err, &pe) {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		if ce, ok := err.(*closeErr); ok && ce.code != 4008 {
			t.Fatalf("attempt %d: close %d %q, want 4008", attempt, ce.code, ce.reason)
		}
	}
}
