package auth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func hmacVerifier(t *testing.T) *Verifier {
	return newVerifier(t, Config{HMACSecret: testSecret})
}

func TestVerifyHMAC(t *testing.T) {
	v := hmacVerifier(t)
	tok := mintHMAC(t, MintClaims{Subject: "user-1", Subscribe: []string{"orders:42", "chat:*"}, Publish: []string{"chat:*"}, TTL: time.Hour})
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "user-1" || c.APIKey {
		t.Errorf("claims = %+v", c)
	}
	if d := time.Until(c.Expiry); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expiry %v is not in an hour", c.Expiry)
	}
	if !c.CanSubscribe("orders:42") || !c.CanSubscribe("chat:x") || c.CanSubscribe("orders:43") {
		t.Errorf("subscribe = %v", c.Subscribe)
	}
	if !c.CanPublish("chat:x") || c.CanPublish("orders:42") {
		t.Errorf("publish = %v", c.Publish)
	}
	if err := v.Ready(); err != nil {
		t.Errorf("Ready = %v", err)
	}
}

func TestVerifyNoToken(t *testing.T) {
	_, err := hmacVerifier(t).Verify(context.Background(), "")
	wantErr(t, err, ErrNoToken)
}

func TestVerifyWithoutHeraldClaimAllowsNothing(t *testing.T) {
	tok := rawToken(t, map[string]string{"alg": "HS256", "typ": "JWT"}, map[string]any{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()}, hs256(testSecret))
	c, err := hmacVerifier(t).Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "u" || c.CanSubscribe("a") || c.CanPublish("a") || c.CanSubscribe("") {
		t.Errorf("claims = %+v", c)
	}
}

func TestVerifyWithoutExpNeverExpires(t *testing.T) {
	tok := mintHMAC(t, MintClaims{Subject: "backend", Publish: []string{"*"}})
	c, err := hmacVerifier(t).Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Expiry.IsZero() || !c.CanPublish("anything") {
		t.Errorf("claims = %+v", c)
	}
}

func TestVerifyTimes(t *testing.T) {
	v := hmacVerifier(t) // 30 s skew
	now := time.Now()
	hs := func(claims map[string]any) string {
		return rawToken(t, map[string]string{"alg": "HS256"}, claims, hs256(testSecret))
	}
	tests := []struct {
		name  string
		token string
		want  error // nil: valid
	}{
		{"exp within skew", mintHMAC(t, MintClaims{TTL: -10 * time.Second}), nil},
		{"exp beyond skew", mintHMAC(t, MintClaims{TTL: -time.Minute}), ErrExpired},
		{"exp long ago", mintHMAC(t, MintClaims{TTL: -24 * time.Hour}), ErrExpired},
		{"exp zero", hs(map[string]any{"exp": 0}), ErrExpired},
		{"exp negative", hs(map[string]any{"exp": -5}), ErrInvalidToken}, // jwx refuses to parse it
		{"nbf within skew", mintHMAC(t, MintClaims{TTL: time.Hour, NotBefore: now.Add(10 * time.Second)}), nil},
		{"nbf beyond skew", mintHMAC(t, MintClaims{TTL: time.Hour, NotBefore: now.Add(time.Minute)}), ErrInvalidToken},
		{"nbf past", mintHMAC(t, MintClaims{TTL: time.Hour, NotBefore: now.Add(-time.Minute)}), nil},
		{"iat beyond skew", hs(map[string]any{"iat": now.Add(time.Hour).Unix()}), ErrInvalidToken},
		{"iat within skew", hs(map[string]any{"iat": now.Add(10 * time.Second).Unix()}), nil},
		{"exp not a number", hs(map[string]any{"exp": "tomorrow"}), ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantErr(t, err, tt.want)
		})
	}
}

func TestVerifyExpiredIsNotInvalid(t *testing.T) {
	_, err := hmacVerifier(t).Verify(context.Background(), mintHMAC(t, MintClaims{TTL: -time.Hour}))
	if !errors.Is(err, ErrExpired) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("error = %v, want only ErrExpired", err)
	}
}

func TestVerifyClockSkewConfig(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret, ClockSkew: 2 * time.Minute})
	if _, err := v.Verify(context.Background(), mintHMAC(t, MintClaims{TTL: -time.Minute})); err != nil {
		t.Fatalf("expired a minute ago with 2m skew: %v", err)
	}
	_, err := v.Verify(context.Background(), mintHMAC(t, MintClaims{TTL: -3 * time.Minute}))
	wantErr(t, err, ErrExpired)
}

