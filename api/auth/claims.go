package auth

import (
	"crypto/sha256"
	"time"
)

// Claims is what a verified credential allows. The Claims that Verifier.Verify returns are
// shared between the requests that present the same credential: treat them as read-only.
type Claims struct {
	Subject   string
	Expiry    time.Time // zero: does not expire (API keys, and JWTs without exp)
	Subscribe []string  // glob patterns of channels the holder may subscribe to
	Publish   []string  // glob patterns of channels the holder may publish to
	APIKey    bool      // true when authenticated by a static API key: may do everything

	// idempotencyScope identifies the credential for IdempotencyKey; the Verifier sets it
	// (Claims made otherwise share the empty scope).
	idempotencyScope string
	// identity is the SHA-256 digest of idempotencyScope (see Identity).
	identity Identity
}

// Identity names the credential behind a Claims value with a fixed-size digest: the same for
// every request of one publisher (an API key; a JWT's issuer and subject, whichever token of
// that subject it presents; a JWT without a subject: that token), different between
// credentials. It is what per-credential limits are keyed by. Claims not made by the Verifier
// all have the zero Identity.
type Identity [sha256.Size]byte

// Identity returns the identity of the credential (see [Identity]). A nil *Claims has the zero
// Identity.
func (c *Claims) Identity() Identity {
	if c == nil {
		return Identity{}
	}
	return c.identity
}

// withScope sets c's credential scope and the identity derived from it, and returns c.
func (c *Claims) withScope(scope string) *Claims {
	c.idempotencyScope = scope
	c.identity = digest(scope)
	return c
}

// CanSubscribe reports whether the holder may subscribe to channel. A nil *Claims may do nothing.
func (c *Claims) CanSubscribe(channel string) bool {
	return c != nil && (c.APIKey || matchAny(c.Subscribe, channel))
}

// CanPublish reports whether the holder may publish to channel. A nil *Claims may do nothing.
func (c *Claims) CanPublish(channel string) bool {
	return c != nil && (c.APIKey || matchAny(c.Publish, channel))
}

// ClaimName is the name of the private JWT claim that holds herald's permissions.
const ClaimName = "herald"

// heraldClaim is the JSON shape of the "herald" claim.
type heraldClaim struct {
	Subscribe []string `json:"subscribe"`
	Publish   []string `json:"publish"`
}
