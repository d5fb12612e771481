package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Verifier checks tokens and API keys against a [Config]. It is safe for concurrent use.
type Verifier struct {
	// Set by New, read-only afterwards.
	secret    []byte      // HMAC secret; nil when none is configured
	static    []publicKey // keys of Config.PublicKeyFiles
	apiKeys   apiKeys
	keyClaims []*Claims   // keyClaims[n-1] are the claims of API key n, shared read-only
	jwks      *jwksSource // nil without Config.JWKSURL
	issuer    string
	audience  string
	skew      time.Duration

	cache verifiedCache // JWTs that verified recently; see cache.go

	closeOnce sync.Once
}

// New makes a Verifier. It fails for a bad Config and for a public key file that cannot be read
// or holds no valid public key.
//
// With a JWKS URL, New fetches the set once (waiting at most until ctx is done). If that fetch
// fails, New still succeeds and logs nothing: [Verifier.Ready] reports the failure, tokens that
// need a JWKS key fail with ErrInvalidToken until keys arrive, and the set is fetched again in the
// background every Config.JWKSRefresh, and at once (at most every few seconds) when a token names
// a key id the verifier does not know. Call [Verifier.Close] to stop the background refresh.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	static, err := loadPublicKeyFiles(cfg.PublicKeyFiles)
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		secret:   slices.Clone(cfg.HMACSecret),
		static:   static,
		apiKeys:  newAPIKeys(cfg.APIKeys),
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		skew:     cfg.ClockSkew,
	}
	for n := range cfg.APIKeys {
		v.keyClaims = append(v.keyClaims, apiKeyClaims(n+1, v.apiKeys[n]))
	}
	if cfg.JWKSURL != "" {
		if v.jwks, err = newJWKSSource(ctx, cfg, v.cache.clear); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Ready reports whether the verifier has all the keys it was configured with: nil, or why the
// JWKS is not loaded (or holds no usable signing key). Without a JWKS URL it is always nil. A JWKS that was loaded once stays
// usable (and Ready nil) while later refreshes fail.
func (v *Verifier) Ready() error {
	if v.jwks == nil {
		return nil
	}
	return v.jwks.ready()
}

// Close stops the background JWKS refresh and cancels a fetch in flight; the jwk.Cache
// goroutines return as soon as they see it (jwk.Cache offers no way to wait for them, so they
// may outlive Close by a moment). Verify keeps working afterwards with the keys it has, without
// fetching. Close is idempotent and always returns nil.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		if v.jwks != nil {
			v.jwks.close()
		}
	})
	return nil
}

// Verify checks a credential and returns what it allows. token is either a configured API key
// (compared in constant time against all of them) or a JWT in compact form.
//
// A JWT must carry a signature from a configured key by an accepted algorithm (see the package
// invariants), and its claims must hold: exp not passed and nbf and iat not in the future (each
// beyond the clock skew), iss and aud as configured. A JWT without exp is accepted and never
// expires (backends may mint such tokens for themselves); a JWT without the herald claim is valid
// but allows nothing.
//
// The error wraps ErrNoToken, ErrExpired or ErrInvalidToken. ctx bounds the one JWKS fetch Verify
// may make when the token names an unknown key id.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if len(token) > MaxTokenBytes {
		return nil, invalidf("token longer than %d bytes", MaxTokenBytes)
	}
	if n := v.apiKeys.match(token); n > 0 {
		return v.keyClaims[n-1], nil
	}
	if strings.Count(token, ".") != 2 {
		if len(v.apiKeys) > 0 {
			return nil, invalidf("neither a configured API key nor a JWT")
		}
		return nil, invalidf("not a JWT in compact form")
	}
	now := time.Now()
	if c := v.cache.get(token, now); c != nil {
		return c, nil
	}
	payload, err := v.verifySignature(ctx, token)
	if err != nil {
		return nil, err
	}
	c, err := v.claims(payload, token)
	if err != nil {
		return nil, err
	}
	v.cache.put(token, c, now)
	return c, nil
}

// verifySignature checks the JWS signature of token and returns its payload. When the token
// names a kid the JWKS lacks (or the JWKS is not loaded), the JWKS is fetched once more, rate
// limited, and the signature checked again.
func (v *Verifier) verifySignature(ctx context.Context, token string) ([]byte, error) {
	p := &keyPicker{v: v}
	payload, err := jws.Verify([]byte(token), jws.WithCompact(), jws.WithKeyProvider(p))
	if err == nil {
		return payload, nil
	}
	if p.jwksMissing && v.jwks.fetchNow(ctx) {
		p = &keyPicker{v: v}
		if payload, err = jws.Verify([]byte(token), jws.WithCompact(), jws.WithKeyProvider(p)); err == nil {
			return payload, nil
		}
	}
	return nil, p.failure()
}

// keyPicker is the jws.KeyProvider of one Verify call: it chooses the keys that may check the
// signature from the token's alg and kid, and remembers why it chose none.
type keyPicker struct {
	v           *Verifier
	called      bool // jws.Verify parsed the token and asked for keys
	tried       int  // number of keys handed out
	alg         jwa.SignatureAlgorithm
	jwksMissing bool  // the JWKS is not loaded or lacks the token's kid
	err         error // why no key was handed out, wrapping ErrInvalidToken
}

