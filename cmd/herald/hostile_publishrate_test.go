package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The attacker holds a credential that may publish and publishes as fast as it can, on every
// path (a plain publish, a batch, a keep-alive connection the epoll core serves, WebSocket
// publish frames), to drown the node's fan-out and the store for everyone. With --publish-rate
// each credential gets its own budget: past it a publish is refused with when to retry, and
// stores nothing, while other credentials publish on.

// pubrateArgs: one message a second after a burst of two, for each credential. The tests use
// the API keys as the credentials, a pair (attacker, bystander) per path, so that the paths do
// not share a budget unless a test means them to.
var pubrateArgs = []string{"--publish-rate", "1", "--publish-burst", "2",
	"--api-key", "pubrate-http-a", "--api-key", "pubrate-http-b",
	"--api-key", "pubrate-fast-a", "--api-key", "pubrate-fast-b",
	"--api-key", "pubrate-batch-a", "--api-key", "pubrate-batch-b",
	"--api-key", "pubrate-ws-a", "--api-key", "pubrate-ws-b",
	"--api-key", "pubrate-mixed"}

// pubrateRefusal is what a refused publish told the client.
type pubrateRefusal struct {
	status int
	retry  time.Duration // Retry-After, or a WebSocket error's retry_after_ms
}

// pubratePost publishes data to channel with key over a connection of its own (Connection:
// close, so net/http and Echo answer it).
func pubratePost(t *testing.T, s *server, key, path, body string) httpAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := httpAnswer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	var p struct{ Type, Detail string }
	if json.Unmarshal(b, &p) == nil {
		a.typ, a.detail = p.Type, p.Detail
	}
	return a
}

// pubrateRetryAfter reads a 429's Retry-After, which must be a whole number of seconds.
func pubrateRetryAfter(t *testing.T, h http.Header) time.Duration {
	t.Helper()
	secs, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After %q, want whole seconds", h.Get("Retry-After"))
	}
	return time.Duration(secs) * time.Second
}

// pubrateHistory is the data of channel's messages, in order.
func pubrateHistory(t *testing.T, s *server, key, channel string) []string {
	t.Helper()
	var h struct {
		Messages []struct{ Data json.RawMessage }
	}
	getJSON(t, s, "/v1/channels/"+channel+"/messages?limit=100", key, &h)
	var out []string
	for _, m := range h.Messages {
		out = append(out, string(m.Data))
	}
	return out
}

// pubrateScenario drives one path: the attacker publishes until refused (its burst is two),
// the bystander still publishes, and after the Retry-After the attacker publishes again; the
// channel holds exactly what was accepted. publish returns nil for an accepted publish.
func pubrateScenario(t *testing.T, s *server, channel, attacker, bystander string,
	publish func(key, data string) *pubrateRefusal) {
	t.Helper()
	var accepted []string
	var refused *pubrateRefusal
	for i := range 5 {
		data := strconv.Itoa(i)
		if refused = publish(attacker, data); refused != nil {
			break
		}
		accepted = append(accepted, data)
	}
	if refused == nil || len(accepted) != 2 {
		t.Fatalf("the attacker published %d messages at once, want the burst of 2 then a refusal", len(accepted))
	}
	if refused.status != http.StatusTooManyRequests || refused.retry <= 0 || refused.retry > 2*time.Second {
		t.Fatalf("refusal %+v, want 429 with a retry within the 1 s a token takes", refused)
	}
	if again := publish(attacker, `"refused again"`); again == nil {
		t.Fatal("the attacker published again before its Retry-After")
	}
	if r := publish(bystander, `"bystander"`); r != nil {
		t.Fatalf("another credential was refused with the attacker: %+v", r)
	}
	accepted = append(accepted, `"bystander"`)
	time.Sleep(refused.retry) // what a client told to retry later does
	if r := publish(attacker, `"after"`); r != nil {
		t.Fatalf("after the Retry-After the attacker is still refused: %+v", r)
	}
	accepted = append(accepted, `"after"`)
	if got := pubrateHistory(t, s, bystander, channel); !slices.Equal(got, accepted) {
		t.Fatalf("history of %s: %v, want only the accepted %v", channel, got, accepted)
	}
}