func TestVerifyIssuerAudience(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret, Issuer: "https://idp.example", Audience: "herald"})
	hs := func(claims map[string]any) string {
		return rawToken(t, map[string]string{"alg": "HS256"}, claims, hs256(testSecret))
	}
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"both right", mintHMAC(t, MintClaims{Issuer: "https://idp.example", Audience: "herald"}), true},
		{"aud list", hs(map[string]any{"iss": "https://idp.example", "aud": []string{"other", "herald"}}), true},
		{"wrong issuer", mintHMAC(t, MintClaims{Issuer: "https://evil.example", Audience: "herald"}), false},
		{"issuer prefix", mintHMAC(t, MintClaims{Issuer: "https://idp.example.evil", Audience: "herald"}), false},
		{"no issuer", mintHMAC(t, MintClaims{Audience: "herald"}), false},
		{"wrong audience", mintHMAC(t, MintClaims{Issuer: "https://idp.example", Audience: "other"}), false},
		{"no audience", mintHMAC(t, MintClaims{Issuer: "https://idp.example"}), false},
		{"audience case", mintHMAC(t, MintClaims{Issuer: "https://idp.example", Audience: "Herald"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, ErrInvalidToken)
		})
	}

	// Without Issuer/Audience configured, any iss and aud are fine.
	if _, err := hmacVerifier(t).Verify(context.Background(), mintHMAC(t, MintClaims{Issuer: "x", Audience: "y"})); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyWrongIssuerBeatsExpired(t *testing.T) {
	// A client told "expired" would fetch a new token and fail again; "invalid" is the real cause.
	v := newVerifier(t, Config{HMACSecret: testSecret, Issuer: "https://idp.example"})
	_, err := v.Verify(context.Background(), mintHMAC(t, MintClaims{Issuer: "other", TTL: -time.Hour}))
	wantErr(t, err, ErrInvalidToken)
}

func TestVerifyWrongSignature(t *testing.T) {
	v := hmacVerifier(t)
	other, err := MintHMAC([]byte("another-secret-another-secret-32"), MintClaims{Subject: "u", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), other)
	wantErr(t, err, ErrInvalidToken)

	// Claims swapped under a valid signature.
	good := strings.Split(mintHMAC(t, MintClaims{Subject: "u", Subscribe: []string{"a"}, TTL: time.Hour}), ".")
	forged := strings.Split(rawToken(t, map[string]string{"alg": "HS256", "typ": "JWT"}, map[string]any{"sub": "u", "herald": map[string]any{"subscribe": []string{"*"}}}, nil), ".")
	_, err = v.Verify(context.Background(), good[0]+"."+forged[1]+"."+good[2])
	wantErr(t, err, ErrInvalidToken)

	// Signature stripped.
	_, err = v.Verify(context.Background(), good[0]+"."+good[1]+".")
	wantErr(t, err, ErrInvalidToken)
}

func TestVerifyAlgNone(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret, PublicKeyFiles: []string{writeFile(t, pemPublic(t, keys(t).rsa))}})
	claims := map[string]any{"sub": "admin", "herald": map[string]any{"publish": []string{"*"}}}
	for _, alg := range []string{"none", "None", "NONE", "nOnE", ""} {
		for _, sig := range []func([]byte) []byte{nil, hs256(testSecret)} {
			tok := rawToken(t, map[string]string{"alg": alg, "typ": "JWT"}, claims, sig)
			_, err := v.Verify(context.Background(), tok)
			wantErr(t, err, ErrInvalidToken)
		}
	}
	// No alg header at all.
	_, err := v.Verify(context.Background(), rawToken(t, map[string]string{"typ": "JWT"}, claims, hs256(testSecret)))
	wantErr(t, err, ErrInvalidToken)
}