// FetchKeys implements jws.KeyProvider.
func (p *keyPicker) FetchKeys(_ context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	p.called = true
	h := sig.ProtectedHeaders()
	if len(h.Critical()) > 0 {
		p.err = invalidf("critical header extensions are not supported")
		return p.err
	}
	if _, ok := h.Get("b64"); ok {
		p.err = invalidf("unencoded payloads (b64) are not supported")
		return p.err
	}
	if name := keyHeader(h); name != "" {
		p.err = invalidf("the %s header is not accepted: keys come from the configuration only", name)
		return p.err
	}
	p.alg = h.Algorithm()
	if !acceptedAlg(p.alg) {
		p.err = invalidf("algorithm %s is not accepted", quoteShort(p.alg.String()))
		return p.err
	}
	keys, err := p.v.keysFor(p.alg, h.KeyID(), &p.jwksMissing)
	if err != nil {
		p.err = err
		return err
	}
	for _, k := range keys {
		sink.Key(p.alg, k)
	}
	p.tried = len(keys)
	return nil
}

// tokenKeyHeaders are the JOSE headers by which a token names or carries its own key (RFC 7515
// section 4.1). herald never uses such a key, and it refuses tokens that carry one: a token that
// says where its key is was made by someone who expects a verifier to go and get it.
var tokenKeyHeaders = []string{jws.JWKKey, jws.JWKSetURLKey, jws.X509URLKey, jws.X509CertChainKey}

// keyHeader returns the name of the first of tokenKeyHeaders that h carries, or "".
func keyHeader(h jws.Headers) string {
	for _, name := range tokenKeyHeaders {
		if _, ok := h.Get(name); ok {
			return name
		}
	}
	return ""
}

// failure says why jws.Verify failed.
func (p *keyPicker) failure() error {
	switch {
	case p.err != nil:
		return p.err
	case !p.called:
		return invalidf("malformed JWS")
	default:
		return invalidf("signature does not verify with any of %d %s key(s)", p.tried, p.alg)
	}
}

// keysFor returns the keys that may check a signature made with alg, by the key named kid.
// It sets *jwksMissing when the JWKS may be out of date for this kid.
func (v *Verifier) keysFor(alg jwa.SignatureAlgorithm, kid string, jwksMissing *bool) ([]any, error) {
	if hmacAlg(alg) {
		if v.secret == nil {
			return nil, invalidf("%s token, but no HMAC secret is configured", alg)
		}
		return []any{v.secret}, nil
	}
	var keys []any
	for _, k := range v.static {
		if k.fits(alg) {
			keys = append(keys, k.raw)
		}
	}
	if v.jwks != nil {
		jk, missing := v.jwks.keysFor(alg, kid)
		keys = append(keys, jk...)
		*jwksMissing = missing
	}
	if len(keys) > 0 {
		return keys, nil
	}
	switch {
	case v.jwks != nil && v.jwks.keys.Load() == nil:
		return nil, invalidf("no %s key: the JWKS is not loaded", alg)
	case kid != "" && *jwksMissing:
		return nil, invalidf("no %s key with kid %s", alg, quoteShort(kid))
	default:
		return nil, invalidf("no %s key is configured", alg)
	}
}

// claims checks the claims of a verified payload (of token) and returns what they allow.
func (v *Verifier) claims(payload []byte, token string) (*Claims, error) {
	tok := jwt.New()
	if err := json.Unmarshal(payload, tok); err != nil {
		return nil, invalidf("claims are not a valid JWT claims set")
	}
	var perms struct {
		Herald *heraldClaim `json:"herald"`
	}
	if err := json.Unmarshal(payload, &perms); err != nil {
		return nil, invalidf("the %q claim is malformed", ClaimName)
	}
	if v.issuer != "" && tok.Issuer() != v.issuer {
		return nil, invalidf("issuer %s is not the configured one", quoteShort(tok.Issuer()))
	}
	if v.audience != "" && !slices.Contains(tok.Audience(), v.audience) {
		return nil, invalidf("audience does not include the configured one")
	}
	if err := v.checkTimes(tok); err != nil {
		return nil, err
	}
	c := (&Claims{Subject: tok.Subject(), Expiry: tok.Expiration()}).
		withScope(jwtScope(tok.Issuer(), tok.Subject(), token))
	if perms.Herald != nil {
		c.Subscribe, c.Publish = perms.Herald.Subscribe, perms.Herald.Publish
	}
	return c, nil
}

// checkTimes checks exp, nbf and iat against the clock, allowing the skew.
func (v *Verifier) checkTimes(tok jwt.Token) error {
	exp := tok.Expiration()
	// jwt.Validate reads "exp": 0 as no exp at all; it is 1970.
	if _, ok := tok.Get(jwt.ExpirationKey); ok && exp.Unix() == 0 {
		return &tokenError{kind: ErrExpired, msg: "exp is 0"}
	}
	err := jwt.Validate(tok, jwt.WithAcceptableSkew(v.skew))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrTokenExpired()):
		return &tokenError{kind: ErrExpired, msg: fmt.Sprintf("exp %s is more than %s ago", exp.UTC().Format(time.RFC3339), v.skew)}
	case errors.Is(err, jwt.ErrTokenNotYetValid()):
		return invalidf("not valid before %s (nbf)", tok.NotBefore().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrInvalidIssuedAt()):
		return invalidf("issued in the future (iat %s)", tok.IssuedAt().UTC().Format(time.RFC3339))
	default:
		return invalidf("claims do not validate")
	}
}
