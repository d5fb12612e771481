package main

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws/wsutil"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// What a hostile publisher or subscriber sends as data and ids: bytes that are not UTF-8 inside
// a JSON string, the largest id, another credential's idempotency key. None of it may break the
// channel for anyone else.

// inputBadData is a JSON string holding the raw bytes 0xff 0xfe: valid JSON to encoding/json,
// not UTF-8, so a WebSocket client must fail any text frame that carries it.
const inputBadData = "\"\xff\xfe\""

// inputMaxID is the largest id herald parses.
const inputMaxID = "18446744073709551615-18446744073709551615"

// inputKeepAlive is a keep-alive connection whose first publish handed it to the epoll core,
// so the publishes sent on it next reach the fast path (api/fastpublish.go).
func inputKeepAlive(t *testing.T, s *server, token, channel string) *rawClient {
	t.Helper()
	c := dialRaw(t, s)
	if a := c.send(rawRequest("POST", "/v1/channels/"+channel+"/messages", token, "application/json", `{"data":"first"}`)); a.status != 201 {
		t.Fatalf("the keep-alive connection's first publish: %+v", a)
	}
	return c
}

// inputProblemType is the "type" of a problem document.
func inputProblemType(body string) string {
	var p struct{ Type string }
	json.Unmarshal([]byte(body), &p)
	return p.Type
}

// inputHistory reads a channel's whole history as the raw data of each message.
func inputHistory(t *testing.T, s *server, token, channel, since string) (data []string, complete bool) {
	t.Helper()
	q := "?limit=1000"
	if since != "" {
		q += "&since=" + since
	}
	a := httpDo(t, "GET", s.base+"/v1/channels/"+url.PathEscape(channel)+"/messages"+q, bearer(token))
	if a.status != 200 {
		t.Fatalf("history of %s: %d %s", channel, a.status, a.body)
	}
	if !utf8.ValidString(a.body) {
		t.Fatalf("history of %s is not UTF-8: %q", channel, a.body)
	}
	var page struct {
		Messages []struct{ Data json.RawMessage }
		Complete bool
	}
	if err := json.Unmarshal([]byte(a.body), &page); err != nil {
		t.Fatalf("history of %s: %v: %s", channel, err, a.body)
	}
	for _, m := range page.Messages {
		data = append(data, string(m.Data))
	}
	return data, page.Complete
}

// TestHostileInvalidUTF8Publish sends data that is not UTF-8 on every publish path. Each is
// refused, nothing is stored, and WebSocket subscribers of the channel, live and resuming, keep
// working.
func TestHostileInvalidUTF8Publish(t *testing.T) {
	s := startServer(t, freePort(t))
	const ch = "utf8"
	path := "/v1/channels/" + ch + "/messages"
	live := openWS(t, s, wsOpts{bearer: s.sub})
	live.subscribe(ch, "")
	s.publish(ch, `"before"`)
	if m := live.await("message"); m["data"] != "before" {
		t.Fatalf("live subscriber got %v", m)
	}

	bad := `{"data":` + inputBadData + `}`
	t.Run("Echo", func(t *testing.T) {
		// A request on a new connection is net/http's and Echo's (the epoll fast path only
		// ever serves a connection's later requests).
		if a := dialRaw(t, s).send(rawRequest("POST", path, s.pub, "application/json", bad)); a.status != 400 || inputProblemType(a.body) != "invalid-data" {
			t.Fatalf("publish: %+v; want 400 invalid-data", a)
		}
	})
	t.Run("keep-alive fast path", func(t *testing.T) {
		c := inputKeepAlive(t, s, s.pub, "utf8-other")
		a := c.send(rawRequest("POST", path, s.pub, "application/json", bad))
		if a.status != 400 || inputProblemType(a.body) != "invalid-data" {
			t.Fatalf("publish: %+v; want 400 invalid-data", a)
		}
		// The connection still serves publishes.
		if a := c.send(rawRequest("POST", "/v1/channels/utf8-other/messages", s.pub, "application/json", `{"data":1}`)); a.status != 201 {
			t.Fatalf("the next publish on the connection: %+v", a)
		}
	})
	t.Run("batch", func(t *testing.T) {
		a := dialRaw(t, s).send(rawRequest("POST", "/v1/messages", s.pub, "application/json", `{"messages":[{"channel":"`+ch+`","data":`+inputBadData+`}]}`))
		var res struct {
			Results []struct{ Error *struct{ Type string } }
		}
		json.Unmarshal([]byte(a.body), &res)
		if a.status != 207 || len(res.Results) != 1 || res.Results[0].Error == nil || res.Results[0].Error.Type != "invalid-data" {
			t.Fatalf("batch of messages: %+v; want 207 with invalid-data", a)
		}
		a = dialRaw(t, s).send(rawRequest("POST", "/v1/messages", s.pub, "application/json", `{"channels":["`+ch+`"],"data":`+inputBadData+`}`))
		if a.status != 400 || inputProblemType(a.body) != "invalid-data" {
			t.Fatalf("batch to channels: %+v; want 400 invalid-data", a)
		}
	})
	t.Run("WebSocket", func(t *testing.T) {
		w := openWS(t, s, wsOpts{bearer: s.pub})
		w.send([]byte(`{"type":"publish","id":1,"channel":"` + ch + `","data":` + inputBadData + `}`))
		// A text frame that is not UTF-8 fails the connection (RFC 6455, section 8.1).
		_, err := w.readJSON()
		var closed wsutil.ClosedError
		if !errors.As(err, &closed) || closed.Code != 1007 {
			t.Fatalf("publish frame: %v; want close 1007", err)
		}
	})

	if data, _ := inputHistory(t, s, s.sub, ch, "0"); len(data) != 1 || data[0] != `"before"` {
		t.Fatalf("history after the bad publishes: %q; want only \"before\"", data)
	}
	s.publish(ch, `"after"`)
	if m := live.await("message"); m["data"] != "after" {
		t.Fatalf("live subscriber got %v", m)
	}
	resumed := openWS(t, s, wsOpts{bearer: s.sub})
	if m := resumed.subscribe(ch, "0"); m["recovered"] != true {
		t.Fatalf("resume: %v", m)
	}
	for _, want := range []string{"before", "after"} {
		if m := resumed.await("message"); m["data"] != want {
			t.Fatalf("resumed subscriber got %v, want %s", m, want)
		}
	}
}

