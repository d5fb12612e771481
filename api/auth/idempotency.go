package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// Idempotency keys belong to the credential that sent them. A publisher picks its own keys
// ("order-42-paid"), and another credential allowed on the same channel may guess them: if the
// broker remembered the client's key as it is, whoever claimed a key first would turn every later
// publish with it, by anyone, into a silent replay of the first. So the broker remembers a digest
// of the credential's identity and the client's key instead.
//
// The identity is what stays the same across the retries of one publisher:
//   - an API key: the key itself (its digest);
//   - a JWT with a subject: its issuer and subject, so a retry with a re-minted token of the same
//     subject is still recognised;
//   - a JWT without a subject: the token itself (there is nothing else that tells holders apart).

// Identity kinds: each starts the scope, so identities of two kinds never coincide.
const (
	scopeAPIKey  = "key\x00"
	scopeSubject = "sub\x00"
	scopeToken   = "tok\x00"
)

// apiKeyScope is the idempotency scope of the API key whose SHA-256 digest is d.
func apiKeyScope(d [sha256.Size]byte) string { return scopeAPIKey + string(d[:]) }

// jwtScope is the idempotency scope of a verified JWT: its issuer and subject, or, without a
// subject, the digest of the token.
func jwtScope(issuer, subject, token string) string {
	if subject == "" {
		d := digest(token)
		return scopeToken + string(d[:])
	}
	// Both are length-prefixed rather than terminated: a JSON string may hold any character,
	// so no separator could tell where one ends. Every scope is thus self-delimiting, and the
	// client's key that follows it in IdempotencyKey cannot shift the boundary.
	return scopeSubject + strconv.Itoa(len(issuer)) + ":" + issuer + strconv.Itoa(len(subject)) + ":" + subject
}

// IdempotencyKey returns the key under which the broker remembers a publish that carries the
// client's idempotency key (the Idempotency-Key header, or a WebSocket publish's
// idempotency_key): a digest of the credential's identity and that key, 43 characters of
// base64url. The same credential retrying gets the same key; another credential using the same
// client key gets another. An empty client key (none) stays empty.
func (c *Claims) IdempotencyKey(clientKey string) string {
	if clientKey == "" {
		return ""
	}
	var buf [512]byte
	b := append(buf[:0], c.idempotencyScope...)
	b = append(b, 0)
	b = append(b, clientKey...)
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
