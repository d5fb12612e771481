package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// A hostile client attacks herald's credentials and error answers: tokens that name their own
// key, bad tokens of every kind, a message store that is down, and pages on other origins.

const authcSecret = "hostile-auth-secret-0123456789abcdefghij"

// authcKeys are the asymmetric keys of the tests, with the PEM file herald is configured with.
type authcKeys struct {
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	certDER []byte // a self-signed certificate of the RSA key
	pemFile string
}

func authcNewKeys(t *testing.T) *authcKeys {
	t.Helper()
	k := &authcKeys{}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if k.certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.rsa.PublicKey, k.rsa); err != nil {
		t.Fatal(err)
	}
	var file []byte
	for _, pub := range []any{&k.rsa.PublicKey, &k.ec.PublicKey} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		file = append(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	k.pemFile = filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(k.pemFile, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// authcSign makes a compact JWS of header and claims, signed by alg (HS256 with authcSecret,
// RS256 or ES256 with k's keys), the way an attacker's own code would.
func authcSign(t *testing.T, k *authcKeys, alg string, header, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	for name, v := range header {
		h[name] = v
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(h) + "." + enc(claims)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch alg {
	case "HS256":
		m := hmac.New(sha256.New, []byte(authcSecret))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA256, sum[:])
	case "ES256":
		var r, s *big.Int
		if r, s, err = ecdsa.Sign(rand.Reader, k.ec, sum[:]); err == nil {
			sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// authcClaims allow everything for an hour.
func authcClaims() map[string]any {
	return map[string]any{"sub": "attacker", "exp": time.Now().Add(time.Hour).Unix(),
		"herald": map[string]any{"subscribe": []string{"*"}, "publish": []string{"*"}}}
}

// authcWSHeaders are the headers of a WebSocket upgrade request.
func authcWSHeaders(token string) map[string]string {
	h := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	return h
}

// authcRefusals sends token over every route that takes one: the HTTP API, SSE, long-poll and
// the WebSocket upgrade. It returns the answers by route.
func authcRefusals(t *testing.T, s *server, token string) map[string]httpAnswer {
	t.Helper()
	bearer := bearer(token)
	return map[string]httpAnswer{
		"history": httpDo(t, "GET", s.base+"/v1/channels/a/messages", bearer),
		"sse":     httpDo(t, "GET", s.base+"/v1/sse?channel=a", bearer),
		"poll":    httpDo(t, "GET", s.base+"/v1/poll?channel=a&timeout=0", bearer),
		"ws":      httpDo(t, "GET", s.base+"/v1/ws", authcWSHeaders(token)),
	}
}

// authcAuthFrame connects a WebSocket without a credential, sends token in an auth frame and
// returns the first frame's type, or the close code and reason the server ended with.
func authcAuthFrame(t *testing.T, s *server, token string) (typ string, code ws.StatusCode, reason string) {
	t.Helper()
	c := dialWS(t, s, wsOpts{})
	defer c.conn.Close()
	c.send(map[string]string{"type": "auth", "token": token})
	c.within(10 * time.Second)
	m, err := c.readJSON()
	var closed wsutil.ClosedError
	if errors.As(err, &closed) {
		return "", closed.Code, closed.Reason
	}
	if err != nil {
		t.Fatalf("auth frame: %v", err)
	}
	typ, _ = m["type"].(string)
	return typ, 0, ""
}

// TestHostileTokenKeyHeaders: tokens signed with a configured key (HMAC, RSA, EC) that carry a
// jwk, jku, x5u or x5c header are refused as invalid on every route and in the auth frame; the
// same tokens without the header are accepted.
func TestHostileTokenKeyHeaders(t *testing.T) {
	k := authcNewKeys(t)
	s := startServer(t, freePort(t), "--jwt-secret", authcSecret, "--jwt-public-key-file", k.pemFile)
	rsaJWK := map[string]any{"kty": "RSA",
		"n": base64.RawURLEncoding.EncodeToString(k.rsa.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.rsa.E)).Bytes())}
	headers := map[string]any{
		"jwk": rsaJWK,
		"jku": "https://attacker.example/jwks.json",
		"x5u": "https://attacker.example/cert.pem",
		"x5c": []string{base64.StdEncoding.EncodeToString(k.certDER)},
	}
	for _, alg := range []string{"HS256", "RS256", "ES256"} {
		plain := authcSign(t, k, alg, nil, authcClaims())
		if a := httpDo(t, "GET", s.base+"/v1/channels/a/messages", bearer(plain)); a.status != 200 {
			t.Fatalf("%s without a key header: %d %s", alg, a.status, a.body)
		}
		if typ, code, reason := authcAuthFrame(t, s, plain); typ != "connected" {
			t.Fatalf("%s without a key header, auth frame: closed %d %q", alg, code, reason)
		}
		for name, value := range headers {
			tok := authcSign(t, k, alg, map[string]any{name: value}, authcClaims())
			for route, a := range authcRefusals(t, s, tok) {
				if a.status != 401 || a.typ != "invalid-token" {
					t.Errorf("%s token with %s header, %s: %d %q %s", alg, name, route, a.status, a.typ, a.body)
				}
			}
			if typ, code, _ := authcAuthFrame(t, s, tok); code != 1008 {
				t.Errorf("%s token with %s header, auth frame: %q, close %d; want close 1008", alg, name, typ, code)
			}
		}
	}
	if !strings.Contains(s.logs(), "jku header is not accepted") {
		t.Errorf("the log does not say why the tokens were refused: %s", s.logs())
	}
}

// TestHostileAuthErrorsAreGeneric: bad tokens of every kind get the same generic text on every
// transport, naming neither the configured issuer or audience nor the keys; the log has the
// reason and never the token.
func TestHostileAuthErrorsAreGeneric(t *testing.T) {
	const issuer, audience = "iss-that-must-stay-private", "aud-that-must-stay-private"
	s := startServer(t, freePort(t), "--jwt-secret", authcSecret, "--jwt-issuer", issuer, "--jwt-audience", audience)
	k := authcNewKeys(t)
	mint := func(secret string, c auth.MintClaims) string {
		tok, err := auth.MintHMAC([]byte(secret), c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := auth.MintClaims{Subscribe: []string{"*"}, TTL: time.Hour, Issuer: issuer, Audience: audience}
	with := func(f func(*auth.MintClaims)) auth.MintClaims { c := good; f(&c); return c }
	rs256 := authcClaims()
	rs256["iss"], rs256["aud"] = issuer, audience
	cases := []struct {
		name, token, logged string
		expired             bool
	}{
		{"expired", mint(authcSecret, with(func(c *auth.MintClaims) { c.TTL = -time.Hour })), "is more than 30s ago", true},
		{"wrong signature", mint("another-secret-0123456789abcdefghijklmn", good), "signature does not verify", false},
		{"wrong issuer", mint(authcSecret, with(func(c *auth.MintClaims) { c.Issuer = "someone-else" })), "is not the configured one", false},
		{"wrong audience", mint(authcSecret, with(func(c *auth.MintClaims) { c.Audience = "someone-else" })), "audience does not include", false},
		{"no key for its algorithm", authcSign(t, k, "RS256", nil, rs256), "no RS256 key is configured", false},
		{"malformed", "not-a-jwt-at-all", "not a JWT", false},
	}
	for _, c := range cases {
		typ, detail := "invalid-token", "the token is not valid"
		code := ws.StatusCode(1008)
		if c.expired {
			typ, detail, code = "token-expired", "the token has expired", 4001
		}
		for route, a := range authcRefusals(t, s, c.token) {
			if a.status != 401 || a.typ != typ || a.detail != detail {
				t.Errorf("%s, %s: %d %q %q; want 401 %s %q", c.name, route, a.status, a.typ, a.detail, typ, detail)
			}
			if !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("%s, %s: WWW-Authenticate %q", c.name, route, a.header.Get("WWW-Authenticate"))
			}
		}
		if _, got, reason := authcAuthFrame(t, s, c.token); got != code || reason != detail {
			t.Errorf("%s, auth frame: close %d %q; want %d %q", c.name, got, reason, code, detail)
		}
		waitUntil(t, 5*time.Second, func() bool { return strings.Contains(s.logs(), c.logged) },
			"the log to say %q (log: %s)", c.logged, s.logs)
		if strings.Contains(s.logs(), c.token) {
			t.Fatalf("%s: the log holds the token", c.name)
		}
	}
}

// TestHostileStoreErrorsAreGeneric: with Valkey stopped, SSE, long-poll, WebSocket subscribes and
// history answer that the store is unavailable, without the store's own error text (which names
// its address); the log has that text.
func TestHostileStoreErrorsAreGeneric(t *testing.T) {
	v := valkeytest.StartServer(t)
	s := startNode(t, v.URL(), "--valkey-timeout", "300ms")
	c := dialWS(t, s, wsOpts{query: s.sub})
	v.Stop()

	const detail = "the message store is unavailable, retry shortly"
	leaks := []string{v.Addr(), "refused", "dial", "broker", "valkey", "timeout", "deadline"}
	check := func(what, got string) {
		t.Helper()
		if got != detail {
			t.Errorf("%s: detail %q, want %q", what, got, detail)
		}
	}
	token := bearer(s.sub)
	for route, path := range map[string]string{
		"sse":     "/v1/sse?channel=down-sse",
		"poll":    "/v1/poll?channel=down-poll&timeout=0",
		"history": "/v1/channels/down-history/messages",
	} {
		a := httpDo(t, "GET", s.base+path, token)
		if a.status != 503 || a.typ != "unavailable" || a.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %q %s", route, a.status, a.typ, a.body)
		}
		check(route, a.detail)
		for _, leak := range leaks {
			if strings.Contains(strings.ToLower(a.body), leak) {
				t.Errorf("%s: the answer holds %q: %s", route, leak, a.body)
			}
		}
	}
	c.send([]byte(`{"type":"subscribe","id":1,"channel":"down-ws"}`))
	c.within(10 * time.Second)
	for {
		m, err := c.readJSON()
		if err != nil {
			t.Fatalf("waiting for the subscribe's answer: %v", err)
		}
		if m["type"] != "error" && m["type"] != "subscribed" {
			continue
		}
		if m["type"] != "error" || m["code"] != "unavailable" {
			t.Fatalf("subscribe with the store down: %v", m)
		}
		message, _ := m["message"].(string)
		check("websocket subscribe", message)
		break
	}
	waitUntil(t, 5*time.Second, func() bool {
		logs := s.logs()
		return strings.Contains(logs, "message store unavailable") && strings.Contains(logs, "transport=websocket") &&
			strings.Contains(logs, "transport=sse") && strings.Contains(logs, "transport=poll")
	}, "the log to hold the store's errors per transport (log: %s)", s.logs)
}

// authcCORS is what a browser would make of an answer: the CORS headers it reads.
func authcCORS(a httpAnswer) string {
	return a.header.Get("Access-Control-Allow-Origin") + "|" + a.header.Get("Access-Control-Allow-Credentials")
}

// authcWSFirst upgrades /v1/ws with the given headers, sends a subscribe and returns the first
// frame's type and code: "connected" when the upgrade was authenticated, an error with code
// "unauthenticated" when it was not.
func authcWSFirst(t *testing.T, s *server, header http.Header) string {
	t.Helper()
	c := dialWS(t, s, wsOpts{header: header, timeout: 5 * time.Second})
	defer c.conn.Close()
	c.send([]byte(`{"type":"subscribe","id":1,"channel":"secret"}`))
	c.within(5 * time.Second)
	m, err := c.readJSON()
	if err != nil {
		t.Fatalf("first frame: %v", err)
	}
	typ, _ := m["type"].(string)
	code, _ := m["code"].(string)
	return strings.TrimSuffix(typ+" "+code, " ")
}

// TestHostileCORS: a page on another origin must not read its visitors' history and streams
// with their herald_token cookie. Without --allowed-origins every origin gets
// Access-Control-Allow-Origin: * without credentials and the cookie does not count for it (a
// token the page holds still works); with a list, only listed origins get credentials and the
// cookie, and null is never listed implicitly.
func TestHostileCORS(t *testing.T) {
	open := startServer(t, freePort(t), "--jwt-secret", authcSecret)
	listed := startServer(t, freePort(t), "--jwt-secret", authcSecret, "--allowed-origins", "https://shop.example")
	tok, err := auth.MintHMAC([]byte(authcSecret), auth.MintClaims{Subscribe: []string{"*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cookie := "herald_token=" + tok
	const evil, shop = "https://evil.example", "https://shop.example"
	routes := map[string]string{
		"history": "/v1/channels/secret/messages",
		"sse":     "/v1/sse?channel=secret",
		"poll":    "/v1/poll?channel=secret&timeout=0",
	}
	type want struct {
		status int
		cors   string // Access-Control-Allow-Origin|Access-Control-Allow-Credentials
		ws     string // first WebSocket frame after a subscribe, for the same headers
	}
	self := func(s *server) string { return s.base } // the page herald itself serves
	cases := []struct {
		name   string
		s      *server
		origin string
		bearer bool
		want   want
	}{
		{"no list, other origin, cookie", open, evil, false, want{401, "*|", "error unauthenticated"}},
		{"no list, null origin, cookie", open, "null", false, want{401, "*|", "error unauthenticated"}},
		{"no list, other origin, its own token", open, evil, true, want{200, "*|", "connected"}},
		{"no list, own origin, cookie", open, self(open), false, want{200, "*|", "connected"}},
		{"no list, no Origin, cookie", open, "", false, want{200, "|", "connected"}},
		{"listed origin, cookie", listed, shop, false, want{200, shop + "|true", "connected"}},
		{"unlisted origin, cookie", listed, evil, false, want{403, "|", ""}},
		{"null origin not listed, cookie", listed, "null", false, want{403, "|", ""}},
	}
	for _, c := range cases {
		h := map[string]string{"Cookie": cookie}
		if c.origin != "" {
			h["Origin"] = c.origin
		}
		if c.bearer {
			h["Authorization"] = "Bearer " + tok
		}
		for route, path := range routes {
			a := httpDo(t, "GET", c.s.base+path, h)
			if a.status != c.want.status || authcCORS(a) != c.want.cors {
				t.Errorf("%s, %s: %d with CORS %q; want %d %q (%s)", c.name, route, a.status, authcCORS(a), c.want.status, c.want.cors, a.body)
			}
			if c.want.status == 403 && a.typ != "origin-not-allowed" {
				t.Errorf("%s, %s: problem %q", c.name, route, a.typ)
			}
		}
		wh := http.Header{}
		for k, v := range h {
			wh.Set(k, v)
		}
		if c.want.ws == "" {
			if a := httpDo(t, "GET", c.s.base+"/v1/ws", authcMerge(authcWSHeaders(""), h)); a.status != 403 || a.typ != "origin-not-allowed" {
				t.Errorf("%s, websocket: %d %q", c.name, a.status, a.typ)
			}
		} else if got := authcWSFirst(t, c.s, wh); got != c.want.ws {
			t.Errorf("%s, websocket: first frame %q, want %q", c.name, got, c.want.ws)
		}
	}

	// Preflights follow the same rule.
	for _, c := range []struct {
		name   string
		s      *server
		origin string
		status int
		cors   string
	}{
		{"no list, other origin", open, evil, 204, "*|"},
		{"no list, null", open, "null", 204, "*|"},
		{"listed origin", listed, shop, 204, shop + "|true"},
		{"unlisted origin", listed, evil, 403, "|"},
		{"null not listed", listed, "null", 403, "|"},
	} {
		for route, path := range routes {
			a := httpDo(t, "OPTIONS", c.s.base+path, map[string]string{"Origin": c.origin,
				"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
			if a.status != c.status || authcCORS(a) != c.cors {
				t.Errorf("preflight, %s, %s: %d with CORS %q; want %d %q", c.name, route, a.status, authcCORS(a), c.status, c.cors)
			}
		}
	}
}

// authcMerge returns a with the entries of b added.
func authcMerge(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}