// TestHostileInvalidUTF8StoredBefore: a Valkey stream written before publishes were checked may
// hold data that is not UTF-8. It is delivered with U+FFFD in place of the bad bytes, so WebSocket
// clients that resume over it are not disconnected, and history stays UTF-8.
func TestHostileInvalidUTF8StoredBefore(t *testing.T) {
	v := valkeytest.StartServer(t)
	s := startNode(t, v.URL())
	const ch = "legacy"
	// What an older herald's publish script wrote: the previous id, the event, the data.
	v.MustDo("XADD", "herald:{"+ch+"}:log", "*", "p", "0-0", "e", "", "d", `{"text":`+inputBadData+`}`)
	w := openWS(t, s, wsOpts{bearer: s.sub})
	if m := w.subscribe(ch, "0"); m["recovered"] != true {
		t.Fatalf("resume: %v", m)
	}
	if m := w.await("message"); m["data"].(map[string]any)["text"] != "\uFFFD" {
		t.Fatalf("the stored message arrived as %v", m)
	}
	s.publish(ch, `"next"`)
	if m := w.await("message"); m["data"] != "next" {
		t.Fatalf("the next message arrived as %v", m)
	}
	if data, _ := inputHistory(t, s, s.sub, ch, "0"); len(data) != 2 || data[0] != `{"text":"`+"\uFFFD"+`"}` {
		t.Fatalf("history: %q", data)
	}
}

// TestHostileLargestID resumes from the largest id (and from ids next to it) on every
// transport and both brokers. Such a position lies past the end of the log, like any id newer
// than the newest: an empty, incomplete page (a gap), and then live messages as usual. It must
// never be a server error, nor a 503 that clients retry forever.
func TestHostileLargestID(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		inputLargestID(t, startServer(t, freePort(t)))
	})
	t.Run("valkey", func(t *testing.T) {
		inputLargestID(t, startNode(t, valkeytest.StartServer(t).URL()))
	})
}

func inputLargestID(t *testing.T, s *server) {
	const ch = "maxid"
	first := s.publish(ch, `"first"`)
	for _, since := range []string{inputMaxID, "18446744073709551615-0", "18446744073709551615", "1-18446744073709551615"} {
		a := httpDo(t, "GET", s.base+"/v1/channels/"+ch+"/messages?since="+since, bearer(s.sub))
		if since == "1-18446744073709551615" {
			// Below the log: everything retained.
			if a.status != 200 || !strings.Contains(a.body, first) {
				t.Fatalf("history since %s: %d %s", since, a.status, a.body)
			}
			continue
		}
		// No messages; next is the channel's position (first's id), from which to go on.
		if a.status != 200 || !strings.Contains(a.body, `"messages":[]`) || !strings.Contains(a.body, `"complete":false`) ||
			!strings.Contains(a.body, `"next":"`+first+`"`) {
			t.Errorf("history since %s: %d %s; want 200, no messages, complete false", since, a.status, a.body)
		}
	}

	// WebSocket: a gap, then live messages.
	w := openWS(t, s, wsOpts{bearer: s.sub})
	if m := w.subscribe(ch, inputMaxID); m["recovered"] != false {
		t.Fatalf("WebSocket subscribe since the largest id: %v", m)
	}
	// SSE: a gap, then live messages.
	sse := s.openSSE("channel="+ch, inputMaxID)
	if ev := sse.next(t); ev.name != "herald.gap" {
		t.Fatalf("SSE since the largest id: first event %+v; want herald.gap", ev)
	}
	// Long-poll: the gap is reported and the cursor moves back onto the log.
	a := httpDo(t, "GET", s.base+"/v1/poll?timeout=0&channel="+ch+"&since="+inputMaxID, bearer(s.sub))
	var poll struct {
		Cursor string
		Gaps   []string
	}
	json.Unmarshal([]byte(a.body), &poll)
	if a.status != 200 || len(poll.Gaps) != 1 || poll.Cursor != first {
		t.Fatalf("poll since the largest id: %d %s; want 200, a gap, cursor %s", a.status, a.body, first)
	}

	next := s.publish(ch, `"next"`)
	if m := w.await("message"); m["id"] != next {
		t.Fatalf("WebSocket after the gap got %v, want %s", m, next)
	}
	if got := messageID(t, sse.next(t).data); got != next {
		t.Fatalf("SSE after the gap got %s, want %s", got, next)
	}
	a = httpDo(t, "GET", s.base+"/v1/poll?timeout=0&channel="+ch+"&since="+poll.Cursor, bearer(s.sub))
	if a.status != 200 || !strings.Contains(a.body, next) {
		t.Fatalf("poll from the cursor it was given: %d %s", a.status, a.body)
	}
}

