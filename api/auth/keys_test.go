package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func x509MarshalPKCS1(k *rsa.PrivateKey) []byte { return x509.MarshalPKCS1PrivateKey(k) }

func weakRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func p224(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// selfSigned returns a PEM certificate for the public key of priv.
func selfSigned(t testing.TB, priv crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "herald test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pemEncode("CERTIFICATE", der)
}

// allKeysFile is one PEM file holding every kind of public key, in every accepted block type,
// with text around the blocks as openssl writes it.
func allKeysFile(t testing.TB) string {
	k := keys(t)
	var data []byte
	data = append(data, "RSA key, PKCS #1\n"...)
	data = append(data, pemEncode("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey))...)
	data = append(data, pemPublic(t, k.p256)...)
	data = append(data, "subject=CN = herald test\n"...)
	data = append(data, selfSigned(t, k.p384)...)
	data = append(data, pemPublic(t, k.p521)...)
	data = append(data, pemPublic(t, k.ed)...)
	return writeFile(t, data)
}

func TestVerifyPublicKeys(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{PublicKeyFiles: []string{allKeysFile(t)}})
	tests := []struct {
		alg jwa.SignatureAlgorithm
		key any
	}{
		{jwa.RS256, k.rsa}, {jwa.RS384, k.rsa}, {jwa.RS512, k.rsa},
		{jwa.PS256, k.rsa}, {jwa.PS384, k.rsa}, {jwa.PS512, k.rsa},
		{jwa.ES256, k.p256}, {jwa.ES384, k.p384}, {jwa.ES512, k.p521},
		{jwa.EdDSA, k.ed},
	}
	for _, tt := range tests {
		t.Run(tt.alg.String(), func(t *testing.T) {
			tok := mintWith(t, tt.key, "", tt.alg, MintClaims{Subject: "u", Subscribe: []string{"a:*"}, TTL: time.Hour})
			c, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != "u" || !c.CanSubscribe("a:b") {
				t.Errorf("claims = %+v", c)
			}
			// A kid does not stop a PEM key (which has none) from verifying.
			tok = mintWith(t, tt.key, "some-kid", tt.alg, MintClaims{Subject: "u"})
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("with kid: %v", err)
			}
		})
	}
}

func TestVerifyPublicKeySeveralFiles(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{PublicKeyFiles: []string{writeFile(t, pemPublic(t, k.rsa)), writeFile(t, pemPublic(t, k.rsa2))}})
	for _, key := range []*rsa.PrivateKey{k.rsa, k.rsa2} {
		if _, err := v.Verify(context.Background(), mintWith(t, key, "", jwa.RS256, MintClaims{})); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyUnknownPublicKey(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{PublicKeyFiles: []string{writeFile(t, pemPublic(t, k.rsa))}})
	_, err := v.Verify(context.Background(), mintWith(t, k.rsa2, "", jwa.RS256, MintClaims{}))
	wantErr(t, err, ErrInvalidToken)
}

// TestHMACWithPublicKeyAsSecret is the classic algorithm confusion: the attacker signs HS256
// with the (public) PEM bytes as the HMAC secret.
func TestHMACWithPublicKeyAsSecret(t *testing.T) {
	k := keys(t)
	pemBytes := pemPublic(t, k.rsa)
	der := must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))
	claims := map[string]any{"sub": "attacker", "herald": map[string]any{"publish": []string{"*"}}}
	forged := []string{
		rawToken(t, map[string]string{"alg": "HS256", "typ": "JWT"}, claims, hs256(pemBytes)),
		rawToken(t, map[string]string{"alg": "HS256", "typ": "JWT"}, claims, hs256(der)),
	}
	for name, cfg := range map[string]Config{
		"public keys only":   {PublicKeyFiles: []string{writeFile(t, pemBytes)}},
		"secret and publics": {HMACSecret: testSecret, PublicKeyFiles: []string{writeFile(t, pemBytes)}},
	} {
		t.Run(name, func(t *testing.T) {
			v := newVerifier(t, cfg)
			for _, tok := range forged {
				_, err := v.Verify(context.Background(), tok)
				t.Log(err)
				wantErr(t, err, ErrInvalidToken)
			}
		})
	}
}

