package admission

import (
	"net/http"
	"testing"
	"time"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
)

func identityN(i int) auth.Identity {
	var id auth.Identity
	id[0], id[1], id[2], id[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return id
}

// TestBucketTakeN: a take of n tokens takes what the bucket holds, and the wait is until it
// holds the rest, or is full when the rest is more than it holds.
func TestBucketTakeN(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a := identityN(1)
	tb := newBucketTable[auth.Identity](2, 5, 10)
	steps := []struct {
		at     time.Duration
		n, got int
		waitMs int64
		why    string
	}{
		{0, 3, 3, 0, "within the burst"},
		{0, 4, 2, 1000, "partly over: the rest (2) in a second"},
		{0, 1, 0, 500, "empty"},
		{250 * time.Millisecond, 1, 0, 250, "half a token"},
		{500 * time.Millisecond, 1, 1, 0, "refilled one"},
		{500 * time.Millisecond, 20, 0, 2500, "more than the burst: until full"},
		{time.Hour, 20, 5, 2500, "a full bucket, no more"},
		{time.Hour, 0, 0, 0, "nothing asked"},
	}
	for i, s := range steps {
		got, wait := tb.takeN(a, s.n, t0.Add(s.at))
		if got != s.got || wait.Milliseconds() != s.waitMs {
			t.Fatalf("step %d (%s): got %d wait %v, want %d wait %dms", i, s.why, got, wait, s.got, s.waitMs)
		}
	}
}

func TestPublishLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewPublishLimiter(PublishConfig{Rate: 0.5, Burst: 2, Now: func() time.Time { return now }})
	alice, bob := identityN(1), identityN(2)
	for i := range 2 {
		if got, p := l.Take(alice, 1); got != 1 || p != nil {
			t.Fatalf("publish %d within the burst: granted %d, %v", i, got, p)
		}
	}
	got, p := l.Take(alice, 1)
	if got != 0 || p == nil || p.Status != http.StatusTooManyRequests || p.Type != problem.TypeRateLimited ||
		p.RetryAfterSeconds() != 2 {
		t.Fatalf("over the rate: granted %d, %+v; want 0 and a 429 rate-limited with Retry-After 2", got, p)
	}
	if got, p := l.Take(bob, 1); got != 1 || p != nil {
		t.Fatalf("another credential is limited with the first: %d, %v", got, p)
	}
	now = now.Add(2 * time.Second)
	if got, p := l.Take(alice, 3); got != 1 || p == nil || p.RetryAfterSeconds() != 4 {
		t.Fatalf("a batch of 3 with one token: granted %d, %+v; want 1 and Retry-After 4 (two tokens)", got, p)
	}

	if NewPublishLimiter(PublishConfig{}) != nil {
		t.Fatal("rate 0 makes a limiter")
	}
	var off *PublishLimiter
	if got, p := off.Take(alice, 1000); got != 1000 || p != nil {
		t.Fatalf("no limiter: granted %d, %v", got, p)
	}
	if b := DefaultBurst(0.5); b != 10 {
		t.Fatalf("DefaultBurst(0.5) = %d, want 10", b)
	}
	if b := DefaultBurst(100); b != 200 {
		t.Fatalf("DefaultBurst(100) = %d, want 200", b)
	}
}

// TestPublishLimiterBounded: a flood of minted credentials never grows the table past its
// capacity.
func TestPublishLimiterBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewPublishLimiter(PublishConfig{Rate: 1, Burst: 1, Table: 500, Now: func() time.Time { return now }})
	for i := range 50_000 {
		if got, _ := l.Take(identityN(i), 1); got != 1 {
			t.Fatalf("credential %d, new, was refused", i)
		}
		if n := l.buckets.len(); n > 500 {
			t.Fatalf("after %d credentials the table holds %d", i+1, n)
		}
	}
	if len(l.buckets.slots) > 500 {
		t.Fatalf("%d slots allocated for a capacity of 500", len(l.buckets.slots))
	}
}

// BenchmarkPublishLimiterTake is the check every publish pays: off (a nil limiter), and on for
// credentials that are within their rate.
//
//	go test -run '^$' -bench PublishLimiterTake -benchmem ./gateway/admission/
func BenchmarkPublishLimiterTake(b *testing.B) {
	b.Run("off", func(b *testing.B) {
		b.ReportAllocs()
		var l *PublishLimiter
		id := identityN(1)
		for b.Loop() {
			l.Take(id, 1)
		}
	})
	b.Run("on", func(b *testing.B) {
		b.ReportAllocs()
		l := NewPublishLimiter(PublishConfig{Rate: 1e9, Burst: 1e6})
		for i := 0; b.Loop(); i++ {
			l.Take(identityN(i%1000), 1)
		}
	})
	b.Run("refused", func(b *testing.B) {
		b.ReportAllocs()
		l := NewPublishLimiter(PublishConfig{Rate: 1e-3, Burst: 1})
		id := identityN(1)
		for b.Loop() {
			l.Take(id, 1)
		}
	})
}