func TestVerifyMalformed(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret, APIKeys: []string{"backend-key-0001"}})
	hdr := map[string]string{"alg": "HS256"}
	signed := func(header any, claims any) string { return rawToken(t, header, claims, hs256(testSecret)) }
	good := mintHMAC(t, MintClaims{Subject: "u"})
	parts := strings.Split(good, ".")
	tests := map[string]string{
		"one part":              "abc",
		"two parts":             "abc.def",
		"four parts":            good + ".x",
		"dots only":             "..",
		"empty parts":           "..x",
		"not base64":            "!!!.@@@.###",
		"header not JSON":       b64([]byte("{alg")) + "." + parts[1] + "." + parts[2],
		"header array":          rawToken(t, `["HS256"]`, map[string]any{}, hs256(testSecret)),
		"JSON serialization":    `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`,
		"payload not JSON":      signed(hdr, "not json"),
		"payload JSON array":    signed(hdr, "[1,2]"),
		"payload JSON string":   signed(hdr, `"sub"`),
		"payload nested JWS":    signed(hdr, good),
		"herald not object":     signed(hdr, map[string]any{"herald": "everything"}),
		"herald list not list":  signed(hdr, map[string]any{"herald": map[string]any{"publish": "*"}}),
		"herald list of number": signed(hdr, map[string]any{"herald": map[string]any{"subscribe": []int{1}}}),
		"sub not string":        signed(hdr, map[string]any{"sub": 7}),
		"crit header":           signed(map[string]any{"alg": "HS256", "crit": []string{"exp"}, "exp": 1}, map[string]any{}),
		"b64 false":             signed(map[string]any{"alg": "HS256", "b64": false, "crit": []string{"b64"}}, map[string]any{}),
		"b64 without crit":      signed(map[string]any{"alg": "HS256", "b64": false}, map[string]any{}),
		"unknown alg":           signed(map[string]any{"alg": "HS1024"}, map[string]any{}),
		"ES256K":                signed(map[string]any{"alg": "ES256K"}, map[string]any{}),
		"space inside":          parts[0] + ". " + parts[1] + "." + parts[2],
		"too long":              strings.Repeat("a", MaxTokenBytes+1),
		"not an API key":        "backend-key-0002",
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tok)
			wantErr(t, err, ErrInvalidToken)
		})
	}
}

// TestVerifyTruncated feeds every prefix of a valid token: none of them verifies.
func TestVerifyTruncated(t *testing.T) {
	v := hmacVerifier(t)
	tok := mintHMAC(t, MintClaims{Subject: "u", Subscribe: []string{"a"}, TTL: time.Hour})
	for i := range len(tok) {
		_, err := v.Verify(context.Background(), tok[:i])
		if i == 0 {
			wantErr(t, err, ErrNoToken)
			continue
		}
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("prefix of %d bytes: error = %v", i, err)
		}
	}
}

// TestErrorsNeverContainToken checks the messages of failures of many kinds for token text.
func TestErrorsNeverContainToken(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret, Issuer: "iss", APIKeys: []string{"backend-key-secret-0001"}})
	good := mintHMAC(t, MintClaims{Subject: "u", Issuer: "iss", TTL: time.Hour})
	parts := strings.Split(good, ".")
	for _, tok := range []string{
		mintHMAC(t, MintClaims{Subject: "u", Issuer: "iss", TTL: -time.Hour}),
		mintHMAC(t, MintClaims{Subject: "u", Issuer: "other", TTL: time.Hour}),
		mintHMAC(t, MintClaims{Subject: "u", Issuer: "iss", NotBefore: time.Now().Add(time.Hour)}),
		parts[0] + "." + parts[1] + "." + b64([]byte("wrong signature, wrong signature")),
		parts[0] + "." + parts[1],
		"backend-key-secret-0002",
		"garbage-garbage-garbage-garbage",
		rawToken(t, map[string]string{"alg": "none"}, map[string]any{"sub": "u"}, nil),
	} {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			t.Fatalf("token verified")
		}
		msg := err.Error()
		if strings.Contains(msg, tok) {
			t.Errorf("error %q contains the token", msg)
		}
		for _, p := range strings.Split(tok, ".") {
			if len(p) >= 8 && strings.Contains(msg, p) {
				t.Errorf("error %q contains token part %q", msg, p)
			}
		}
	}
}