// TestAlgorithmMustFitKeyType: a token is only checked against keys of its algorithm's type.
func TestAlgorithmMustFitKeyType(t *testing.T) {
	k := keys(t)
	claims := map[string]any{"sub": "u"}
	// ecdsaRaw signs with key over SHA-256 whatever the curve, as ES256 would.
	ecdsaRaw := func(key *ecdsa.PrivateKey) func([]byte) []byte {
		return func(input []byte) []byte {
			h := sha256.Sum256(input)
			r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
			if err != nil {
				t.Fatal(err)
			}
			size := (key.Curve.Params().BitSize + 7) / 8
			sig := make([]byte, 2*size)
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
			return sig
		}
	}
	rsaPKCS1 := func(input []byte) []byte {
		h := sha256.Sum256(input)
		return must(rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA256, h[:]))
	}

	v := newVerifier(t, Config{
		HMACSecret:     testSecret,
		PublicKeyFiles: []string{writeFile(t, append(append(pemPublic(t, k.rsa), pemPublic(t, k.p256)...), pemPublic(t, k.p384)...))},
	})
	tests := map[string]string{
		// ES256 in the header, signed by the P-384 key: only P-256 keys may check ES256.
		"ES256 by a P-384 key": rawToken(t, map[string]string{"alg": "ES256"}, claims, ecdsaRaw(k.p384)),
		// ES384 in the header, signed by the P-256 key.
		"ES384 by a P-256 key": rawToken(t, map[string]string{"alg": "ES384"}, claims, ecdsaRaw(k.p256)),
		// PKCS #1 v1.5 signature labelled PS256.
		"PS256 over an RS256 signature": rawToken(t, map[string]string{"alg": "PS256"}, claims, rsaPKCS1),
		// An RSA signature labelled EdDSA or ES256.
		"EdDSA over an RSA signature": rawToken(t, map[string]string{"alg": "EdDSA"}, claims, rsaPKCS1),
		"ES256 over an RSA signature": rawToken(t, map[string]string{"alg": "ES256"}, claims, rsaPKCS1),
		// An HMAC labelled RS256.
		"RS256 over an HMAC": rawToken(t, map[string]string{"alg": "RS256"}, claims, hs256(testSecret)),
		// No Ed25519 key is configured.
		"EdDSA": mintWith(t, k.ed, "", jwa.EdDSA, MintClaims{}),
		// No P-521 key is configured.
		"ES512": mintWith(t, k.p521, "", jwa.ES512, MintClaims{}),
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tok)
			wantErr(t, err, ErrInvalidToken)
		})
	}

	// The same signatures under their right labels do verify: the refusals above are the label.
	for name, tok := range map[string]string{
		"ES256 by P-256": rawToken(t, map[string]string{"alg": "ES256"}, claims, ecdsaRaw(k.p256)),
		"RS256":          rawToken(t, map[string]string{"alg": "RS256"}, claims, rsaPKCS1),
		"HS256":          rawToken(t, map[string]string{"alg": "HS256"}, claims, hs256(testSecret)),
	} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestEmbeddedKeyHeadersIgnored: a token carrying its own key (jwk, jku, x5u) is checked against
// the configured keys only.
func TestEmbeddedKeyHeadersIgnored(t *testing.T) {
	k := keys(t)
	attacker := k.rsa2
	pub := privJWK(t, &attacker.PublicKey, "evil")
	v := newVerifier(t, Config{PublicKeyFiles: []string{writeFile(t, pemPublic(t, k.rsa))}})
	claims := map[string]any{"sub": "attacker"}
	sign := func(input []byte) []byte {
		h := sha256.Sum256(input)
		return must(rsa.SignPKCS1v15(rand.Reader, attacker, crypto.SHA256, h[:]))
	}
	for _, hdr := range []map[string]any{
		{"alg": "RS256", "jwk": pub},
		{"alg": "RS256", "kid": "evil", "jku": "https://evil.example/jwks.json"},
		{"alg": "RS256", "x5u": "https://evil.example/cert.pem"},
	} {
		_, err := v.Verify(context.Background(), rawToken(t, hdr, claims, sign))
		wantErr(t, err, ErrInvalidToken)
	}
}
