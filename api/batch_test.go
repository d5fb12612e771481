package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/gateway/broker"
)

// batchAnswer is the body of a POST /v1/messages answer.
type batchAnswer struct {
	Results []struct {
		Channel  string
		ID       string
		Replayed bool
		Error    *problemDoc
	}
}

func (e *env) batch(tok, body string, header map[string]string) (response, batchAnswer) {
	e.t.Helper()
	r := e.do(request{method: http.MethodPost, path: "/v1/messages", body: body, token: tok, header: header})
	var out batchAnswer
	if r.status == http.StatusCreated || r.status == http.StatusMultiStatus {
		r.json(e.t, &out)
	}
	return r, out
}

func TestBatchList(t *testing.T) {
	e := newEnv(t)
	r, out := e.batch(token(t, []string{"orders:*"}, nil),
		`{"messages":[{"channel":"orders:1","data":{"n":1},"event":"created"},{"channel":"orders:2","data":2},{"channel":"orders:1","data":3}]}`, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if len(out.Results) != 3 {
		t.Fatalf("%d results, want 3", len(out.Results))
	}
	for i, want := range []string{"orders:1", "orders:2", "orders:1"} {
		if res := out.Results[i]; res.Channel != want || res.ID == "" || res.Error != nil {
			t.Fatalf("result %d: %+v", i, res)
		}
	}
	one := e.history("orders:1")
	if len(one) != 2 || one[0].ID.String() != out.Results[0].ID || one[1].ID.String() != out.Results[2].ID || one[0].Event != "created" {
		t.Fatalf("orders:1 holds %+v", one)
	}
	if n := len(e.history("orders:2")); n != 1 {
		t.Fatalf("orders:2 holds %d messages", n)
	}
	if got := e.metric("herald_messages_published_total"); got != "3" {
		t.Fatalf("herald_messages_published_total %s, want 3", got)
	}
}

func TestBatchFanOut(t *testing.T) {
	e := newEnv(t)
	r, out := e.batch(testAPIKey, `{"channels":["user:1","user:2"],"data":{"text":"hi"},"event":"notice"}`, nil)
	if r.status != http.StatusCreated || len(out.Results) != 2 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	for _, ch := range []string{"user:1", "user:2"} {
		msgs := e.history(ch)
		if len(msgs) != 1 || string(msgs[0].Data) != `{"text":"hi"}` || msgs[0].Event != "notice" {
			t.Fatalf("%s holds %+v", ch, msgs)
		}
	}
}

func TestBatchPartialFailure(t *testing.T) {
	e := newEnv(t, withOptions(func(o *api.Options) { o.MaxMessageBytes = 50 }))
	r, out := e.batch(token(t, []string{"ok:*"}, nil), `{"messages":[
		{"channel":"ok:1","data":1},
		{"channel":"secret:1","data":1},
		{"channel":"bad channel","data":1},
		{"channel":"ok:2"},
		{"channel":"ok:3","data":1,"event":"no spaces"},
		{"channel":"ok:4","data":"`+strings.Repeat("x", 60)+`"}]}`, nil)
	if r.status != http.StatusMultiStatus {
		t.Fatalf("status %d, want 207: %s", r.status, r.body)
	}
	want := []struct {
		status int
		typ    string
	}{{0, ""}, {403, "forbidden"}, {400, "invalid-channel"}, {400, "missing-data"}, {400, "invalid-event"}, {413, "message-too-large"}}
	for i, w := range want {
		res := out.Results[i]
		switch {
		case w.status == 0 && (res.ID == "" || res.Error != nil):
			t.Fatalf("result %d: %+v, want stored", i, res)
		case w.status != 0 && (res.Error == nil || res.Error.Status != w.status || res.Error.Type != w.typ || res.ID != ""):
			t.Fatalf("result %d: %+v, want %d %s", i, res, w.status, w.typ)
		}
	}
	if n := len(e.history("ok:1")); n != 1 {
		t.Fatalf("ok:1 holds %d messages, want 1", n)
	}
	for _, ch := range []string{"secret:1", "ok:2", "ok:3", "ok:4"} {
		if n := len(e.history(ch)); n != 0 {
			t.Fatalf("%s holds %d messages, want 0", ch, n)
		}
	}
}

// TestBatchIdempotentRetry retries a batch that partly failed: what was stored is answered
// again, what failed is stored now, and nothing is stored twice.
func TestBatchIdempotentRetry(t *testing.T) {
	e := newEnv(t)
	body := `{"messages":[{"channel":"a:1","data":1},{"channel":"b:1","data":2}]}`
	key := map[string]string{"Idempotency-Key": "batch-1"}
	r, first := e.batch(token(t, []string{"a:*"}, nil), body, key)
	if r.status != http.StatusMultiStatus || first.Results[0].ID == "" || first.Results[1].Error == nil {
		t.Fatalf("first attempt: %d %s", r.status, r.body)
	}
	r, second := e.batch(token(t, []string{"a:*", "b:*"}, nil), body, key)
	if r.status != http.StatusCreated {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	if second.Results[0].ID != first.Results[0].ID || !second.Results[0].Replayed {
		t.Fatalf("retry of the stored message: %+v, first %+v", second.Results[0], first.Results[0])
	}
	if second.Results[1].ID == "" || second.Results[1].Replayed {
		t.Fatalf("retry of the failed message: %+v", second.Results[1])
	}
	for _, ch := range []string{"a:1", "b:1"} {
		if n := len(e.history(ch)); n != 1 {
			t.Fatalf("%s holds %d messages, want 1", ch, n)
		}
	}
	// Keys are the credential's own: another credential sending the same key publishes anew
	// (and its own retry is a replay).
	r, other := e.batch(testAPIKey, body, key)
	if r.status != http.StatusCreated || other.Results[0].Replayed || other.Results[1].Replayed ||
		other.Results[1].ID == second.Results[1].ID {
		t.Fatalf("the same key from an API key: %d %s", r.status, r.body)
	}
	r, again := e.batch(testAPIKey, body, key)
	if r.status != http.StatusCreated || !again.Results[0].Replayed || again.Results[1].ID != other.Results[1].ID {
		t.Fatalf("the API key's retry: %d %s", r.status, r.body)
	}
	for _, ch := range []string{"a:1", "b:1"} {
		if n := len(e.history(ch)); n != 2 {
			t.Fatalf("%s holds %d messages, want 2", ch, n)
		}
	}
}

func TestBatchBadInput(t *testing.T) {
	e := newEnv(t, withOptions(func(o *api.Options) { o.MaxBatch, o.MaxMessageBytes = 3, 100 }))
	cases := []struct {
		name   string
		body   string
		header map[string]string
		status int
		typ    string
	}{
		{"malformed", `{"messages":[`, nil, 400, "invalid-json"},
		{"neither form", `{"data":1}`, nil, 400, "invalid-request"},
		{"both forms", `{"messages":[{"channel":"a","data":1}],"channels":["b"],"data":1}`, nil, 400, "invalid-request"},
		{"empty list", `{"messages":[]}`, nil, 400, "invalid-request"},
		{"empty channels", `{"channels":[],"data":1}`, nil, 400, "invalid-request"},
		{"unknown field", `{"messages":[{"channel":"a","data":1,"x":1}]}`, nil, 400, "invalid-request"},
		{"messages not a list", `{"messages":{"channel":"a"}}`, nil, 400, "invalid-request"},
		{"fan-out data missing", `{"channels":["a","b"]}`, nil, 400, "missing-data"},
		{"fan-out bad event", `{"channels":["a"],"data":1,"event":"a b"}`, nil, 400, "invalid-event"},
		{"fan-out data too large", `{"channels":["a"],"data":"` + strings.Repeat("x", 200) + `"}`, nil, 413, "message-too-large"},
		{"too many messages", `{"channels":["a","b","c","d"],"data":1}`, nil, 413, "batch-too-large"},
		{"body past the limit", `{"channels":["a"],"data":1` + strings.Repeat(" ", 3*(100+4096)) + `}`, nil, 413, "request-too-large"},
		{"bad idempotency key", `{"channels":["a"],"data":1}`, map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}, 400, "invalid-idempotency-key"},
		{"text/plain", `{"channels":["a"],"data":1}`, map[string]string{"Content-Type": "text/plain"}, 415, "unsupported-media-type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := e.batch(testAPIKey, c.body, c.header)
			r.wantProblem(t, c.status, c.typ)
		})
	}
	r, _ := e.batch("", `{"channels":["a"],"data":1}`, nil)
	r.wantProblem(t, 401, "unauthorized")
	for _, ch := range []string{"a", "b"} {
		if n := len(e.history(ch)); n != 0 {
			t.Fatalf("%s holds %d messages after bad batches", ch, n)
		}
	}
}

func TestBatchUnavailable(t *testing.T) {
	e := newEnv(t, failWith(broker.ErrUnavailable))
	r, out := e.batch(testAPIKey, `{"channels":["a","b"],"data":1}`, nil)
	if r.status != http.StatusMultiStatus || r.header.Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q: %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	for _, res := range out.Results {
		if res.Error == nil || res.Error.Status != 503 || res.Error.Type != "unavailable" {
			t.Fatalf("result %+v, want 503 unavailable", res)
		}
	}
	if got := e.metric(`herald_publish_errors_total{reason="unavailable"}`); got != "2" {
		t.Fatalf(`herald_publish_errors_total{reason="unavailable"} = %q, want 2`, got)
	}
}
