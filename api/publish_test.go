package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/api"
)

func TestPublishStoresMessage(t *testing.T) {
	e := newEnv(t)
	tok := token(t, []string{"orders:*"}, nil)
	r := e.do(request{method: http.MethodPost, path: "/v1/channels/orders:42/messages",
		body: `{"data": {"status": "shipped", "html": "<b>"}, "event": "status"}`, token: tok})
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out struct{ ID, Channel string }
	r.json(t, &out)
	if out.Channel != "orders:42" || out.ID == "" {
		t.Fatalf("answer %+v", out)
	}
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a first publish is marked as replayed")
	}
	msgs := e.history("orders:42")
	if len(msgs) != 1 || msgs[0].ID.String() != out.ID || msgs[0].Event != "status" {
		t.Fatalf("history %+v, want the one message %s", msgs, out.ID)
	}
	var data map[string]string
	if err := json.Unmarshal(msgs[0].Data, &data); err != nil || data["status"] != "shipped" || data["html"] != "<b>" {
		t.Fatalf("stored data %s", msgs[0].Data)
	}
}

func TestPublishAcceptsAnyJSONData(t *testing.T) {
	e := newEnv(t)
	for _, data := range []string{`null`, `0`, `"text"`, `[1,2]`, `true`} {
		e.publish("any", `{"data":`+data+`}`)
	}
	if n := len(e.history("any")); n != 5 {
		t.Fatalf("%d messages stored, want 5", n)
	}
}

func TestPublishWithAPIKeyAndCharset(t *testing.T) {
	e := newEnv(t)
	r := e.do(request{method: http.MethodPost, path: "/v1/channels/a/messages", body: `{"data":1}`,
		token: testAPIKey, header: map[string]string{"Content-Type": "application/json; charset=utf-8"}})
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}

func TestPublishChannelWithSlash(t *testing.T) {
	e := newEnv(t)
	e.publish("tenant%2Fa:orders", `{"data":1}`)
	if n := len(e.history("tenant/a:orders")); n != 1 {
		t.Fatalf("%d messages in tenant/a:orders, want 1", n)
	}
}

func TestPublishIdempotentRetry(t *testing.T) {
	e := newEnv(t)
	send := func() response {
		return e.do(request{method: http.MethodPost, path: "/v1/channels/pay:1/messages", body: `{"data":{"n":1}}`,
			token: testAPIKey, header: map[string]string{"Idempotency-Key": "charge 7f3a"}})
	}
	first, second := send(), send()
	if first.status != http.StatusCreated || second.status != http.StatusCreated {
		t.Fatalf("statuses %d, %d, want 201 twice", first.status, second.status)
	}
	var a, b struct{ ID string }
	first.json(t, &a)
	second.json(t, &b)
	if a.ID != b.ID {
		t.Fatalf("retry got id %s, first %s", b.ID, a.ID)
	}
	if second.header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("the retry is not marked Idempotent-Replayed: true")
	}
	if n := len(e.history("pay:1")); n != 1 {
		t.Fatalf("history holds %d messages, want 1", n)
	}
	if got := e.metric("herald_messages_published_total"); got != "1" {
		t.Fatalf("herald_messages_published_total %s, want 1 (a replay stores nothing)", got)
	}
}