func TestNewConfigErrors(t *testing.T) {
	k := keys(t)
	priv := writeFile(t, pemEncode("RSA PRIVATE KEY", x509MarshalPKCS1(k.rsa)))
	tests := map[string]Config{
		"nothing":            {},
		"short secret":       {HMACSecret: []byte("secret")},
		"negative skew":      {HMACSecret: testSecret, ClockSkew: -time.Second},
		"empty API key":      {APIKeys: []string{"k1-0123456789", ""}},
		"relative JWKS URL":  {JWKSURL: "/jwks.json"},
		"ftp JWKS URL":       {JWKSURL: "ftp://idp.example/jwks.json"},
		"JWKS refresh small": {JWKSURL: "https://idp.example/jwks.json", JWKSRefresh: 100 * time.Millisecond},
		"missing key file":   {PublicKeyFiles: []string{"/nonexistent/key.pem"}},
		"empty key file":     {PublicKeyFiles: []string{writeFile(t, nil)}},
		"not PEM":            {PublicKeyFiles: []string{writeFile(t, []byte("hello"))}},
		"private key":        {PublicKeyFiles: []string{priv}},
		"truncated PEM":      {PublicKeyFiles: []string{writeFile(t, append(pemPublic(t, k.p256), "-----BEGIN PUBLIC KEY-----\nMFkw\n"...))}},
		"bad DER":            {PublicKeyFiles: []string{writeFile(t, pemEncode("PUBLIC KEY", []byte("junk")))}},
		"unknown block":      {PublicKeyFiles: []string{writeFile(t, pemEncode("EC PARAMETERS", []byte{6, 8, 42}))}},
		"weak RSA":           {PublicKeyFiles: []string{writeFile(t, pemPublic(t, weakRSA(t)))}},
		"P-224":              {PublicKeyFiles: []string{writeFile(t, pemPublic(t, p224(t)))}},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			v, err := New(context.Background(), cfg)
			if err == nil {
				_ = v.Close()
				t.Fatal("New succeeded")
			}
			if errors.Is(err, ErrInvalidToken) {
				t.Errorf("config error %v wraps ErrInvalidToken", err)
			}
		})
	}
}

func TestNoKeyForAlgorithm(t *testing.T) {
	// Only API keys: every JWT is refused, whatever its algorithm.
	v := newVerifier(t, Config{APIKeys: []string{"backend-key-0001"}})
	for _, tok := range []string{
		mintHMAC(t, MintClaims{Subject: "u"}),
		mintWith(t, keys(t).p256, "", "ES256", MintClaims{Subject: "u"}),
	} {
		_, err := v.Verify(context.Background(), tok)
		wantErr(t, err, ErrInvalidToken)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	v := hmacVerifier(t)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	// Static keys keep working after Close.
	if _, err := v.Verify(context.Background(), mintHMAC(t, MintClaims{})); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyRefusesKeyHeaders: a token that names or carries its own key (jwk, jku, x5u, x5c)
// is refused even when its signature verifies with a configured key.
func TestVerifyRefusesKeyHeaders(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{HMACSecret: testSecret, PublicKeyFiles: []string{writeFile(t, pemPublic(t, k.rsa))}})
	cert, _ := pem.Decode(selfSigned(t, k.rsa))
	pubJWK, err := privJWK(t, k.rsa, "").PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string]any{
		"jwk": pubJWK,
		"jku": "https://attacker.example/jwks.json",
		"x5u": "https://attacker.example/cert.pem",
		"x5c": []string{base64.StdEncoding.EncodeToString(cert.Bytes)},
	}
	signers := map[string]func([]byte) []byte{"HS256": hs256(testSecret), "RS256": rs256(k.rsa)}
	claims := map[string]any{"sub": "u", "herald": map[string]any{"subscribe": []string{"*"}}}
	for name, value := range headers {
		for alg, sign := range signers {
			tok := rawToken(t, map[string]any{"alg": alg, name: value}, claims, sign)
			_, err := v.Verify(context.Background(), tok)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), name) {
				t.Errorf("%s header, %s: error = %v, want an invalid token naming the header", name, alg, err)
			}
		}
	}
	// The same keys and claims without those headers verify.
	for alg, sign := range signers {
		if _, err := v.Verify(context.Background(), rawToken(t, map[string]any{"alg": alg}, claims, sign)); err != nil {
			t.Fatalf("%s without key headers: %v", alg, err)
		}
	}
}

// rs256 signs with RSASSA-PKCS1-v1_5 SHA-256 under key.
func rs256(key *rsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		sum := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		if err != nil {
			panic(err)
		}
		return sig
	}
}
