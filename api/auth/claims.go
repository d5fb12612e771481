package auth

import "time"

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
