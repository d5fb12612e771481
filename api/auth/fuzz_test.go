package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

var (
	fuzzOnce     sync.Once
	fuzzVerifier *Verifier
)

// fuzzTarget is a verifier with every kind of static key, shared by all fuzz inputs. It has no
// JWKS, so it starts no goroutine and needs no Close.
func fuzzTarget(t testing.TB) *Verifier {
	fuzzOnce.Do(func() {
		k := keys(t)
		var pems []byte
		for _, priv := range []any{k.rsa, k.p256, k.p384, k.p521, k.ed} {
			pems = append(pems, pemPublic(t, priv)...)
		}
		v, err := New(context.Background(), Config{
			HMACSecret:     testSecret,
			PublicKeyFiles: []string{writeFile(t, pems)},
			APIKeys:        []string{"fuzz-api-key-0001"},
			Issuer:         "fuzz",
		})
		if err != nil {
			panic(err)
		}
		fuzzVerifier = v
	})
	return fuzzVerifier
}

func FuzzVerify(f *testing.F) {
	k := keys(f)
	claims := MintClaims{Subject: "u", Subscribe: []string{"a:*"}, Publish: []string{"b"}, TTL: time.Hour, Issuer: "fuzz"}
	seeds := []string{
		"",
		"fuzz-api-key-0001",
		"a.b.c",
		"..",
		"eyJhbGciOiJub25lIn0.e30.",
		`{"payload":"e30","signatures":[]}`,
		mintHMAC(f, claims),
		mintHMAC(f, MintClaims{Issuer: "fuzz", TTL: -time.Hour}),
		mintWith(f, k.rsa, "", jwa.PS256, claims),
		mintWith(f, k.p256, "kid", jwa.ES256, claims),
		mintWith(f, k.ed, "", jwa.EdDSA, claims),
		rawToken(f, map[string]any{"alg": "HS256", "crit": []string{"b64"}, "b64": false}, "{}", hs256(testSecret)),
		rawToken(f, map[string]string{"alg": "HS256"}, map[string]any{"iss": "fuzz", "herald": map[string]any{"subscribe": "x"}}, hs256(testSecret)),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	v := fuzzTarget(f)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err == nil {
			if c == nil {
				t.Fatal("nil claims without error")
			}
			return
		}
		if c != nil {
			t.Fatal("claims with an error")
		}
		if !errors.Is(err, ErrNoToken) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("error %v wraps none of the sentinels", err)
		}
		// The signature never appears in a message. (Header values such as kid may, quoted and
		// cut short; and a fuzzed input may happen to spell words of a message, so the other
		// parts are checked by TestErrorsNeverContainToken instead.)
		if parts := strings.Split(token, "."); len(parts) == 3 && len(parts[2]) >= 16 && strings.Contains(err.Error(), parts[2]) {
			t.Fatalf("error %q shows the signature", err)
		}
	})
}
