package api_test

import (
	"net/http"
	"testing"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/api/cors"
)

const allowedOrigin = "https://app.example"

func withOrigins(origins ...string) envOption {
	return withOptions(func(o *api.Options) { o.CORS = cors.New(origins) })
}

var browserRoutes = []string{"/v1/channels/a/messages", "/v1/channels/a", "/v1/messages", "/v1/sse", "/v1/poll"}

func TestPreflightAllowedOrigin(t *testing.T) {
	e := newEnv(t, withOrigins(allowedOrigin))
	for _, path := range browserRoutes {
		r := e.do(request{method: http.MethodOptions, path: path, header: map[string]string{
			"Origin": allowedOrigin, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
		}})
		if r.status != http.StatusNoContent {
			t.Fatalf("%s: status %d: %s", path, r.status, r.body)
		}
		h := r.header
		if h.Get("Access-Control-Allow-Origin") != allowedOrigin || h.Get("Access-Control-Allow-Credentials") != "true" ||
			h.Get("Access-Control-Allow-Methods") == "" || h.Get("Access-Control-Allow-Headers") == "" {
			t.Fatalf("%s: preflight headers %v", path, h)
		}
	}
}

func TestPreflightDisallowedOrigin(t *testing.T) {
	e := newEnv(t, withOrigins(allowedOrigin))
	for _, path := range browserRoutes {
		r := e.do(request{method: http.MethodOptions, path: path, header: map[string]string{
			"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}})
		r.wantProblem(t, 403, "origin-not-allowed")
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("%s: a disallowed origin got Access-Control-Allow-Origin", path)
		}
	}
}

func TestPreflightAnyOrigin(t *testing.T) {
	e := newEnv(t) // no allowlist: every origin
	r := e.do(request{method: http.MethodOptions, path: "/v1/channels/a/messages", header: map[string]string{
		"Origin": "https://anyone.example", "Access-Control-Request-Method": "GET"}})
	if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "https://anyone.example" {
		t.Fatalf("status %d, headers %v", r.status, r.header)
	}
}

func TestCORSHeadersOnResponses(t *testing.T) {
	e := newEnv(t, withOrigins(allowedOrigin))
	origin := map[string]string{"Origin": allowedOrigin}
	for _, req := range []request{
		{path: "/v1/channels/a/messages", token: testAPIKey, header: origin},
		{path: "/v1/channels/a", token: testAPIKey, header: origin},
		{path: "/v1/poll?channel=a", token: testAPIKey, header: origin},
		{method: http.MethodPost, path: "/v1/channels/a/messages", body: `{"data":1}`, token: testAPIKey, header: origin},
		{path: "/v1/channels/a/messages", header: origin}, // an error: the page may read it
	} {
		r := e.do(req)
		if r.header.Get("Access-Control-Allow-Origin") != allowedOrigin || r.header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("%s %s (%d): CORS headers missing: %v", req.method, req.path, r.status, r.header)
		}
	}
	r := e.do(request{path: "/v1/channels/a/messages", token: testAPIKey, header: map[string]string{"Origin": "https://evil.example"}})
	r.wantProblem(t, 403, "origin-not-allowed")
	// Servers send no Origin: the allowlist does not apply to them.
	if r := e.do(request{path: "/v1/channels/a/messages", token: testAPIKey}); r.status != http.StatusOK {
		t.Fatalf("no Origin: status %d", r.status)
	}
}
