package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"strconv"
)

// apiKeys holds the SHA-256 digests of the configured API keys. Comparing digests makes every
// comparison the same length, so neither a key's content nor its length shows in the timing.
type apiKeys [][sha256.Size]byte

func newAPIKeys(keys []string) apiKeys {
	digests := make(apiKeys, len(keys))
	for i, k := range keys {
		digests[i] = sha256.Sum256([]byte(k))
	}
	return digests
}

// match compares token with every key in constant time and returns the 1-based number of the
// matching key, or 0 when none matches.
func (a apiKeys) match(token string) int {
	if len(a) == 0 {
		return 0
	}
	d := digest(token)
	found := 0
	for i := range a {
		eq := subtle.ConstantTimeCompare(d[:], a[i][:])
		found = subtle.ConstantTimeSelect(eq, i+1, found)
	}
	return found
}

// apiKeyClaims are the claims of the n-th configured API key, whose digest is d. The Verifier
// makes them once and hands the same value to every request, as it does for cached JWTs.
func apiKeyClaims(n int, d [sha256.Size]byte) *Claims {
	return (&Claims{Subject: "api-key:" + strconv.Itoa(n), APIKey: true}).withScope(apiKeyScope(d))
}

// digest is the SHA-256 of token. Tokens of usual size are copied to the stack first: the
// plain conversion []byte(token) would allocate on every request.
func digest(token string) [sha256.Size]byte {
	var buf [1024]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(append(buf[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}
