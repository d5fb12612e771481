package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

func TestMintHMACShortSecret(t *testing.T) {
	if _, err := MintHMAC([]byte("short"), MintClaims{}); err == nil {
		t.Fatal("minted with a 5-byte secret")
	}
}

func TestMintNilKey(t *testing.T) {
	if _, err := Mint(nil, jwa.RS256, MintClaims{}); err == nil {
		t.Fatal("minted without a key")
	}
}

func TestMintPublicKeyFails(t *testing.T) {
	if _, err := Mint(privJWK(t, &keys(t).rsa.PublicKey, ""), jwa.RS256, MintClaims{}); err == nil {
		t.Fatal("minted with a public key")
	}
}

// TestMintLayout checks the claims set a minted token carries.
func TestMintLayout(t *testing.T) {
	nbf := time.Now().Add(-time.Minute).Truncate(time.Second)
	tok := mintHMAC(t, MintClaims{
		Subject: "user-9", Subscribe: []string{"orders:42"}, Publish: nil,
		TTL: time.Hour, Issuer: "herald", Audience: "clients", NotBefore: nbf,
	})
	parts := strings.Split(tok, ".")
	var header map[string]any
	var claims map[string]any
	decode(t, parts[0], &header)
	decode(t, parts[1], &claims)
	if header["alg"] != "HS256" {
		t.Errorf("header = %v", header)
	}
	if claims["sub"] != "user-9" || claims["iss"] != "herald" || claims["nbf"] != float64(nbf.Unix()) {
		t.Errorf("claims = %v", claims)
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != "clients" {
		if claims["aud"] != "clients" {
			t.Errorf("aud = %v", claims["aud"])
		}
	}
	for _, name := range []string{"exp", "iat"} {
		if _, ok := claims[name].(float64); !ok {
			t.Errorf("%s = %v", name, claims[name])
		}
	}
	herald, _ := claims["herald"].(map[string]any)
	if sub, _ := herald["subscribe"].([]any); len(sub) != 1 || sub[0] != "orders:42" {
		t.Errorf("herald = %v", herald)
	}
	if pub, ok := herald["publish"].([]any); !ok || len(pub) != 0 {
		t.Errorf("publish = %#v, want []", herald["publish"])
	}

	v := newVerifier(t, Config{HMACSecret: testSecret, Issuer: "herald", Audience: "clients"})
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "user-9" || !c.CanSubscribe("orders:42") || c.CanPublish("orders:42") {
		t.Errorf("claims = %+v", c)
	}
}

func TestMintWithoutTTLHasNoExp(t *testing.T) {
	var claims map[string]any
	decode(t, strings.Split(mintHMAC(t, MintClaims{Subject: "backend"}), ".")[1], &claims)
	if _, ok := claims["exp"]; ok {
		t.Errorf("exp = %v, want none", claims["exp"])
	}
}

func TestMintKidInHeader(t *testing.T) {
	var header map[string]any
	decode(t, strings.Split(mintWith(t, keys(t).ed, "key-7", jwa.EdDSA, MintClaims{}), ".")[0], &header)
	if header["kid"] != "key-7" || header["alg"] != "EdDSA" {
		t.Errorf("header = %v", header)
	}
}

func decode(t *testing.T, part string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
