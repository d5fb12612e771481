package auth

import (
	"context"
	"testing"
	"time"
)

// TestIdempotencyKeyIsTheCredentials: the broker's key for a client's idempotency key is the
// same for every retry of one credential and differs between credentials.
func TestIdempotencyKeyIsTheCredentials(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret, APIKeys: []string{"backend-key-1", "backend-key-2"}})
	mint := func(c MintClaims) string {
		t.Helper()
		c.TTL = time.Hour
		tok, err := MintHMAC(testSecret, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	keyOf := func(token, clientKey string) string {
		t.Helper()
		c, err := v.Verify(context.Background(), token)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		return c.IdempotencyKey(clientKey)
	}
	backend := mint(MintClaims{Subject: "backend", Publish: []string{"*"}})
	// A re-minted token of the same subject (another exp, other permissions) is the same
	// publisher: its retry must be recognised.
	backendAgain := mint(MintClaims{Subject: "backend", Publish: []string{"orders:*"}, NotBefore: time.Now().Add(-time.Minute)})
	user := mint(MintClaims{Subject: "u42", Publish: []string{"orders:*"}})
	otherIssuer := mint(MintClaims{Subject: "backend", Issuer: "elsewhere", Publish: []string{"*"}})
	anonymous := mint(MintClaims{Publish: []string{"*"}})
	anonymous2 := mint(MintClaims{Publish: []string{"*"}, NotBefore: time.Now().Add(-time.Minute)})

	k := keyOf(backend, "order-7")
	if len(k) != 43 || keyOf(backend, "order-7") != k || keyOf(backendAgain, "order-7") != k {
		t.Fatalf("the same subject's key is not stable: %q, %q, %q", k, keyOf(backend, "order-7"), keyOf(backendAgain, "order-7"))
	}
	if keyOf(backend, "order-8") == k {
		t.Error("two client keys of one credential give one key")
	}
	distinct := map[string]string{"backend": k}
	for name, got := range map[string]string{
		"another subject":              keyOf(user, "order-7"),
		"the same subject elsewhere":   keyOf(otherIssuer, "order-7"),
		"a token without a subject":    keyOf(anonymous, "order-7"),
		"another token without one":    keyOf(anonymous2, "order-7"),
		"API key 1":                    keyOf("backend-key-1", "order-7"),
		"API key 2":                    keyOf("backend-key-2", "order-7"),
		"claims not from the verifier": (&Claims{APIKey: true}).IdempotencyKey("order-7"),
	} {
		for prev, key := range distinct {
			if got == key {
				t.Errorf("%s and %s share the key %q", name, prev, got)
			}
		}
		distinct[name] = got
	}
	if keyOf(anonymous, "order-7") != distinct["a token without a subject"] || keyOf("backend-key-1", "order-7") != distinct["API key 1"] {
		t.Error("a credential's retry gives another key")
	}
	if keyOf(backend, "") != "" {
		t.Error("no client key gives a key")
	}
}

// TestIdempotencyScopeIsUnambiguous: the identity's parts cannot be shifted into one another.
func TestIdempotencyScopeIsUnambiguous(t *testing.T) {
	a := &Claims{idempotencyScope: jwtScope("ab", "c", "")}
	b := &Claims{idempotencyScope: jwtScope("a", "bc", "")}
	if a.IdempotencyKey("k") == b.IdempotencyKey("k") {
		t.Error("issuer ab, subject c and issuer a, subject bc share keys")
	}
	c := &Claims{idempotencyScope: jwtScope("", "s\x00x", "")}
	d := &Claims{idempotencyScope: jwtScope("", "s", "")}
	if c.IdempotencyKey("k") == d.IdempotencyKey("x\x00k") {
		t.Error("a subject's tail and a client key's head can be exchanged")
	}
}

// TestIdentityIsTheCredentials: Identity, which per-credential limits are keyed by, follows
// the same rule as the idempotency scope: stable across the tokens of one subject and the
// requests of one API key, distinct between credentials.
func TestIdentityIsTheCredentials(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret, APIKeys: []string{"backend-key-1", "backend-key-2"}})
	idOf := func(c MintClaims) Identity {
		t.Helper()
		c.TTL = time.Hour
		tok, err := MintHMAC(testSecret, c)
		if err != nil {
			t.Fatal(err)
		}
		return verifiedIdentity(t, v, tok)
	}
	backend := idOf(MintClaims{Subject: "backend", Publish: []string{"*"}})
	if again := idOf(MintClaims{Subject: "backend", Publish: []string{"x"}, NotBefore: time.Now().Add(-time.Minute)}); again != backend {
		t.Fatal("a re-minted token of the same subject has another identity")
	}
	if first := verifiedIdentity(t, v, "backend-key-1"); verifiedIdentity(t, v, "backend-key-1") != first {
		t.Fatal("an API key's identity is not stable")
	}
	seen := map[Identity]string{backend: "backend", {}: "the zero identity"}
	for name, id := range map[string]Identity{
		"another subject":            idOf(MintClaims{Subject: "u42"}),
		"the same subject elsewhere": idOf(MintClaims{Subject: "backend", Issuer: "elsewhere"}),
		"a token without a subject":  idOf(MintClaims{Publish: []string{"*"}}),
		"another token without one":  idOf(MintClaims{Publish: []string{"*"}, NotBefore: time.Now().Add(-time.Minute)}),
		"API key 1":                  verifiedIdentity(t, v, "backend-key-1"),
		"API key 2":                  verifiedIdentity(t, v, "backend-key-2"),
	} {
		if prev, dup := seen[id]; dup {
			t.Errorf("%s and %s share an identity", name, prev)
		}
		seen[id] = name
	}
	if (*Claims)(nil).Identity() != (Identity{}) {
		t.Error("nil claims have an identity")
	}
}

func verifiedIdentity(t *testing.T, v *Verifier, token string) Identity {
	t.Helper()
	c, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return c.Identity()
}
