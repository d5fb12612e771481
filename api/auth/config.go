package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Defaults and limits of [Config].
const (
	DefaultJWKSRefresh = 15 * time.Minute
	DefaultClockSkew   = 30 * time.Second
	// MinJWKSRefresh is the shortest refresh interval jwk.Cache supports.
	MinJWKSRefresh = time.Second
	// MinHMACSecretBytes is the shortest HMAC secret accepted: HS256 needs a key at least as long
	// as its 32-byte hash (RFC 7518 section 3.2); a shorter one can be brute-forced from one token.
	MinHMACSecretBytes = 32
	// MaxTokenBytes bounds the token text Verify looks at; longer input is refused unparsed.
	MaxTokenBytes = 64 << 10
	// jwksTimeout is the timeout of the HTTP client made when Config.HTTPClient is nil.
	jwksTimeout = 10 * time.Second
)

// Config says which credentials a [Verifier] accepts. At least one of HMACSecret,
// PublicKeyFiles, JWKSURL and APIKeys must be set.
type Config struct {
	// HMACSecret verifies HS256, HS384 and HS512 tokens; at least MinHMACSecretBytes long.
	HMACSecret []byte
	// PublicKeyFiles are PEM files of public keys or certificates: RSA (RS256/384/512,
	// PS256/384/512, at least 2048 bits), ECDSA (ES256 on P-256, ES384 on P-384, ES512 on P-521)
	// and Ed25519 (EdDSA). A file may hold several blocks. Private keys are refused: the gateway
	// only verifies.
	PublicKeyFiles []string
	// JWKSURL is fetched by New and refreshed in the background (jwk.Cache). Its keys are chosen by
	// the token's kid; a token without kid is tried against every JWKS key of its algorithm.
	// Symmetric ("oct") keys, keys with "use" other than "sig" and weak keys in the set are ignored.
	JWKSURL string
	// JWKSRefresh is the interval between background JWKS fetches: default DefaultJWKSRefresh,
	// at least MinJWKSRefresh.
	JWKSRefresh time.Duration
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// ClockSkew is the allowance for exp, nbf and iat; zero means DefaultClockSkew.
	ClockSkew time.Duration
	// APIKeys are static keys for backends. A request presenting one may do everything.
	APIKeys []string
	// HTTPClient fetches the JWKS; nil means a client of its own with a 10 s timeout.
	HTTPClient *http.Client
}

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if len(c.HMACSecret) == 0 && len(c.PublicKeyFiles) == 0 && c.JWKSURL == "" && len(c.APIKeys) == 0 {
		return c, errors.New("auth: no HMAC secret, public key file, JWKS URL or API key configured")
	}
	if len(c.HMACSecret) > 0 && len(c.HMACSecret) < MinHMACSecretBytes {
		return c, fmt.Errorf("auth: HMAC secret is %d bytes, want at least %d", len(c.HMACSecret), MinHMACSecretBytes)
	}
	for i, k := range c.APIKeys {
		if k == "" {
			return c, fmt.Errorf("auth: API key #%d is empty", i+1)
		}
	}
	switch {
	case c.ClockSkew < 0:
		return c, fmt.Errorf("auth: negative clock skew %s", c.ClockSkew)
	case c.ClockSkew == 0:
		c.ClockSkew = DefaultClockSkew
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return c, fmt.Errorf("auth: JWKS URL %q is not an absolute http(s) URL", c.JWKSURL)
		}
	}
	switch {
	case c.JWKSRefresh == 0:
		c.JWKSRefresh = DefaultJWKSRefresh
	case c.JWKSRefresh < MinJWKSRefresh:
		return c, fmt.Errorf("auth: JWKS refresh %s is below the minimum %s", c.JWKSRefresh, MinJWKSRefresh)
	}
	return c, nil
}
