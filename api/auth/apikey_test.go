package auth

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestAPIKeys(t *testing.T) {
	keys := []string{"backend-key-one-0001", "backend-key-two-0002", "looks.like.a-jwt"}
	v := newVerifier(t, Config{APIKeys: keys, HMACSecret: testSecret})
	for i, k := range keys {
		c, err := v.Verify(context.Background(), k)
		if err != nil {
			t.Fatalf("key %d: %v", i+1, err)
		}
		if !c.APIKey || c.Subject != "api-key:"+string(rune('1'+i)) || !c.Expiry.IsZero() {
			t.Errorf("key %d: claims = %+v", i+1, c)
		}
		if !c.CanPublish("any:channel/at-all") || !c.CanSubscribe("x") {
			t.Errorf("key %d does not allow everything", i+1)
		}
	}
	for _, wrong := range []string{
		"backend-key-one-0003",
		"backend-key-one-000",   // prefix
		"backend-key-one-00011", // longer
		"BACKEND-KEY-ONE-0001",
		" backend-key-one-0001",
		strings.Repeat("x", 200),
	} {
		_, err := v.Verify(context.Background(), wrong)
		wantErr(t, err, ErrInvalidToken)
	}
	// JWTs still work next to API keys.
	if _, err := v.Verify(context.Background(), mintHMAC(t, MintClaims{TTL: time.Minute})); err != nil {
		t.Fatal(err)
	}
}

// TestAPIKeyMatchChecksAllKeys: the match is found wherever the key is in the list, and the
// digests of all keys are compared (no early exit on the first match).
func TestAPIKeyMatchChecksAllKeys(t *testing.T) {
	list := make([]string, 50)
	for i := range list {
		list[i] = strings.Repeat(string(rune('a'+i%26)), 10+i)
	}
	a := newAPIKeys(list)
	for i, k := range list {
		if got := a.match(k); got != i+1 {
			t.Fatalf("match(key %d) = %d", i+1, got)
		}
	}
	if got := a.match("nope"); got != 0 {
		t.Fatalf("match(nope) = %d", got)
	}
	if got := apiKeys(nil).match("x"); got != 0 {
		t.Fatalf("empty list matched")
	}
	// A duplicate key answers with the last of its numbers, having looked at all of them.
	if got := newAPIKeys([]string{"dup-key-0001", "other", "dup-key-0001"}).match("dup-key-0001"); got != 3 {
		t.Fatalf("duplicate matched as %d, want 3", got)
	}
}

func BenchmarkAPIKeyMatch(b *testing.B) {
	a := newAPIKeys([]string{"backend-key-one-0001", "backend-key-two-0002", "backend-key-three-0003"})
	b.ReportAllocs()
	for b.Loop() {
		a.match("backend-key-two-0002")
	}
}
