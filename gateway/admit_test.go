package gateway

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/admission"
)

// TestAdmissionSlotReleasedOnEveryPath: whatever becomes of an admitted request (refused for a
// bad token or channel, not a WebSocket handshake, a stream the client ends, a poll that
// answers or whose client leaves), its slot comes back exactly once, so the count returns to
// zero and never goes below it.
func TestAdmissionSlotReleasedOnEveryPath(t *testing.T) {
	t.Run("node", func(t *testing.T) { testSlotReleased(t, admission.Config{MaxConnections: 1}) })
	t.Run("address", func(t *testing.T) { testSlotReleased(t, admission.Config{MaxConnections: 1, MaxPerAddr: 1}) })
}

func testSlotReleased(t *testing.T, cfg admission.Config) {
	ctl := admission.New(cfg)
	e := newEnv(t, withConfig(func(c *Config) { c.Admission = ctl }))
	sub := e.token([]string{"a"}, nil, time.Hour)
	settled := func(what string) {
		t.Helper()
		waitFor(t, 5*time.Second, func() bool { return ctl.Connections() == 0 }, "slot released after %s", what)
	}
	request := func(path string, header http.Header, want int) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+e.addr+path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	get := func(path string, header http.Header, want int) {
		t.Helper()
		request(path, header, want)
		settled("GET " + path)
	}
	get("/v1/ws", bearer("not-a-token"), http.StatusUnauthorized)
	get("/v1/ws", bearer(sub), http.StatusBadRequest) // not an upgrade
	get("/v1/sse?channel=a", bearer("not-a-token"), http.StatusUnauthorized)
	get("/v1/sse?channel=b", bearer(sub), http.StatusForbidden)
	get("/v1/sse?channel=", bearer(sub), http.StatusBadRequest)
	get("/v1/poll?channel=a&timeout=x", bearer(sub), http.StatusBadRequest)
	get("/v1/poll?channel=a&timeout=0", bearer(sub), http.StatusOK)

	ws := e.dialWS(bearer(sub))
	ws.expect("connected")
	// The node is full: the next one is refused, and that refusal holds nothing.
	full := http.StatusServiceUnavailable
	if cfg.MaxPerAddr > 0 {
		full = http.StatusTooManyRequests // all from 127.0.0.1: its share is spent first
	}
	request("/v1/sse?channel=a", bearer(sub), full)
	if ctl.Connections() != 1 {
		t.Fatalf("%d slots held with one WebSocket open", ctl.Connections())
	}
	ws.conn.Close()
	settled("the WebSocket's close")

	sse, resp := e.openSSE("channel=a", bearer(sub))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sse: %d", resp.StatusCode)
	}
	sse.close()
	settled("the SSE stream's close")

	// A poll whose client goes away before it answers.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.addr+"/v1/poll?channel=a&timeout=30", nil)
	req.Header.Set("Authorization", "Bearer "+sub)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 5*time.Second, func() bool { return ctl.Connections() == 1 }, "the poll admitted")
	cancel() // the client closes the connection
	<-done
	settled("the poll's client leaving")
	e.gw.admitted.mu.Lock()
	defer e.gw.admitted.mu.Unlock()
	if n := len(e.gw.admitted.slots); n != 0 {
		t.Fatalf("%d connections still recorded as holding a slot", n)
	}
}
