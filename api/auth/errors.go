package auth

import (
	"errors"
	"fmt"
)

// Errors returned by [Verifier.Verify]. Each returned error wraps exactly one of them, with a
// message saying what is wrong; test with errors.Is.
var (
	// ErrNoToken means no credential was presented.
	ErrNoToken = errors.New("auth: no token")
	// ErrExpired means the token's exp lies in the past by more than the clock skew. The holder
	// should fetch a fresh token (the gateway closes a WebSocket with 4001).
	ErrExpired = errors.New("auth: token expired")
	// ErrInvalidToken means the credential cannot be trusted: malformed, a signature that does not
	// verify, a refused algorithm, an unknown key id, nbf or iat in the future, the wrong issuer or
	// audience, no key configured for its algorithm, or an API key that is not configured.
	ErrInvalidToken = errors.New("auth: invalid token")
)

// tokenError is a verification failure: one of the sentinel errors plus what exactly is wrong.
type tokenError struct {
	kind error
	msg  string
}

func (e *tokenError) Error() string { return e.kind.Error() + ": " + e.msg }
func (e *tokenError) Unwrap() error { return e.kind }

// invalidf returns an error wrapping ErrInvalidToken. The message must never contain token text;
// values taken from a token (kid, iss, aud) go through [quoteShort].
func invalidf(format string, args ...any) error {
	return &tokenError{kind: ErrInvalidToken, msg: fmt.Sprintf(format, args...)}
}

// quoteShort quotes a value taken from a token header or claim for an error message, cut to a
// length that keeps log lines readable.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
