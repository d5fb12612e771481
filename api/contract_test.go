package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/openapi"
)

// contract holds the API to openapi/openapi.yaml: requests and answers of the running server
// are validated against the document.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	opts   *openapi3filter.Options
	// problemTypes are the problem types the document's table lists.
	problemTypes map[string]bool
}

var registerDecoders sync.Once

func loadContract(t *testing.T) *contract {
	t.Helper()
	registerDecoders.Do(func() {
		openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	})
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	c := &contract{doc: doc, router: router, problemTypes: map[string]bool{},
		opts: &openapi3filter.Options{
			AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
			IncludeResponseStatus: true, // a status the document does not list fails
			MultiError:            true,
		}}
	for _, m := range regexp.MustCompile("(?m)^\\| (`[a-z-]+`(?:, `[a-z-]+`)*) \\|").FindAllStringSubmatch(doc.Info.Description, -1) {
		for _, code := range strings.Split(m[1], ", ") {
			c.problemTypes[strings.Trim(code, "`")] = true
		}
	}
	if len(c.problemTypes) < 10 {
		t.Fatalf("found only %d problem types in the document's table", len(c.problemTypes))
	}
	return c
}

// check sends req to e, validates the request (when valid is true: requests built to be wrong
// are not held to the document) and always the response, and returns the response.
func (c *contract) check(t *testing.T, e *env, req request, valid bool) response {
	t.Helper()
	resp := e.do(req)
	in := e.newRequest(req)
	route, params, err := c.router.FindRoute(in)
	if err != nil {
		t.Fatalf("%s %s: no route in the document: %v", in.Method, req.path, err)
	}
	input := &openapi3filter.RequestValidationInput{Request: in, PathParams: params, Route: route, Options: c.opts}
	if valid {
		if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
			t.Fatalf("%s %s: request does not match the document: %v", in.Method, req.path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input, Status: resp.status, Header: resp.header,
		Body: io.NopCloser(bytes.NewReader(resp.body)), Options: c.opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("%s %s: response %d does not match the document: %v\n%s", in.Method, req.path, resp.status, err, resp.body)
	}
	if resp.header.Get("Content-Type") == "application/problem+json" {
		var p problemDoc
		resp.json(t, &p)
		if !c.problemTypes[p.Type] {
			t.Fatalf("%s %s: problem type %q is not in the document's table", in.Method, req.path, p.Type)
		}
	}
	return resp
}

// contractCase is one exchange and the status it must end with.
type contractCase struct {
	name   string
	req    request
	valid  bool
	status int
}

func TestContract(t *testing.T) {
	c := loadContract(t)
	e := newEnv(t, withOrigins(allowedOrigin))
	pub := token(t, []string{"orders:*"}, nil)
	sub := token(t, nil, []string{"orders:*"})
	id := e.publish("orders:9", `{"data":{"n":9},"event":"status"}`)
	post := func(path, body string, tok string, header map[string]string) request {
		return request{method: http.MethodPost, path: path, body: body, token: tok, header: header}
	}
	key := map[string]string{"Idempotency-Key": "k-1"}
	preflight := map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "POST"}
	wsHeaders := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}

	cases := []contractCase{
		{"publish", post("/v1/channels/orders:1/messages", `{"data":{"a":1},"event":"created"}`, pub, key), true, 201},
		{"publish replayed", post("/v1/channels/orders:1/messages", `{"data":{"a":1},"event":"created"}`, pub, key), true, 201},
		{"publish invalid json", post("/v1/channels/orders:1/messages", `{"data"`, pub, nil), false, 400},
		{"publish invalid channel", post("/v1/channels/a%20b/messages", `{"data":1}`, testAPIKey, nil), false, 400},
		{"publish missing data", post("/v1/channels/orders:1/messages", `{}`, pub, nil), false, 400},
		{"publish no token", post("/v1/channels/orders:1/messages", `{"data":1}`, "", nil), true, 401},
		{"publish forbidden", post("/v1/channels/chat:1/messages", `{"data":1}`, pub, nil), true, 403},
		{"publish too large", post("/v1/channels/orders:1/messages", `{"data":"`+strings.Repeat("x", 70000)+`"}`, pub, nil), true, 413},
		{"publish text/plain", post("/v1/channels/orders:1/messages", `{"data":1}`, pub, map[string]string{"Content-Type": "text/plain"}), false, 415},

		{"batch", post("/v1/messages", `{"messages":[{"channel":"orders:2","data":1},{"channel":"orders:3","data":[],"event":"e"}]}`, pub, nil), true, 201},
		{"batch fan-out", post("/v1/messages", `{"channels":["orders:4","orders:5"],"data":"hi"}`, pub, nil), true, 201},
		{"batch partial", post("/v1/messages", `{"channels":["orders:6","chat:1"],"data":"hi"}`, pub, nil), true, 207},
		{"batch empty", post("/v1/messages", `{"messages":[]}`, pub, nil), false, 400},
		{"batch too many", post("/v1/messages", `{"channels":[`+strings.Repeat(`"orders:1",`, 100)+`"orders:1"],"data":1}`, pub, nil), false, 413},
		{"batch no token", post("/v1/messages", `{"channels":["orders:6"],"data":1}`, "", nil), true, 401},
		{"batch text/plain", post("/v1/messages", `{"channels":["orders:6"],"data":1}`, pub, map[string]string{"Content-Type": "text/plain"}), false, 415},

		{"history", request{path: "/v1/channels/orders:9/messages?since=0&limit=10", token: sub}, true, 200},
		{"history cors", request{path: "/v1/channels/orders:9/messages", token: sub, header: map[string]string{"Origin": allowedOrigin}}, true, 200},
		{"history bad since", request{path: "/v1/channels/orders:9/messages?since=yesterday", token: sub}, false, 400},
		{"history no token", request{path: "/v1/channels/orders:9/messages"}, true, 401},
		{"history forbidden", request{path: "/v1/channels/orders:9/messages", token: pub}, true, 403},
		{"history origin not allowed", request{path: "/v1/channels/orders:9/messages", token: sub, header: map[string]string{"Origin": "https://evil.example"}}, true, 403},

		{"channel", request{path: "/v1/channels/orders:9", token: sub}, true, 200},
		{"channel empty", request{path: "/v1/channels/orders:none", token: sub}, true, 200},
		{"channel invalid", request{path: "/v1/channels/a%20b", token: testAPIKey}, false, 400},
		{"channel no token", request{path: "/v1/channels/orders:9"}, true, 401},
		{"channel forbidden", request{path: "/v1/channels/chat:1", token: sub}, true, 403},

		{"ws", request{path: "/v1/ws", header: wsHeaders}, true, 101},
		{"sse", request{path: "/v1/sse?channel=orders:9&channel=orders:1", token: sub}, true, 200},
		{"poll", request{path: "/v1/poll?channel=orders:9&since=" + id + "&timeout=1", token: sub}, true, 200},

		{"healthz", request{path: "/healthz"}, true, 200},
		{"readyz", request{path: "/readyz"}, true, 200},
		{"metrics", request{path: "/metrics"}, true, 200},
		{"openapi", request{path: "/openapi.yaml"}, true, 200},
	}
	for _, p := range browserRoutes {
		cases = append(cases,
			contractCase{"preflight " + p, request{method: http.MethodOptions, path: p, header: preflight}, true, 204},
			contractCase{"preflight refused " + p, request{method: http.MethodOptions, path: p,
				header: map[string]string{"Origin": "https://evil.example"}}, true, 403})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := c.check(t, e, tc.req, tc.valid); r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
		})
	}
}

