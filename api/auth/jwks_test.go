package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/goleak"
)

// jwksServer serves a JWKS that tests can change at any time.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64

	mu     sync.Mutex
	status int
	body   []byte
	hold   chan struct{} // when set, requests wait for it to close or for their client to leave
}

func newJWKSServer(t *testing.T) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: []byte(`{"keys":[]}`)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body, hold := s.status, s.body, s.hold
		s.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// serve makes the server answer with a set of the public halves of keys.
func (s *jwksServer) serve(t *testing.T, keys ...jwk.Key) {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		pub, err := k.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := set.AddKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.answer(http.StatusOK, body)
}

func (s *jwksServer) answer(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// jwksVerifier makes a verifier of srv's keys. every sets the least gap between fetches caused
// by unknown kids, counted from the start of the test's first Verify (not from New).
func jwksVerifier(t *testing.T, srv *jwksServer, refresh, every time.Duration) *Verifier {
	t.Helper()
	v := newVerifier(t, Config{JWKSURL: srv.URL, JWKSRefresh: refresh})
	v.jwks.mu.Lock()
	v.jwks.forcedEvery, v.jwks.lastForced = every, time.Time{}
	v.jwks.mu.Unlock()
	return v
}

func TestJWKSVerify(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t)
	k1, k2 := privJWK(t, k.rsa, "k1"), privJWK(t, k.ed, "k2")
	srv.serve(t, k1, k2)
	v := jwksVerifier(t, srv, time.Hour, time.Hour)
	if err := v.Ready(); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	for _, tok := range []string{
		mintWith(t, k.rsa, "k1", jwa.RS256, MintClaims{Subject: "a", TTL: time.Minute}),
		mintWith(t, k.rsa, "k1", jwa.PS512, MintClaims{Subject: "a"}),
		mintWith(t, k.ed, "k2", jwa.EdDSA, MintClaims{Subject: "a"}),
		mintWith(t, k.ed, "", jwa.EdDSA, MintClaims{Subject: "a"}), // no kid: every key of the alg is tried
	} {
		if c, err := v.Verify(context.Background(), tok); err != nil || c.Subject != "a" {
			t.Fatalf("Verify = %+v, %v", c, err)
		}
	}
	// Keys are chosen by kid: k1 does not check a token that names k2.
	_, err := v.Verify(context.Background(), mintWith(t, k.rsa, "k2", jwa.RS256, MintClaims{}))
	wantErr(t, err, ErrInvalidToken)
}

// TestJWKSRotationInBackground: the background refresh alone picks up a rotated set.
func TestJWKSRotationInBackground(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t)
	srv.serve(t, privJWK(t, k.rsa, "old"))
	v := jwksVerifier(t, srv, MinJWKSRefresh, time.Hour)
	v.jwks.mu.Lock()
	v.jwks.lastForced = time.Now() // no fetch on demand: only the background refresh may act
	v.jwks.mu.Unlock()

	oldTok := mintWith(t, k.rsa, "old", jwa.RS256, MintClaims{Subject: "u"})
	newTok := mintWith(t, k.p256, "new", jwa.ES256, MintClaims{Subject: "u"})
	if _, err := v.Verify(context.Background(), oldTok); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(context.Background(), newTok)
	wantErr(t, err, ErrInvalidToken)
	if !strings.Contains(err.Error(), `"new"`) {
		t.Errorf("error %q does not name the unknown kid", err)
	}

	srv.serve(t, privJWK(t, k.p256, "new"))
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := v.Verify(context.Background(), newTok)
		return err
	})
	_, err = v.Verify(context.Background(), oldTok)
	wantErr(t, err, ErrInvalidToken) // the old key left the set
}

