package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/gateway/broker"
)

func TestUnknownRoute(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/", "/v2/messages", "/v1/channels/a/b/c/messages"} {
		e.do(request{path: path}).wantProblem(t, 404, "not-found")
	}
}

func TestWrongMethod(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ method, path, allow string }{
		{http.MethodDelete, "/v1/channels/a/messages", "POST"},
		{http.MethodPut, "/v1/messages", "POST"},
		{http.MethodPost, "/healthz", "GET"},
		{http.MethodPost, "/v1/channels/a", "GET"},
	}
	for _, c := range cases {
		r := e.do(request{method: c.method, path: c.path, token: testAPIKey})
		r.wantProblem(t, 405, "method-not-allowed")
		if !strings.Contains(r.header.Get("Allow"), c.allow) {
			t.Fatalf("%s %s: Allow %q, want it to hold %s", c.method, c.path, r.header.Get("Allow"), c.allow)
		}
	}
}

// TestUnavailableBroker maps broker.ErrUnavailable (wrapped, as brokers return it) to 503 with
// Retry-After on every route that calls the broker.
func TestUnavailableBroker(t *testing.T) {
	e := newEnv(t, failWith(fmt.Errorf("valkey: %w", broker.ErrUnavailable)))
	for _, req := range []request{
		{method: http.MethodPost, path: "/v1/channels/a/messages", body: `{"data":1}`, token: testAPIKey},
		{path: "/v1/channels/a/messages", token: testAPIKey},
		{path: "/v1/channels/a", token: testAPIKey},
	} {
		r := e.do(req)
		r.wantProblem(t, 503, "unavailable")
		if r.header.Get("Retry-After") != "1" {
			t.Fatalf("%s %s: Retry-After %q, want 1", req.method, req.path, r.header.Get("Retry-After"))
		}
	}
	if got := e.metric(`herald_publish_errors_total{reason="unavailable"}`); got != "1" {
		t.Fatalf(`herald_publish_errors_total{reason="unavailable"} = %q, want 1`, got)
	}
}

func TestBrokerDeadlineIsUnavailable(t *testing.T) {
	e := newEnv(t, failWith(context.DeadlineExceeded))
	e.do(request{path: "/v1/channels/a", token: testAPIKey}).wantProblem(t, 503, "unavailable")
}

// TestInternalError answers 500 without the error's text, and logs the error.
func TestInternalError(t *testing.T) {
	e := newEnv(t, failWith(errInternalSecret))
	for _, req := range []request{
		{method: http.MethodPost, path: "/v1/channels/a/messages", body: `{"data":1}`, token: testAPIKey},
		{path: "/v1/channels/a/messages", token: testAPIKey},
	} {
		r := e.do(req)
		r.wantProblem(t, 500, "internal")
		if strings.Contains(string(r.body), "10.1.2.3") {
			t.Fatalf("the 500 leaks internals: %s", r.body)
		}
	}
	if !strings.Contains(e.logBuf.String(), "10.1.2.3") {
		t.Fatal("the internal error was not logged")
	}
}

func TestPanicIsInternalError(t *testing.T) {
	e := newEnv(t)
	r := e.do(request{path: "/v1/channels/panic:now", token: testAPIKey})
	r.wantProblem(t, 500, "internal")
	if !strings.Contains(e.logBuf.String(), "stub gateway told to panic") {
		t.Fatal("the panic was not logged")
	}
}