func TestHostilePublishRate(t *testing.T) {
	s := startServer(t, freePort(t), pubrateArgs...)
	var refusals atomic.Int64 // the refusals the clients saw
	// The paths use credentials of their own, so they run side by side.
	t.Run("paths", func(t *testing.T) { pubratePaths(t, s, &refusals) })
	// herald_publish_errors_total{reason="rate_limited"} counts every refusal, on every path.
	if got := mustMetric(t, s, `herald_publish_errors_total{reason="rate_limited"}`); got != int(refusals.Load()) {
		t.Errorf("herald_publish_errors_total{reason=\"rate_limited\"} = %d, want the %d refusals", got, refusals.Load())
	}
}

// pubratePaths runs the scenario on each publish path, in parallel, and adds the refusals its
// clients saw to refusals.
func pubratePaths(t *testing.T, s *server, refusals *atomic.Int64) {

	t.Run("HTTP", func(t *testing.T) {
		t.Parallel()
		pubrateScenario(t, s, "rate-http", "pubrate-http-a", "pubrate-http-b", func(key, data string) *pubrateRefusal {
			a := pubratePost(t, s, key, "/v1/channels/rate-http/messages", `{"data":`+data+`}`)
			switch {
			case a.status == 201:
				return nil
			case a.status != 429 || a.typ != "rate-limited" ||
				a.header.Get("Content-Type") != "application/problem+json":
				t.Fatalf("publish: %d %s, want 201 or a rate-limited problem", a.status, a.body)
			}
			refusals.Add(1)
			return &pubrateRefusal{status: a.status, retry: pubrateRetryAfter(t, a.header)}
		})
	})

	t.Run("KeepAlive", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, s)
		pubrateScenario(t, s, "rate-fast", "pubrate-fast-a", "pubrate-fast-b", func(key, data string) *pubrateRefusal {
			req := rawRequest("POST", "/v1/channels/rate-fast/messages", key, "application/json", `{"data":`+data+`}`)
			if key != "pubrate-fast-a" {
				req = strings.Replace(req, "Host: herald\r\n", "Host: herald\r\nConnection: close\r\n", 1)
				a := dialRaw(t, s).send(req)
				if a.status != 201 {
					return &pubrateRefusal{status: a.status}
				}
				return nil
			}
			a := c.send(req)
			if a.status == 201 {
				// The first publish hands the connection to the epoll core, which serves the rest.
				waitUntil(t, 5*time.Second, func() bool { return httpConnections(t, s) == "1" },
					"the keep-alive connection held by the epoll core (herald_connections{transport=\"http\"} is %s)",
					func() string { return httpConnections(t, s) })
				return nil
			}
			if a.status != 429 || a.closes || !strings.Contains(a.body, `"type":"rate-limited"`) {
				t.Fatalf("publish on the keep-alive connection: %+v, want a rate-limited 429 that keeps it", a)
			}
			// The epoll core answered it: the connection was not handed back to net/http.
			if n := httpConnections(t, s); n != "1" {
				t.Fatalf("herald_connections{transport=\"http\"} = %s after the 429, want 1: the fast path declined it", n)
			}
			// The same request on a connection of its own, which Echo answers, gets the same bytes.
			fresh := dialRaw(t, s).send(strings.Replace(req, "Host: herald\r\n", "Host: herald\r\nConnection: close\r\n", 1))
			fresh.closes = false
			if a != fresh {
				t.Fatalf("the 429 on the keep-alive connection:\n%+v\non a connection of its own:\n%+v", a, fresh)
			}
			refusals.Add(2)
			secs, _ := strconv.Atoi(strings.TrimPrefix(pubrateHeader(a.headers, "Retry-After"), " "))
			return &pubrateRefusal{status: a.status, retry: time.Duration(secs) * time.Second}
		})
	})

	t.Run("Batch", func(t *testing.T) {
		t.Parallel()
		batch := func(key string, data ...string) httpAnswer {
			var msgs []string
			for _, d := range data {
				msgs = append(msgs, `{"channel":"rate-batch","data":`+d+`}`)
			}
			return pubratePost(t, s, key, "/v1/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`)
		}
		pubrateScenario(t, s, "rate-batch", "pubrate-batch-a", "pubrate-batch-b", func(key, data string) *pubrateRefusal {
			a := batch(key, data)
			switch {
			case a.status == 201:
				return nil
			case a.status != 429 || a.typ != "rate-limited":
				t.Fatalf("batch: %d %s, want 201 or a rate-limited problem", a.status, a.body)
			}
			refusals.Add(1)
			return &pubrateRefusal{status: a.status, retry: pubrateRetryAfter(t, a.header)}
		})
		// A batch costs a token per message and passes whole or not at all: with less than a
		// token left, a batch of two is refused and nothing of it is stored.
		before := pubrateHistory(t, s, "pubrate-batch-b", "rate-batch")
		if a := batch("pubrate-batch-a", `"x"`, `"y"`); a.status != 429 || a.typ != "rate-limited" {
			t.Fatalf("a batch of 2 with no token left: %d %s, want 429 rate-limited", a.status, a.body)
		}
		refusals.Add(1)
		if got := pubrateHistory(t, s, "pubrate-batch-b", "rate-batch"); !slices.Equal(got, before) {
			t.Fatalf("a refused batch stored something: %v, was %v", got, before)
		}
	})

	t.Run("WebSocket", func(t *testing.T) {
		t.Parallel()
		conns := map[string]*wsClient{
			"pubrate-ws-a": openWS(t, s, wsOpts{query: "pubrate-ws-a"}),
			"pubrate-ws-b": openWS(t, s, wsOpts{query: "pubrate-ws-b"}),
		}
		id := 0
		pubrateScenario(t, s, "rate-ws", "pubrate-ws-a", "pubrate-ws-b", func(key, data string) *pubrateRefusal {
			c := conns[key]
			id++
			c.send([]byte(`{"type":"publish","id":` + strconv.Itoa(id) + `,"channel":"rate-ws","data":` + data + `}`))
			m := c.nextJSON()
			if m["type"] == "ack" && m["id"] == float64(id) {
				return nil
			}
			ms, _ := m["retry_after_ms"].(float64)
			if m["type"] != "error" || m["code"] != "rate-limited" || m["id"] != float64(id) || ms < 1 {
				t.Fatalf("publish frame %d: %v, want an ack or a rate-limited error with retry_after_ms", id, m)
			}
			refusals.Add(1)
			return &pubrateRefusal{status: 429, retry: time.Duration(ms) * time.Millisecond}
		})
	})
}

