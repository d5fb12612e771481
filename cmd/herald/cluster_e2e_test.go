package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// Several herald processes sharing one Valkey: what a user gets behind a load balancer.

const nodeSecret = "e2e-shared-secret-0123456789abcdefghijkl"

// startNode runs herald against Valkey and mints its tokens.
func startNode(t *testing.T, valkeyURL string, args ...string) *server {
	t.Helper()
	// A generous Valkey timeout: a loaded CI machine can stall a healthy operation past the
	// default. The chaos test asks for the default back to see 503s quickly.
	base := []string{"--jwt-secret", nodeSecret, "--valkey-url", valkeyURL, "--valkey-timeout", "5s"}
	s := startServer(t, freePort(t), append(base, args...)...)
	var err error
	if s.sub, err = auth.MintHMAC([]byte(nodeSecret), auth.MintClaims{Subscribe: []string{"*"}, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if s.pub, err = auth.MintHMAC([]byte(nodeSecret), auth.MintClaims{Publish: []string{"*"}, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	return s
}

// wsSub is a WebSocket subscriber that records every message it receives.
type wsSub struct {
	c    *wsClient
	mu   sync.Mutex
	ids  []string
	data []string
	gaps int
	done chan struct{}
}

// subscribeWS subscribes a client of s to channel (since "" for live only; otherwise the
// subscription must be recovered) and records what it receives until the test ends.
func (s *server) subscribeWS(t *testing.T, channel, since string) *wsSub {
	t.Helper()
	w := &wsSub{c: dialWS(t, s, wsOpts{query: s.sub}), done: make(chan struct{})}
	w.c.readTimeout = 0 // the reader waits as long as the test runs
	w.c.send(subscribeFrame(channel, since))
	subscribed := make(chan map[string]any, 1)
	go func() {
		defer close(w.done)
		for {
			m, err := w.c.readJSON()
			if err != nil {
				return
			}
			switch m["type"] {
			case "subscribed":
				subscribed <- m
			case "message":
				raw, _ := json.Marshal(m["data"])
				w.mu.Lock()
				w.ids = append(w.ids, m["id"].(string))
				w.data = append(w.data, string(raw))
				w.mu.Unlock()
			case "gap":
				w.mu.Lock()
				w.gaps++
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { w.c.conn.Close(); <-w.done })
	select {
	case m := <-subscribed:
		if since != "" && m["recovered"] != true {
			t.Fatalf("subscribed %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no subscribed frame")
	}
	return w
}

func (w *wsSub) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ids)
}

func (w *wsSub) snapshot() ([]string, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.ids...), append([]string(nil), w.data...)
}

func TestTwoNodesShareValkey(t *testing.T) {
	v := valkeytest.StartServer(t)
	a, b := startNode(t, v.URL()), startNode(t, v.URL())

	// Publish through A; subscribers on B (WebSocket and SSE) receive it.
	onB := b.subscribeWS(t, "orders:7", "")
	sseB := b.openSSE("channel=orders:7", "")
	time.Sleep(200 * time.Millisecond) // the SSE stream is live once its headers arrived; give B's interest a moment
	id := a.publish("orders:7", `{"status":"paid"}`)
	if got := messageID(t, sseB.next(t).data); got != id {
		t.Fatalf("SSE on B got %s, want %s", got, id)
	}
	waitUntil(t, 5*time.Second, func() bool { return onB.count() == 1 }, "WebSocket on B receives A's message")

	// A client of A that reconnects to B with its last id resumes without loss.
	sseA := a.openSSE("channel=orders:7", "")
	first := a.publish("orders:7", `1`)
	if got := messageID(t, sseA.next(t).data); got != first {
		t.Fatalf("SSE on A got %s", got)
	}
	sseA.resp.Body.Close()
	var missed []string
	for i := range 5 {
		missed = append(missed, a.publish("orders:7", fmt.Sprint(i)))
	}
	resumed := b.openSSE("channel=orders:7", sseA.last)
	for _, want := range missed {
		if got := messageID(t, resumed.next(t).data); got != want {
			t.Fatalf("resumed on B: %s, want %s", got, want)
		}
	}
	// WebSocket too: since on B.
	wsResumed := b.subscribeWS(t, "orders:7", first)
	waitUntil(t, 5*time.Second, func() bool { return wsResumed.count() == len(missed) }, "WebSocket resume on B")
	ids, _ := wsResumed.snapshot()
	for i := range missed {
		if ids[i] != missed[i] {
			t.Fatalf("ws resume %v, want %v", ids, missed)
		}
	}
}

func TestIdempotentRetryAddsNothing(t *testing.T) {
	v := valkeytest.StartServer(t)
	a := startNode(t, v.URL())
	post := func() (int, string) {
		req, _ := http.NewRequest("POST", a.base+"/v1/channels/once/messages", strings.NewReader(`{"data":1}`))
		req.Header.Set("Authorization", "Bearer "+a.pub)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "order-7-paid")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.ID
	}
	_, first := post()
	_, again := post()
	if first == "" || first != again {
		t.Fatalf("retry answered %q, first %q", again, first)
	}
	if n := v.MustDo("XLEN", "herald:{once}:log"); strings.TrimSpace(n) != "1" {
		t.Fatalf("stream holds %s entries", n)
	}
}

// TestChaosValkeyOutage publishes 5,000 messages with idempotency keys, retrying on error, while
// Valkey is frozen and then restarted. Every subscriber must end with exactly the 5,000, in
// order, and the stream must hold exactly 5,000 entries.
func TestChaosValkeyOutage(t *testing.T) {
	v := valkeytest.StartServer(t, valkeytest.AppendOnly())
	a, b := startNode(t, v.URL(), "--history-size", "10000", "--valkey-timeout", "1s"), startNode(t, v.URL(), "--history-size", "10000", "--valkey-timeout", "1s")
	subs := []*wsSub{a.subscribeWS(t, "chaos", ""), b.subscribeWS(t, "chaos", "")}
	sse := b.openSSE("channel=chaos", "")
	time.Sleep(200 * time.Millisecond)

	const total = 5000
	var unavailable, retryAfter int
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range total {
		if i == 1500 {
			v.Pause()
			time.AfterFunc(3*time.Second, v.Resume)
		}
		if i == 3500 {
			go func() { v.Stop(); time.Sleep(500 * time.Millisecond); v.Start() }()
		}
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequest("POST", a.base+"/v1/channels/chaos/messages", strings.NewReader(fmt.Sprintf(`{"data":%d}`, i)))
			req.Header.Set("Authorization", "Bearer "+a.pub)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("chaos-%d", i))
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 201 || resp.StatusCode == 200 {
					break
				}
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("publish %d: status %d", i, resp.StatusCode)
				}
				unavailable++
				if resp.Header.Get("Retry-After") != "" {
					retryAfter++
				}
			}
			if attempt > 200 {
				t.Fatalf("publish %d never succeeded: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if unavailable == 0 || retryAfter != unavailable {
		t.Fatalf("%d publishes answered 503, %d with Retry-After: the outage was not seen", unavailable, retryAfter)
	}
	for k, s := range subs {
		waitUntil(t, 30*time.Second, func() bool { return s.count() >= total }, "subscriber %d gets all %d (has %d)", k, total, s.count)
		time.Sleep(200 * time.Millisecond) // room for duplicates to show up
		ids, data := s.snapshot()
		if len(ids) != total {
			t.Fatalf("subscriber %d got %d messages, want %d", k, len(ids), total)
		}
		for i := range data {
			if data[i] != fmt.Sprint(i) {
				t.Fatalf("subscriber %d: message %d carries %s", k, i, data[i])
			}
		}
	}
	for i := range total {
		ev := sse.next(t)
		var m struct{ Data json.RawMessage }
		json.Unmarshal([]byte(ev.data), &m)
		if string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("SSE message %d carries %s (event %+v)", i, m.Data, ev)
		}
	}
	if n := strings.TrimSpace(v.MustDo("XLEN", "herald:{chaos}:log")); n != fmt.Sprint(total) {
		t.Fatalf("the stream holds %s entries, want %d", n, total)
	}
	t.Logf("%d publishes answered 503 during the outage", unavailable)
}

// TestTrimmedHistoryIsAGapOnEveryTransport: history size 10, 50 missed.
func TestTrimmedHistoryIsAGapOnEveryTransport(t *testing.T) {
	v := valkeytest.StartServer(t)
	a := startNode(t, v.URL(), "--history-size", "10")
	old := a.publish("trim", `0`)
	for i := range 50 {
		a.publish("trim", fmt.Sprint(i))
	}
	// SSE
	if ev := a.openSSE("channel=trim", old).next(t); ev.name != "herald.gap" || ev.data != `{"channel":"trim","reason":"trimmed"}` {
		t.Fatalf("SSE first event %+v", ev)
	}
	// WebSocket
	c := dialWS(t, a, wsOpts{query: a.sub})
	c.send([]byte(`{"type":"subscribe","id":1,"channel":"trim","since":"` + old + `"}`))
	for {
		m, err := c.readJSON()
		if err != nil {
			t.Fatal(err)
		}
		if m["type"] == "subscribed" {
			if m["recovered"] != false || m["reason"] != "trimmed" {
				t.Fatalf("subscribed %v", m)
			}
			break
		}
	}
	// Long-poll
	resp, err := http.Get(a.base + "/v1/poll?channel=trim&since=" + old + "&access_token=" + a.sub)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var poll struct {
		Messages  []json.RawMessage
		Recovered bool
		Gaps      []struct{ Channel, Reason string }
	}
	if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&poll); err != nil {
		t.Fatal(err)
	}
	if poll.Recovered || len(poll.Gaps) != 1 || poll.Gaps[0].Reason != "trimmed" || len(poll.Messages) != 10 {
		t.Fatalf("poll %+v", poll)
	}
}