// TestContractFailures holds the broker failure answers to the document.
func TestContractFailures(t *testing.T) {
	c := loadContract(t)
	for _, f := range []struct {
		err    error
		status int
	}{{broker.ErrUnavailable, 503}, {errInternalSecret, 500}} {
		e := newEnv(t, failWith(f.err))
		for _, req := range []request{
			{method: http.MethodPost, path: "/v1/channels/a/messages", body: `{"data":1}`, token: testAPIKey},
			{path: "/v1/channels/a/messages", token: testAPIKey},
			{path: "/v1/channels/a", token: testAPIKey},
		} {
			if r := c.check(t, e, req, true); r.status != f.status {
				t.Fatalf("%s %s: status %d, want %d", req.method, req.path, r.status, f.status)
			}
		}
		if r := c.check(t, e, request{path: "/readyz"}, true); r.status != 503 {
			t.Fatalf("/readyz: status %d, want 503", r.status)
		}
		if r := c.check(t, e, request{method: http.MethodPost, path: "/v1/messages", body: `{"channels":["a"],"data":1}`, token: testAPIKey}, true); r.status != 207 {
			t.Fatalf("batch: status %d, want 207", r.status)
		}
	}
}

// TestRoutesMatchDocument checks that the server has exactly the routes the document describes.
func TestRoutesMatchDocument(t *testing.T) {
	c := loadContract(t)
	e := newEnv(t)
	served := map[string]bool{}
	for _, r := range e.echo.Routes() {
		if !strings.HasPrefix(r.Path, "/") || strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		served[r.Method+" "+regexp.MustCompile(`:(\w+)`).ReplaceAllString(r.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	var missing, extra []string
	for r := range served {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !served[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("served but not documented: %v; documented but not served: %v", missing, extra)
	}
}

// checkStream is check for an answer that does not end (an event stream, an upgraded
// connection): the status and headers are validated, the body is not read.
func (c *contract) checkStream(t *testing.T, e *env, req request) int {
	t.Helper()
	in := e.newRequest(req)
	resp, err := e.srv.Client().Do(e.newRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	route, params, err := c.router.FindRoute(in)
	if err != nil {
		t.Fatalf("%s: no route in the document: %v", req.path, err)
	}
	input := &openapi3filter.RequestValidationInput{Request: in, PathParams: params, Route: route, Options: c.opts}
	if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
		t.Fatalf("%s: request does not match the document: %v", req.path, err)
	}
	opts := *c.opts
	opts.ExcludeResponseBody = true
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: input, Status: resp.StatusCode,
		Header: resp.Header, Body: http.NoBody, Options: &opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("%s: response %d does not match the document: %v", req.path, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// TestContractWithGateway holds the subscribe routes, served by the real connection core
// behind this API, to the document.
func TestContractWithGateway(t *testing.T) {
	c := loadContract(t)
	e := newEnv(t, withOrigins(allowedOrigin), func(c *envConfig) { c.realGateway = true })
	sub := token(t, nil, []string{"orders:*"})
	first := e.publish("orders:1", `{"data":{"n":1},"event":"created"}`)
	e.publish("orders:2", `{"data":2}`)
	wsHeaders := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}

	cases := []contractCase{
		{"poll replay", request{path: "/v1/poll?channel=orders:1&channel=orders:2&since=0,0&timeout=0", token: sub}, true, 200},
		{"poll since", request{path: "/v1/poll?channel=orders:1&since=" + first + "&timeout=0", token: sub}, true, 200},
		{"poll live, none", request{path: "/v1/poll?channel=orders:1&timeout=0", token: sub, header: map[string]string{"Origin": allowedOrigin}}, true, 200},
		{"poll missing channel", request{path: "/v1/poll", token: sub}, false, 400},
		{"poll bad timeout", request{path: "/v1/poll?channel=orders:1&timeout=soon", token: sub}, false, 400},
		{"poll bad cursor", request{path: "/v1/poll?channel=orders:1&since=x", token: sub}, true, 400},
		{"poll no token", request{path: "/v1/poll?channel=orders:1"}, true, 401},
		{"poll bad token", request{path: "/v1/poll?channel=orders:1", token: "nope"}, true, 401},
		{"poll forbidden", request{path: "/v1/poll?channel=chat:1", token: sub}, true, 403},
		{"sse missing channel", request{path: "/v1/sse", token: sub}, false, 400},
		{"sse no token", request{path: "/v1/sse?channel=orders:1"}, true, 401},
		{"sse forbidden", request{path: "/v1/sse?channel=chat:1", token: sub}, true, 403},
		{"sse origin not allowed", request{path: "/v1/sse?channel=orders:1", token: sub, header: map[string]string{"Origin": "https://evil.example"}}, true, 403},
		{"ws bad token", request{path: "/v1/ws", token: "nope", header: wsHeaders}, true, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := c.check(t, e, tc.req, tc.valid); r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
		})
	}
	streams := []contractCase{
		{"sse", request{path: "/v1/sse?channel=orders:1&since=0", token: sub, header: map[string]string{"Origin": allowedOrigin}}, true, 200},
		{"ws", request{path: "/v1/ws", token: sub, header: wsHeaders}, true, 101},
		{"ws auth frame later", request{path: "/v1/ws", header: wsHeaders}, true, 101},
	}
	for _, tc := range streams {
		t.Run(tc.name, func(t *testing.T) {
			if status := c.checkStream(t, e, tc.req); status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
		})
	}
}

// TestContractRefusedHandshake holds the WebSocket upgrader's refusal to the document. It runs on
// a server of its own: the connection core leaves the connection of a refused handshake open
// (gobwas/ws hijacks it before answering), which delays later streams on the same server.
func TestContractRefusedHandshake(t *testing.T) {
	c := loadContract(t)
	e := newEnv(t, func(c *envConfig) { c.realGateway = true })
	req := request{path: "/v1/ws", token: testAPIKey, header: map[string]string{"Connection": "close"}}
	if r := c.check(t, e, req, false); r.status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", r.status, r.body)
	}
}
