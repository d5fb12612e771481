package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testSecret is a valid HMAC secret for tests.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// testKeys are private keys generated once per test binary: RSA generation is slow under -race.
type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	p256      *ecdsa.PrivateKey
	p384      *ecdsa.PrivateKey
	p521      *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	theKeys  testKeys
)

func keys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		theKeys = testKeys{
			rsa:  must(rsa.GenerateKey(rand.Reader, 2048)),
			rsa2: must(rsa.GenerateKey(rand.Reader, 2048)),
			p256: must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
			p384: must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)),
			p521: must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)),
			ed:   must(ed, err),
		}
	})
	return &theKeys
}

// must returns v, panicking on err (for package-level test fixtures).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// pemPublic encodes the public key of priv as a PKIX "PUBLIC KEY" block.
func pemPublic(t testing.TB, priv any) []byte {
	t.Helper()
	pub := priv.(crypto.Signer).Public()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// writeFile writes data to a new file in a test directory and returns its path.
func writeFile(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// privJWK converts a raw private key into a jwk.Key with kid ("" for none).
func privJWK(t testing.TB, raw any, kid string) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// mintWith mints a token or fails the test.
func mintWith(t testing.TB, raw any, kid string, alg jwa.SignatureAlgorithm, c MintClaims) string {
	t.Helper()
	tok, err := Mint(privJWK(t, raw, kid), alg, c)
	if err != nil {
		t.Fatalf("Mint %s: %v", alg, err)
	}
	return tok
}

// mintHMAC mints an HS256 token with testSecret or fails the test.
func mintHMAC(t testing.TB, c MintClaims) string {
	t.Helper()
	tok, err := MintHMAC(testSecret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newVerifier makes a Verifier closed at the end of the test.
func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	v, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// b64 is the JWS base64url encoding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rawToken assembles a compact JWS from a header and claims, signing the signing input with sign
// (nil: an empty signature). It lets tests build tokens jwx would refuse to sign.
func rawToken(t testing.TB, header, claims any, sign func(input []byte) []byte) string {
	t.Helper()
	enc := func(v any) string {
		if s, ok := v.(string); ok {
			return b64([]byte(s))
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b64(b)
	}
	input := enc(header) + "." + enc(claims)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64(sig)
}

// hs256 signs with HMAC-SHA256 under key.
func hs256(key []byte) func([]byte) []byte {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(input)
		return m.Sum(nil)
	}
}

// checkFor calls fn every `every` until it returns nil or `total` has passed, then fails the
// test with fn's last error.
func checkFor(t testing.TB, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", total, err)
		}
		time.Sleep(every)
	}
}

// wantErr fails the test unless err wraps want.
func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}
