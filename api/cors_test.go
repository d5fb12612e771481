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

// TestPreflightAnyOrigin: without an allowlist every origin, null too, may call with a token it
// holds, but never with credentials.
func TestPreflightAnyOrigin(t *testing.T) {
	e := newEnv(t) // no allowlist: every origin
	for _, origin := range []string{"https://anyone.example", "null"} {
		r := e.do(request{method: http.MethodOptions, path: "/v1/channels/a/messages", header: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "GET"}})
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "*" ||
			r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Fatalf("%s: status %d, headers %v", origin, r.status, r.header)
		}
	}
}

// TestCookieCountsOnlyForTrustedOrigins: the herald_token cookie authenticates a request without
// Origin, from herald's own origin, or from a listed one; from any other origin it is ignored.
func TestCookieCountsOnlyForTrustedOrigins(t *testing.T) {
	tok := token(t, nil, []string{"*"})
	cookie := "herald_token=" + tok
	for _, tc := range []struct {
		name    string
		origins []string
		origin  string // "self": the test server's own origin
		status  int
	}{
		{"no allowlist, no Origin", nil, "", 200},
		{"no allowlist, own origin", nil, "self", 200},
		{"no allowlist, other origin", nil, "https://evil.example", 401},
		{"no allowlist, null", nil, "null", 401},
		{"star, other origin", []string{"*"}, "https://evil.example", 401},
		{"listed", []string{allowedOrigin}, allowedOrigin, 200},
		{"null listed", []string{"null"}, "null", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withOrigins(tc.origins...))
			h := map[string]string{"Cookie": cookie}
			if tc.origin == "self" {
				h["Origin"] = e.srv.URL
			} else if tc.origin != "" {
				h["Origin"] = tc.origin
			}
			r := e.do(request{path: "/v1/channels/a/messages", header: h})
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			// A token the page holds itself works from any origin the policy allows.
			if tc.status == 401 {
				if r := e.do(request{path: "/v1/channels/a/messages", token: tok, header: h}); r.status != 200 {
					t.Fatalf("with a bearer token: status %d: %s", r.status, r.body)
				}
			}
		})
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
