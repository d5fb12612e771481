package auth

import (
	"context"
	"testing"
	"time"
)

// TestVerifiedTokensShareClaims: connections presenting the same token share one Claims value
// (one signature check, one allocation), and the cache never outlives the token.
func TestVerifiedTokensShareClaims(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := New(context.Background(), Config{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok, err := MintHMAC(secret, MintClaims{Subscribe: []string{"a:*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	first, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(context.Background(), tok)
	if err != nil || second != first {
		t.Fatalf("second Verify: %p %v, want the same Claims %p", second, err, first)
	}
	var c verifiedCache
	now := time.Now()
	c.put("t", &Claims{Expiry: now.Add(time.Second)}, now)
	if c.get("t", now.Add(999*time.Millisecond)) == nil || c.get("t", now.Add(time.Second)) != nil {
		t.Fatal("a cached token outlived its expiry")
	}
	for i := range cacheEntries + 10 {
		c.put(string(rune(i)), &Claims{}, now)
	}
	if len(c.entries) > cacheEntries {
		t.Fatalf("%d entries, bound %d", len(c.entries), cacheEntries)
	}
}
