// Package cors decides which browser origins may use herald and writes the CORS headers for
// them. The API's routes use it through middleware; the SSE stream, whose response the gateway
// writes itself on a hijacked connection, and the WebSocket origin check use it directly.
package cors

import (
	"net/http"
	"strings"
)

// Policy is the set of origins allowed to connect. The zero Policy allows every origin.
type Policy struct {
	origins map[string]struct{}
}

// New makes a policy from the configured origins ("https://shop.example", "http://localhost:3000").
// An empty list allows any origin; "*" in the list does too.
func New(origins []string) Policy {
	p := Policy{}
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		if o == "*" {
			return Policy{}
		}
		if p.origins == nil {
			p.origins = make(map[string]struct{})
		}
		p.origins[strings.ToLower(o)] = struct{}{}
	}
	return p
}

// AnyOrigin reports whether the policy allows every origin.
func (p Policy) AnyOrigin() bool { return p.origins == nil }

// Allowed reports whether a request with this Origin header may proceed. Requests without an
// Origin (servers, curl, native apps) are always allowed: the allowlist protects browsers' users.
func (p Policy) Allowed(origin string) bool {
	if origin == "" || p.origins == nil {
		return true
	}
	_, ok := p.origins[strings.ToLower(origin)]
	return ok
}

// SetHeaders adds the CORS response headers for r to h when r comes from an allowed origin. It
// always echoes the exact origin (never "*") and allows credentials, so EventSource with
// withCredentials and the herald_token cookie work from other origins.
func (p Policy) SetHeaders(h http.Header, r *http.Request) {
	origin := r.Header.Get("Origin")
	h.Add("Vary", "Origin")
	if origin == "" || !p.Allowed(origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", "Retry-After, Idempotency-Key, Idempotent-Replayed")
}

// SetPreflightHeaders adds the headers that answer a preflight (OPTIONS) request from an allowed
// origin.
func (p Policy) SetPreflightHeaders(h http.Header, r *http.Request) {
	p.SetHeaders(h, r)
	if h.Get("Access-Control-Allow-Origin") == "" {
		return
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, Last-Event-ID")
	h.Set("Access-Control-Max-Age", "600")
}