// TestHostilePublishRateSharedAcrossPaths: a credential's budget is one for every path, so
// moving to another transport gains the attacker nothing.
func TestHostilePublishRateSharedAcrossPaths(t *testing.T) {
	s := startServer(t, freePort(t), pubrateArgs...)
	for i := range 2 {
		if a := pubratePost(t, s, "pubrate-mixed", "/v1/channels/rate-mixed/messages", `{"data":1}`); a.status != 201 {
			t.Fatalf("publish %d: %d %s", i, a.status, a.body)
		}
	}
	w := openWS(t, s, wsOpts{query: "pubrate-mixed"})
	w.send([]byte(`{"type":"publish","id":1,"channel":"rate-mixed","data":2}`))
	if m := w.nextJSON(); m["type"] != "error" || m["code"] != "rate-limited" {
		t.Fatalf("a WebSocket publish after the HTTP burst: %v, want rate-limited", m)
	}
	if a := pubratePost(t, s, "pubrate-mixed", "/v1/messages", `{"channels":["rate-mixed"],"data":3}`); a.status != 429 {
		t.Fatalf("a batch after the burst: %d %s, want 429", a.status, a.body)
	}
	if got := pubrateHistory(t, s, "pubrate-mixed", "rate-mixed"); !slices.Equal(got, []string{"1", "1"}) {
		t.Fatalf("history %v, want the two accepted", got)
	}
}

// pubrateHeader is the value of header name in an answer's sorted "Name: value" lines.
func pubrateHeader(headers, name string) string {
	for _, line := range strings.Split(headers, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}
