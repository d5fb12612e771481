package auth

import (
	"net/http"
	"net/url"
	"strings"
)

// Where [FromRequest] looks for a token besides the Authorization header.
const (
	// QueryParam is the query parameter that may carry a token (EventSource cannot set headers).
	QueryParam = "access_token"
	// CookieName is the cookie that may carry a token.
	CookieName = "herald_token"
)

// FromRequest finds the token of an HTTP request: "Authorization: Bearer <t>" first (the scheme
// is case-insensitive; other schemes are ignored), then the access_token query parameter, then,
// when cookie is true, the herald_token cookie. It returns "" when there is none.
//
// The browser attaches the cookie to requests from any page, so callers pass whether r's origin
// may use it (cors.Policy.CookieAllowed); a cookie that may not is ignored as if absent.
func FromRequest(r *http.Request, cookie bool) string {
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if token = strings.TrimSpace(token); token != "" {
			return token
		}
	}
	if r.URL != nil {
		if token := r.URL.Query().Get(QueryParam); token != "" {
			return token
		}
	}
	if !cookie {
		return ""
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return c.Value
	}
	return ""
}

// RedactQuery returns rawQuery with the value of every access_token parameter replaced by
// "REDACTED", for logs: tokens are never logged. Everything else is kept byte for byte. Both '&'
// and ';' count as separators here, so a value cannot hide behind a separator that some other
// parser honours; a parameter name is compared after percent-decoding ("access%5Ftoken" too).
func RedactQuery(rawQuery string) string {
	if rawQuery == "" {
		return rawQuery
	}
	var b strings.Builder
	b.Grow(len(rawQuery))
	rest := rawQuery
	for {
		i := strings.IndexAny(rest, "&;")
		part := rest
		if i >= 0 {
			part = rest[:i]
		}
		if key, _, ok := strings.Cut(part, "="); ok && isTokenParam(key) {
			b.WriteString(key)
			b.WriteString("=REDACTED")
		} else {
			b.WriteString(part)
		}
		if i < 0 {
			return b.String()
		}
		b.WriteByte(rest[i])
		rest = rest[i+1:]
	}
}

// isTokenParam reports whether a raw (still percent-encoded) parameter name is access_token.
func isTokenParam(key string) bool {
	if key == QueryParam {
		return true
	}
	if !strings.ContainsAny(key, "%+") {
		return false
	}
	k, err := url.QueryUnescape(key)
	return err == nil && k == QueryParam
}