func TestPublishBadInput(t *testing.T) {
	tooBig := `{"data":"` + strings.Repeat("x", 200) + `"}`
	cases := []struct {
		name   string
		path   string
		body   string
		header map[string]string
		status int
		typ    string
	}{
		{"malformed json", "", `{"data":`, nil, 400, "invalid-json"},
		{"not json", "", `hello`, nil, 400, "invalid-json"},
		{"empty body", "", ``, map[string]string{"Content-Type": "application/json"}, 400, "invalid-json"},
		{"two values", "", `{"data":1} {"data":2}`, nil, 400, "invalid-json"},
		{"unknown field", "", `{"data":1,"evnt":"x"}`, nil, 400, "invalid-request"},
		{"wrong type", "", `{"data":1,"event":7}`, nil, 400, "invalid-request"},
		{"array body", "", `[1]`, nil, 400, "invalid-request"},
		{"data missing", "", `{"event":"x"}`, nil, 400, "missing-data"},
		{"data not utf-8", "", "{\"data\":\"\xff\xfe\"}", nil, 400, "invalid-data"},
		{"data not utf-8 deep inside", "", "{\"data\":{\"a\":[\"ok\",\"\xc3\"]},\"event\":\"x\"}", nil, 400, "invalid-data"},
		{"event with space", "", `{"data":1,"event":"a b"}`, nil, 400, "invalid-event"},
		{"event too long", "", `{"data":1,"event":"` + strings.Repeat("e", 65) + `"}`, nil, 400, "invalid-event"},
		{"channel with space", "/v1/channels/a%20b/messages", `{"data":1}`, nil, 400, "invalid-channel"},
		{"channel with star", "/v1/channels/a*/messages", `{"data":1}`, nil, 400, "invalid-channel"},
		{"channel too long", "/v1/channels/" + strings.Repeat("c", 256) + "/messages", `{"data":1}`, nil, 400, "invalid-channel"},
		{"empty idempotency key", "", `{"data":1}`, map[string]string{"Idempotency-Key": " "}, 400, "invalid-idempotency-key"},
		{"long idempotency key", "", `{"data":1}`, map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, 400, "invalid-idempotency-key"},
		{"non-ascii idempotency key", "", `{"data":1}`, map[string]string{"Idempotency-Key": "clé"}, 400, "invalid-idempotency-key"},
		{"text/plain", "", `{"data":1}`, map[string]string{"Content-Type": "text/plain"}, 415, "unsupported-media-type"},
		{"no content type", "", `{"data":1}`, map[string]string{"Content-Type": ""}, 415, "unsupported-media-type"},
		{"form", "", `data=1`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported-media-type"},
		{"data past the limit", "", tooBig, nil, 413, "message-too-large"},
		{"body past the limit", "", `{"data":1,` + strings.Repeat(" ", 5000) + `}`, nil, 413, "request-too-large"},
		// The body is read whole before it is decoded; what comes first still decides.
		{"not json past the limit", "", `hello` + strings.Repeat(" ", 5000), nil, 400, "invalid-json"},
		{"second value past the limit", "", `{"data":1}` + strings.Repeat(" ", 5000) + `{}`, nil, 413, "request-too-large"},
	}
	e := newEnv(t, withOptions(func(o *api.Options) { o.MaxMessageBytes = 100 }))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path
			if path == "" {
				path = "/v1/channels/ok/messages"
			}
			r := e.do(request{method: http.MethodPost, path: path, body: c.body, header: c.header, token: testAPIKey})
			r.wantProblem(t, c.status, c.typ)
		})
	}
	if n := len(e.history("ok")); n != 0 {
		t.Fatalf("bad input stored %d messages", n)
	}
	if got := e.metric(`herald_publish_errors_total{reason="invalid"}`); got == "" || got == "0" {
		t.Fatalf("herald_publish_errors_total{reason=invalid} = %q after bad publishes", got)
	}
}

func TestPublishAuth(t *testing.T) {
	e := newEnv(t)
	expired, err := mintExpired()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		req       request
		status    int
		typ       string
		challenge string
	}{
		{"no token", request{}, 401, "unauthorized", `Bearer realm="herald"`},
		{"garbage token", request{token: "not-a-token"}, 401, "invalid-token", `error="invalid_token"`},
		{"wrong signature", request{token: token(t, []string{"*"}, nil) + "x"}, 401, "invalid-token", `error="invalid_token"`},
		{"expired", request{token: expired}, 401, "token-expired", `error="invalid_token"`},
		{"other channel", request{token: token(t, []string{"chat:*"}, nil)}, 403, "forbidden", ""},
		{"subscribe only", request{token: token(t, nil, []string{"*"})}, 403, "forbidden", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := c.req
			req.method, req.path, req.body = http.MethodPost, "/v1/channels/orders:1/messages", `{"data":1}`
			r := e.do(req)
			r.wantProblem(t, c.status, c.typ)
			if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, c.challenge) || (c.challenge == "") != (got == "") {
				t.Fatalf("WWW-Authenticate %q, want it to hold %q", got, c.challenge)
			}
		})
	}
	if n := len(e.history("orders:1")); n != 0 {
		t.Fatalf("refused publishes stored %d messages", n)
	}
}

func TestPublishTokenInQueryAndCookie(t *testing.T) {
	e := newEnv(t)
	tok := token(t, []string{"*"}, nil)
	r := e.do(request{method: http.MethodPost, path: "/v1/channels/q/messages?access_token=" + tok, body: `{"data":1}`})
	if r.status != http.StatusCreated {
		t.Fatalf("query token: status %d: %s", r.status, r.body)
	}
	r = e.do(request{method: http.MethodPost, path: "/v1/channels/q/messages", body: `{"data":1}`,
		header: map[string]string{"Cookie": "herald_token=" + tok}})
	if r.status != http.StatusCreated {
		t.Fatalf("cookie token: status %d: %s", r.status, r.body)
	}
}
