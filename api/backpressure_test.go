package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/herald-gateway/herald/api"
)

// TestPublishWaitsForFanOutRoom: while the node's fan-out is saturated a publish waits; if it
// stays saturated the publisher is told to retry (429, Retry-After) and nothing is stored, for a
// single publish and for every message of a batch alike; once there is room the waiting publish
// goes through.
func TestPublishWaitsForFanOutRoom(t *testing.T) {
	e := newEnv(t, withOptions(func(o *api.Options) { o.FanOutWait = 300 * time.Millisecond }))
	saturated := make(chan struct{})
	e.gw.mu.Lock()
	e.gw.saturated = saturated
	e.gw.mu.Unlock()

	r := e.do(request{method: http.MethodPost, path: "/v1/channels/busy/messages", body: `{"data":1}`, token: testAPIKey})
	r.wantProblem(t, http.StatusTooManyRequests, "backlogged")
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q, want 1", got)
	}
	rb, out := e.batch(testAPIKey, `{"messages":[{"channel":"busy","data":1},{"channel":"busy:2","data":2}]}`, nil)
	if rb.status != http.StatusMultiStatus || len(out.Results) != 2 {
		t.Fatalf("batch: status %d: %s", rb.status, rb.body)
	}
	for i, res := range out.Results {
		if res.Error == nil || res.Error.Status != http.StatusTooManyRequests || res.Error.Type != "backlogged" || res.ID != "" {
			t.Fatalf("batch result %d: %+v, want 429 backlogged", i, res)
		}
	}
	for _, ch := range []string{"busy", "busy:2"} {
		if n := len(e.history(ch)); n != 0 {
			t.Fatalf("%s holds %d messages while saturated, want 0", ch, n)
		}
	}
	// Counted per message: the single publish and the batch's two.
	if got := e.metric(`herald_publish_errors_total{reason="backlogged"}`); got != "3" {
		t.Fatalf(`herald_publish_errors_total{reason="backlogged"} = %s, want 3`, got)
	}

	// A publish that finds the fan-out saturated waits, and is stored once there is room.
	e.gw.mu.Lock()
	e.gw.saturated = make(chan struct{})
	room := e.gw.saturated
	e.gw.mu.Unlock()
	done := make(chan response, 1)
	go func() {
		done <- e.send(e.newRequest(request{method: http.MethodPost, path: "/v1/channels/busy/messages", body: `{"data":2}`, token: testAPIKey}))
	}()
	select {
	case r := <-done:
		t.Fatalf("publish answered %d while the fan-out was saturated", r.status)
	case <-time.After(100 * time.Millisecond):
	}
	close(room)
	if r := <-done; r.status != http.StatusCreated {
		t.Fatalf("after room: status %d: %s", r.status, r.body)
	}
	if n := len(e.history("busy")); n != 1 {
		t.Fatalf("busy holds %d messages, want 1", n)
	}
}
