package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		header string // Authorization
		cookie string
		// noCookie: the caller does not let the cookie count (a page on another origin)
		noCookie bool
		want     string
	}{
		{name: "none", url: "/v1/sse", want: ""},
		{name: "bearer", url: "/", header: "Bearer tok-h", want: "tok-h"},
		{name: "bearer lower case", url: "/", header: "bearer tok-h", want: "tok-h"},
		{name: "bearer extra spaces", url: "/", header: "Bearer   tok-h  ", want: "tok-h"},
		{name: "query", url: "/?channel=a&access_token=tok-q", want: "tok-q"},
		{name: "cookie", url: "/", cookie: "tok-c", want: "tok-c"},
		{name: "header wins", url: "/?access_token=tok-q", header: "Bearer tok-h", cookie: "tok-c", want: "tok-h"},
		{name: "query before cookie", url: "/?access_token=tok-q", cookie: "tok-c", want: "tok-q"},
		{name: "basic is not bearer", url: "/?access_token=tok-q", header: "Basic dXNlcjpwdw==", want: "tok-q"},
		{name: "empty bearer falls through", url: "/", header: "Bearer ", cookie: "tok-c", want: "tok-c"},
		{name: "scheme only", url: "/", header: "Bearer", want: ""},
		{name: "empty query value", url: "/?access_token=", cookie: "tok-c", want: "tok-c"},
		{name: "cookie not allowed", url: "/", cookie: "tok-c", noCookie: true, want: ""},
		{name: "cookie not allowed, header", url: "/", header: "Bearer tok-h", cookie: "tok-c", noCookie: true, want: "tok-h"},
		{name: "cookie not allowed, query", url: "/?access_token=tok-q", cookie: "tok-c", noCookie: true, want: "tok-q"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.url, nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: CookieName, Value: tt.cookie})
			}
			if got := FromRequest(r, !tt.noCookie); got != tt.want {
				t.Errorf("FromRequest = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRedactQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"channel=a", "channel=a"},
		{"access_token=abc.def.ghi", "access_token=REDACTED"},
		{"channel=a&access_token=abc&since=0", "channel=a&access_token=REDACTED&since=0"},
		{"access_token=a&access_token=b", "access_token=REDACTED&access_token=REDACTED"},
		{"access_token=", "access_token=REDACTED"},
		{"access_token", "access_token"}, // no value to hide
		{"access%5Ftoken=abc", "access%5Ftoken=REDACTED"},
		{"access%5ftoken=abc", "access%5ftoken=REDACTED"},
		{"channel=a;access_token=abc", "channel=a;access_token=REDACTED"},
		{"access_token=abc;channel=a", "access_token=REDACTED;channel=a"},
		{"my_access_token=abc", "my_access_token=abc"},
		{"access_tokens=abc", "access_tokens=abc"},
		{"x=access_token=abc", "x=access_token=abc"},
		{"&&access_token=abc&", "&&access_token=REDACTED&"},
		{"access_token=a%26b&c=d", "access_token=REDACTED&c=d"},
	}
	for _, tt := range tests {
		if got := RedactQuery(tt.in); got != tt.want {
			t.Errorf("RedactQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRedactQueryHidesWhatFromRequestReads: whatever token FromRequest takes from the query is
// gone from the redacted query.
func TestRedactQueryHidesWhatFromRequestReads(t *testing.T) {
	for _, q := range []string{
		"access_token=secret-token-1",
		"a=1&access%5Ftoken=secret-token-1",
		"access_token=secret-token-1&access_token=other",
		"b=2&access_token=secret%2Dtoken-1",
	} {
		r := httptest.NewRequest(http.MethodGet, "/?"+q, nil)
		tok := FromRequest(r, true)
		if tok == "" {
			t.Fatalf("%q: FromRequest found nothing", q)
		}
		if red := RedactQuery(q); strings.Contains(red, tok) || strings.Contains(red, "secret") {
			t.Errorf("RedactQuery(%q) = %q still shows the token", q, red)
		}
	}
}
