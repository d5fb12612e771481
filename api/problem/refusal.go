package problem

import (
	"errors"
	"net/http"
	"time"

	"github.com/herald-gateway/herald/api/auth"
)

// The problem types and texts that the API and the gateway share, so that a client is told the
// same thing whichever route or transport refused it. The texts are generic on purpose: what
// exactly was wrong (the verifier's reason, which may name the configured issuer or key types,
// or the message store's own error) goes to the server's log, never to the client.
const (
	TypeUnauthorized     = "unauthorized"
	TypeInvalidToken     = "invalid-token"
	TypeTokenExpired     = "token-expired"
	TypeForbidden        = "forbidden"
	TypeUnavailable      = "unavailable"
	TypeOriginNotAllowed = "origin-not-allowed"
	TypeRateLimited      = "rate-limited"

	DetailNoToken          = "a token is required: Authorization: Bearer <token>, the access_token parameter or the herald_token cookie"
	DetailInvalidToken     = "the token is not valid"
	DetailTokenExpired     = "the token has expired"
	DetailStoreUnavailable = "the message store is unavailable, retry shortly"
	DetailShuttingDown     = "the gateway is shutting down, reconnect to another node"
	DetailOriginNotAllowed = "the request's Origin is not in the allowed origins"
	DetailRateLimited      = "this credential publishes faster than its limit allows: retry later"
)

// WWW-Authenticate challenges (RFC 6750, section 3) of the 401 problems.
const (
	challengeNoToken = `Bearer realm="herald"`
	challengeInvalid = `Bearer realm="herald", error="invalid_token", error_description="the token is not valid"`
	challengeExpired = `Bearer realm="herald", error="invalid_token", error_description="the token has expired"`
)

// Auth is the 401 problem for a credential that auth's Verify refused with err: unauthorized
// (no credential), token-expired or invalid-token (anything else), with the matching
// WWW-Authenticate challenge. The caller logs err if it wants the reason kept.
func Auth(err error) *Details {
	var p *Details
	switch {
	case errors.Is(err, auth.ErrNoToken):
		p = New(http.StatusUnauthorized, TypeUnauthorized, DetailNoToken)
		p.Challenge = challengeNoToken
	case errors.Is(err, auth.ErrExpired):
		p = New(http.StatusUnauthorized, TypeTokenExpired, DetailTokenExpired)
		p.Challenge = challengeExpired
	default:
		p = New(http.StatusUnauthorized, TypeInvalidToken, DetailInvalidToken)
		p.Challenge = challengeInvalid
	}
	return p
}

// Forbidden is the 403 for an action ("subscribe", "publish") the token does not allow on
// channel. The channel is the client's own, already validated, input.
func Forbidden(action, channel string) *Details {
	return New(http.StatusForbidden, TypeForbidden, ForbiddenDetail(action, channel))
}

// ForbiddenDetail is the text of [Forbidden], for transports that answer with their own shape.
func ForbiddenDetail(action, channel string) string {
	return "the token does not allow " + action + " on channel " + channel
}

// OriginNotAllowed is the 403 for a browser request from an origin the CORS policy does not
// allow.
func OriginNotAllowed() *Details {
	return New(http.StatusForbidden, TypeOriginNotAllowed, DetailOriginNotAllowed)
}

// StoreUnavailable is the 503 for a message store that cannot be reached now (or a closed one,
// or a call that ran out of time); the client may retry after a second. The caller logs the
// store's error.
func StoreUnavailable() *Details { return unavailable(DetailStoreUnavailable) }

// ShuttingDown is the 503 for a request that reached a node while it drains.
func ShuttingDown() *Details { return unavailable(DetailShuttingDown) }

func unavailable(detail string) *Details {
	p := New(http.StatusServiceUnavailable, TypeUnavailable, detail)
	p.RetryAfter = time.Second
	return p
}

// RateLimited is the 429 for a publish refused because its credential is over its publish
// rate; retry is how long until it may publish again (sent as Retry-After, rounded up to
// whole seconds).
func RateLimited(retry time.Duration) *Details {
	p := New(http.StatusTooManyRequests, TypeRateLimited, DetailRateLimited)
	p.RetryAfter = max(retry, time.Millisecond)
	return p
}