// TestJWKSUnknownKidFetchesOnce: a token naming a new kid makes the verifier fetch the set at
// once, but no more than once per interval however many unknown kids arrive.
func TestJWKSUnknownKidFetchesOnce(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t)
	srv.serve(t, privJWK(t, k.rsa, "k1"))
	v := jwksVerifier(t, srv, time.Hour, time.Hour)
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("%d fetches after New, want 1", got)
	}

	srv.serve(t, privJWK(t, k.rsa, "k1"), privJWK(t, k.rsa2, "k2"))
	if _, err := v.Verify(context.Background(), mintWith(t, k.rsa2, "k2", jwa.RS256, MintClaims{})); err != nil {
		t.Fatalf("token with the new kid: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2", got)
	}
	for _, kid := range []string{"k3", "k4", "k5"} {
		_, err := v.Verify(context.Background(), mintWith(t, k.rsa2, kid, jwa.RS256, MintClaims{}))
		wantErr(t, err, ErrInvalidToken)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("%d fetches after unknown kids, want still 2", got)
	}
	// A known kid with a bad signature causes no fetch either.
	_, err := v.Verify(context.Background(), mintWith(t, k.rsa, "k2", jwa.RS256, MintClaims{}))
	wantErr(t, err, ErrInvalidToken)
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2", got)
	}
}

func TestJWKSUnknownKidRejected(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t)
	srv.serve(t, privJWK(t, k.rsa, "k1"))
	v := jwksVerifier(t, srv, time.Hour, 0) // every unknown kid refetches
	for range 3 {
		_, err := v.Verify(context.Background(), mintWith(t, k.rsa, "unknown", jwa.RS256, MintClaims{}))
		wantErr(t, err, ErrInvalidToken)
	}
	if got := srv.hits.Load(); got != 4 {
		t.Errorf("%d fetches, want 4", got)
	}
}

// TestJWKSKeySelection: what in a JWKS may verify what.
func TestJWKSKeySelection(t *testing.T) {
	k := keys(t)
	pinned := privJWK(t, k.rsa, "pinned")
	_ = pinned.Set(jwk.AlgorithmKey, jwa.RS256)
	enc := privJWK(t, k.rsa2, "enc")
	_ = enc.Set(jwk.KeyUsageKey, jwk.ForEncryption)
	oct := privJWK(t, testSecret, "oct")
	weak := weakRSA(t)
	srv := newJWKSServer(t)
	srv.serve(t, pinned, enc, oct, privJWK(t, weak, "weak"), privJWK(t, k.p256, "ec"), privJWK(t, k.p384, "ec384"))
	v := jwksVerifier(t, srv, time.Hour, time.Hour)

	ok := map[string]string{
		"pinned alg":     mintWith(t, k.rsa, "pinned", jwa.RS256, MintClaims{}),
		"ES256 by kid":   mintWith(t, k.p256, "ec", jwa.ES256, MintClaims{}),
		"ES384 no kid":   mintWith(t, k.p384, "", jwa.ES384, MintClaims{}),
		"RS256 no kid":   mintWith(t, k.rsa, "", jwa.RS256, MintClaims{}),
		"kid irrelevant": mintWith(t, k.p384, "ec384", jwa.ES384, MintClaims{}),
	}
	for name, tok := range ok {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]string{
		"other alg than pinned": mintWith(t, k.rsa, "pinned", jwa.PS256, MintClaims{}),
		"encryption key":        mintWith(t, k.rsa2, "enc", jwa.RS256, MintClaims{}),
		"oct key as HMAC":       mintWith(t, testSecret, "oct", jwa.HS256, MintClaims{}),
		"weak RSA key":          mintWith(t, weak, "weak", jwa.RS256, MintClaims{}),
		"kid of another type":   mintWith(t, k.rsa, "ec", jwa.RS256, MintClaims{}),
		"EC kid wrong curve":    rawTokenES(t, k.p384, "ec"),
	}
	for name, tok := range bad {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			t.Errorf("%s: verified", name)
		}
		wantErr(t, err, ErrInvalidToken)
	}
}

// rawTokenES is an ES384 token by key naming kid: the kid "ec" names a P-256 key.
func rawTokenES(t *testing.T, key any, kid string) string {
	return mintWith(t, key, kid, jwa.ES384, MintClaims{})
}

