package auth

import (
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// MintClaims describes a token to mint: for `herald token`, the dev-mode printout and tests.
type MintClaims struct {
	Subject   string
	Subscribe []string // glob patterns, see Match
	Publish   []string
	// TTL sets exp to now+TTL. Zero mints a token without exp, which never expires; a negative
	// TTL mints a token that has already expired.
	TTL       time.Duration
	Issuer    string    // iss; omitted when empty
	Audience  string    // aud; omitted when empty
	NotBefore time.Time // nbf; omitted when zero
}

// MintHMAC returns an HS256 token for c signed with secret, which must be at least
// MinHMACSecretBytes long (a Verifier would refuse a shorter one).
func MintHMAC(secret []byte, c MintClaims) (string, error) {
	if len(secret) < MinHMACSecretBytes {
		return "", fmt.Errorf("auth: mint: HMAC secret is %d bytes, want at least %d", len(secret), MinHMACSecretBytes)
	}
	return mint(c, jwt.WithKey(jwa.HS256, secret))
}

// Mint returns a token for c signed with key by alg. key is a private jwk.Key (RSA, EC or OKP;
// an "oct" key for HS*), for instance from jwk.FromRaw; its kid, when set, goes into the header
// so a JWKS verifier can find the public key.
func Mint(key jwk.Key, alg jwa.SignatureAlgorithm, c MintClaims) (string, error) {
	if key == nil {
		return "", fmt.Errorf("auth: mint: no key")
	}
	return mint(c, jwt.WithKey(alg, key))
}

// mint builds the claims set of c and signs it.
func mint(c MintClaims, key jwt.SignOption) (string, error) {
	now := time.Now()
	b := jwt.NewBuilder().
		Subject(c.Subject).
		IssuedAt(now).
		Claim(ClaimName, heraldClaim{Subscribe: nonNil(c.Subscribe), Publish: nonNil(c.Publish)})
	if c.TTL != 0 {
		b = b.Expiration(now.Add(c.TTL))
	}
	if c.Issuer != "" {
		b = b.Issuer(c.Issuer)
	}
	if c.Audience != "" {
		b = b.Audience([]string{c.Audience})
	}
	if !c.NotBefore.IsZero() {
		b = b.NotBefore(c.NotBefore)
	}
	tok, err := b.Build()
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	signed, err := jwt.Sign(tok, key)
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return string(signed), nil
}

// nonNil makes a nil list encode as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
