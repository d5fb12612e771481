// Package cors decides which browser origins may use herald and writes the CORS headers for
// them. The API's routes use it through middleware; the SSE stream, whose response the gateway
// writes itself on a hijacked connection, and the WebSocket origin check use it directly.
//
// Two kinds of policy:
//
//   - No allowlist (the default): any origin may call herald with a token it holds itself
//     (Authorization header or access_token parameter). Responses carry
//     Access-Control-Allow-Origin: * and never Access-Control-Allow-Credentials, and the
//     herald_token cookie does not count for a request from another origin: a page on any site
//     could otherwise read its visitors' streams with their cookie.
//   - An allowlist: only the listed origins may call herald from a browser. Each gets its own
//     origin echoed with Access-Control-Allow-Credentials: true, and the cookie counts for it.
//
// The "null" origin (sandboxed frames, file: pages, some redirects) is never listed implicitly:
// "*" does not list it, only "null" itself does.
package cors

import (
	"net/http"
	"strings"
)

// Policy is the set of origins allowed to connect. The zero Policy allows every origin, without
// credentials.
type Policy struct {
	origins map[string]struct{} // lower case, no trailing slash; nil: no allowlist
}

// New makes a policy from the configured origins ("https://shop.example", "http://localhost:3000").
// An empty list allows any origin without credentials; so does "*" in the list, whatever else
// it holds.
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

// AnyOrigin reports whether the policy allows every origin (without credentials).
func (p Policy) AnyOrigin() bool { return p.origins == nil }

// Allowed reports whether a request with this Origin header may proceed. Requests without an
// Origin (servers, curl, native apps) are always allowed: the allowlist protects browsers' users.
func (p Policy) Allowed(origin string) bool {
	return origin == "" || p.origins == nil || p.Listed(origin)
}

// Listed reports whether origin is in the allowlist. Without an allowlist no origin is listed.
func (p Policy) Listed(origin string) bool {
	if origin == "" || p.origins == nil {
		return false
	}
	_, ok := p.origins[strings.ToLower(origin)]
	return ok
}

// CookieAllowed reports whether the herald_token cookie may authenticate r. The browser sends
// that cookie to herald whichever page makes the request, so it counts only when the page is
// trusted: r has no Origin (not a cross-origin browser request), its Origin is herald's own
// (the same host as r's Host header), or its Origin is listed. A token the page presents itself
// (header, query parameter, WebSocket auth frame) is not ambient and is not affected.
func (p Policy) CookieAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || p.Listed(origin) || sameHost(origin, r.Host)
}

// sameHost reports whether origin ("https://herald.example:8443") names host ("herald.example:8443",
// a Host header). The scheme is not compared: TLS ends in front of herald, so it cannot tell.
func sameHost(origin, host string) bool {
	_, rest, ok := strings.Cut(origin, "://")
	return ok && host != "" && strings.EqualFold(rest, host)
}

// SetHeaders adds the CORS response headers for r to h when r comes from an allowed origin: a
// listed origin gets itself echoed with Access-Control-Allow-Credentials: true (so EventSource
// withCredentials and the herald_token cookie work from it); without an allowlist every origin
// gets Access-Control-Allow-Origin: * and no credentials.
func (p Policy) SetHeaders(h http.Header, r *http.Request) {
	origin := r.Header.Get("Origin")
	h.Add("Vary", "Origin")
	switch {
	case origin == "":
		return
	case p.Listed(origin):
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
	case p.AnyOrigin():
		h.Set("Access-Control-Allow-Origin", "*")
	default:
		return
	}
	h.Set("Access-Control-Expose-Headers", "Retry-After, Idempotency-Key, Idempotent-Replayed")
}

// SetPreflightHeaders adds the headers that answer a preflight (OPTIONS) request from an allowed
// origin, by the same rule as SetHeaders.
func (p Policy) SetPreflightHeaders(h http.Header, r *http.Request) {
	p.SetHeaders(h, r)
	if h.Get("Access-Control-Allow-Origin") == "" {
		return
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, Last-Event-ID")
	h.Set("Access-Control-Max-Age", "600")
}