func TestJWKSFirstFetchFails(t *testing.T) {
	k := keys(t)
	tests := map[string]func(*jwksServer){
		"status 500": func(s *jwksServer) { s.answer(http.StatusInternalServerError, []byte("oops")) },
		"status 404": func(s *jwksServer) { s.answer(http.StatusNotFound, nil) },
		"not JSON":   func(s *jwksServer) { s.answer(http.StatusOK, []byte("<html>")) },
		"too large": func(s *jwksServer) {
			s.answer(http.StatusOK, []byte(`{"keys":[`+strings.Repeat(" ", maxJWKSBytes)+`]}`))
		},
		"closed": func(s *jwksServer) { s.Close() },
	}
	for name, breakIt := range tests {
		t.Run(name, func(t *testing.T) {
			srv := newJWKSServer(t)
			breakIt(srv)
			v := jwksVerifier(t, srv, time.Hour, time.Hour)
			if err := v.Ready(); err == nil {
				t.Fatal("Ready = nil with no keys")
			}
			tok := mintWith(t, k.rsa, "k1", jwa.RS256, MintClaims{Subject: "u"})
			_, err := v.Verify(context.Background(), tok)
			wantErr(t, err, ErrInvalidToken)
		})
	}
}

// TestJWKSRecoversOnDemand: after a failed first fetch, a token gets the keys loaded.
func TestJWKSRecoversOnDemand(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t)
	srv.answer(http.StatusServiceUnavailable, nil)
	v := jwksVerifier(t, srv, time.Hour, 0)
	if err := v.Ready(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Ready = %v, want the 503", err)
	}
	tok := mintWith(t, k.rsa, "", jwa.RS256, MintClaims{Subject: "u"}) // no kid: refetch because nothing is loaded
	_, err := v.Verify(context.Background(), tok)
	wantErr(t, err, ErrInvalidToken)

	srv.serve(t, privJWK(t, k.rsa, "k1"))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if err := v.Ready(); err != nil {
		t.Fatalf("Ready = %v", err)
	}
}

// TestJWKSRecoversInBackground: after a failed first fetch, the background refresh loads keys.
func TestJWKSRecoversInBackground(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t)
	srv.answer(http.StatusInternalServerError, nil)
	v := jwksVerifier(t, srv, MinJWKSRefresh, time.Hour)
	srv.serve(t, privJWK(t, k.ed, "k1"))
	checkFor(t, 10*time.Second, 50*time.Millisecond, v.Ready)
	if _, err := v.Verify(context.Background(), mintWith(t, k.ed, "k1", jwa.EdDSA, MintClaims{})); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSEmptySetNotReady(t *testing.T) {
	srv := newJWKSServer(t) // serves {"keys":[]}
	v := jwksVerifier(t, srv, time.Hour, time.Hour)
	if err := v.Ready(); err == nil {
		t.Fatal("Ready = nil with an empty JWKS")
	}
}

// TestJWKSFetchHonoursContext: a fetch caused by Verify ends with Verify's context.
func TestJWKSFetchHonoursContext(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t)
	srv.serve(t, privJWK(t, k.rsa, "k1"))
	v := jwksVerifier(t, srv, time.Hour, 0)

	release := make(chan struct{})
	srv.mu.Lock()
	srv.hold = release
	srv.mu.Unlock()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, mintWith(t, k.rsa, "k2", jwa.RS256, MintClaims{}))
	wantErr(t, err, ErrInvalidToken)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Verify took %s past its context", d)
	}
}

// TestCloseStopsRefresh: after Close no goroutine of the verifier is left, and no fetch happens.
func TestCloseStopsRefresh(t *testing.T) {
	k := keys(t)
	srv := newJWKSServer(t)
	srv.serve(t, privJWK(t, k.rsa, "k1"))
	ignore := goleak.IgnoreCurrent()
	v, err := New(context.Background(), Config{JWKSURL: srv.URL, JWKSRefresh: MinJWKSRefresh})
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if srv.hits.Load() < 2 {
			return errors.New("no background refresh yet")
		}
		return nil
	})
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, ignore)
	hits := srv.hits.Load()
	if _, err := v.Verify(context.Background(), mintWith(t, k.rsa, "k1", jwa.RS256, MintClaims{})); err != nil {
		t.Fatalf("Verify after Close: %v", err)
	}
	if got := srv.hits.Load(); got != hits {
		t.Fatalf("fetched after Close")
	}
}