// TestValkeyCluster: channels on different shards all work through herald, and subscriptions
// survive a shard's restart.
func TestValkeyCluster(t *testing.T) {
	c := valkeytest.StartCluster(t, 3, valkeytest.AppendOnly())
	a, b := startNode(t, c.URL()), startNode(t, c.URL())
	channels := []string{"shard:a", "shard:b", "shard:c", "shard:d", "shard:e", "shard:f"}
	subs := map[string]*wsSub{}
	for _, ch := range channels {
		subs[ch] = b.subscribeWS(t, ch, "")
	}
	for _, ch := range channels {
		a.publish(ch, `"before"`)
	}
	for _, ch := range channels {
		waitUntil(t, 10*time.Second, func() bool { return subs[ch].count() == 1 }, "%s before restart", ch)
	}
	c.RestartNode(0)
	c.WaitOK()
	for _, ch := range channels {
		publishRetrying(t, a, ch, `"after"`)
	}
	for _, ch := range channels {
		waitUntil(t, 20*time.Second, func() bool { return subs[ch].count() == 2 }, "%s after the shard restart", ch)
	}
}

func publishRetrying(t *testing.T, s *server, channel, data string) {
	t.Helper()
	for attempt := 0; attempt < 100; attempt++ {
		req, _ := http.NewRequest("POST", s.base+"/v1/channels/"+channel+"/messages", strings.NewReader(`{"data":`+data+`}`))
		req.Header.Set("Authorization", "Bearer "+s.pub)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", channel+data)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 201 || resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("publish to %s never succeeded", channel)
}

// TestFrozenValkeyDoesNotStallOtherConnections: while Valkey is frozen, WebSocket subscribes
// wait for it (up to --valkey-timeout), more of them at once than the node has epoll workers.
// Connections that do not need Valkey must still be answered at once: a ping on an open
// connection, and a new connection's handshake.
func TestFrozenValkeyDoesNotStallOtherConnections(t *testing.T) {
	v := valkeytest.StartServer(t)
	s := startNode(t, v.URL(), "--valkey-timeout", "4s")
	dial := func() *wsClient { t.Helper(); return dialWS(t, s, wsOpts{query: s.sub}) }
	// awaitFrame reads server frames until one of type typ, within 10 s.
	awaitFrame := func(c *wsClient, typ string) map[string]any {
		t.Helper()
		c.within(10 * time.Second)
		return c.await(typ)
	}
	bystander := dial()
	awaitFrame(bystander, "connected")

	v.Pause()
	defer v.Resume()
	const waiting = 100 // the default pool is 32 workers on this machine
	stuck := make([]*wsClient, waiting)
	for i := range stuck {
		stuck[i] = dial()
		awaitFrame(stuck[i], "connected")
		stuck[i].send(fmt.Appendf(nil, `{"type":"subscribe","id":1,"channel":"frozen-%d"}`, i))
	}
	time.Sleep(300 * time.Millisecond) // let the subscribes reach the frozen store

	for i := range 3 {
		start := time.Now()
		bystander.send(fmt.Appendf(nil, `{"type":"ping","id":%d}`, i+1))
		awaitFrame(bystander, "pong")
		if took := time.Since(start); took > time.Second {
			t.Fatalf("ping %d answered after %v while subscribes wait on a frozen Valkey", i, took)
		}
	}
	start := time.Now()
	awaitFrame(dial(), "connected")
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a new connection was greeted after %v while subscribes wait on a frozen Valkey", took)
	}

	// The waiting subscribes end with an answer each: unavailable after the timeout, or
	// subscribed if Valkey came back first.
	v.Resume()
	for i, c := range stuck {
		c.within(15 * time.Second)
		for {
			m, err := c.readJSON()
			if err != nil {
				t.Fatalf("subscribe %d got no answer: %v", i, err)
			}
			if m["type"] == "subscribed" || (m["type"] == "error" && m["code"] == "unavailable") {
				break
			}
			if m["type"] == "error" {
				t.Fatalf("subscribe %d: %v", i, m)
			}
		}
	}
	// And the node serves subscribes again.
	s.subscribeWS(t, "after-the-freeze", "")
}