// TestHostileIdempotencyKeyOfAnotherCredential: a low-privilege publisher that uses a key first
// cannot turn a backend's later publish with the same key into a silent replay, on any publish
// path and either broker. The same credential retrying still stores one message.
func TestHostileIdempotencyKeyOfAnotherCredential(t *testing.T) {
	const apiKey = "input-backend-api-key-0123456789"
	t.Run("memory", func(t *testing.T) {
		s := startServer(t, freePort(t), "--jwt-secret", nodeSecret, "--api-key", apiKey)
		inputIdempotencyPaths(t, s, apiKey)
	})
	t.Run("valkey", func(t *testing.T) {
		s := startNode(t, valkeytest.StartServer(t).URL(), "--api-key", apiKey)
		inputIdempotencyPaths(t, s, apiKey)
	})
}

func inputIdempotencyPaths(t *testing.T, s *server, backend string) {
	user, err := auth.MintHMAC([]byte(nodeSecret), auth.MintClaims{Subject: "u42",
		Publish: []string{"orders:*"}, Subscribe: []string{"orders:*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const key = "order-42-paid"
	// Each path publishes as a credential with the key and returns the id and whether the
	// answer was a replay.
	paths := map[string]func(t *testing.T, token, channel string) (string, bool){
		"Echo": func(t *testing.T, token, channel string) (string, bool) {
			return inputCreated(t, dialRaw(t, s).send(rawRequest("POST", "/v1/channels/"+channel+"/messages", token, "application/json", `{"data":1}`, "Idempotency-Key: "+key)))
		},
		"keep-alive fast path": func(t *testing.T, token, channel string) (string, bool) {
			return inputCreated(t, inputKeepAlive(t, s, token, "orders:warmup").
				send(rawRequest("POST", "/v1/channels/"+channel+"/messages", token, "application/json", `{"data":1}`, "Idempotency-Key: "+key)))
		},
		"batch": func(t *testing.T, token, channel string) (string, bool) {
			a := dialRaw(t, s).send(rawRequest("POST", "/v1/messages", token, "application/json", `{"messages":[{"channel":"`+channel+`","data":1}]}`, "Idempotency-Key: "+key))
			var res struct {
				Results []struct {
					ID       string
					Replayed bool
				}
			}
			if a.status != 201 || json.Unmarshal([]byte(a.body), &res) != nil || len(res.Results) != 1 {
				t.Fatalf("batch: %+v", a)
			}
			return res.Results[0].ID, res.Results[0].Replayed
		},
		"WebSocket": func(t *testing.T, token, channel string) (string, bool) {
			w := openWS(t, s, wsOpts{bearer: token})
			w.send(map[string]any{"type": "publish", "id": 1, "channel": channel, "data": 1, "idempotency_key": key})
			id, _ := w.await("ack")["message_id"].(string)
			// The ack does not say whether it was a replay: history does.
			return id, false
		},
	}
	for name, publish := range paths {
		t.Run(name, func(t *testing.T) {
			ch := "orders:" + strings.ReplaceAll(name, " ", "-")
			squatted, _ := publish(t, user, ch)
			id, replayed := publish(t, backend, ch)
			if id == squatted || replayed {
				t.Fatalf("the backend's publish with the user's key answered %s (replayed %v), the user's id %s", id, replayed, squatted)
			}
			again, replayed := publish(t, backend, ch)
			if again != id || (name != "WebSocket" && !replayed) {
				t.Fatalf("the backend's retry answered %s (replayed %v); want a replay of %s", again, replayed, id)
			}
			if data, _ := inputHistory(t, s, backend, ch, "0"); len(data) != 2 {
				t.Fatalf("%s holds %d messages; want 2 (the user's and the backend's)", ch, len(data))
			}
		})
	}
}

// inputCreated reads a 201 publish answer: the id, and whether it was a replay.
func inputCreated(t *testing.T, a answer) (string, bool) {
	t.Helper()
	var out struct{ ID string }
	if a.status != 201 || json.Unmarshal([]byte(a.body), &out) != nil || out.ID == "" {
		t.Fatalf("publish: %+v", a)
	}
	return out.ID, strings.Contains(a.headers, "Idempotent-Replayed: true")
}
