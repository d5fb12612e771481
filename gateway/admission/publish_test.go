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

// TestBucketTakeN: a take of n tokens is all or none; more than a burst is taken from a full
// bucket, which then refills from below empty.
func TestBucketTakeN(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a := identityN(1)
	tb := newBucketTable[auth.Identity](2, 5, 10)
	steps := []struct {
		at     time.Duration
		n      int
		ok     bool
		waitMs int64
		why    string
	}{
		{0, 3, true, 0, "within the burst"},
		{0, 3, false, 500, "more than is left: none taken, until the bucket holds 3"},
		{0, 2, true, 0, "what is left"},
		{0, 1, false, 500, "empty"},
		{250 * time.Millisecond, 1, false, 250, "half a token"},
		{500 * time.Millisecond, 1, true, 0, "refilled one"},
		{500 * time.Millisecond, 20, false, 2500, "more than the burst: until full"},
		{3 * time.Second, 20, true, 0, "more than the burst from a full bucket"},
		{3 * time.Second, 1, false, 8000, "paying the 15 over the burst off first"},
		{11 * time.Second, 1, true, 0, "paid off"},
	}
	for i, s := range steps {
		ok, wait := tb.takeN(a, s.n, t0.Add(s.at))
		if ok != s.ok || wait.Milliseconds() != s.waitMs {
			t.Fatalf("step %d (%s): ok=%v wait %v, want ok=%v wait %dms", i, s.why, ok, wait, s.ok, s.waitMs)
		}
	}
}

func TestPublishLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewPublishLimiter(PublishConfig{Rate: 0.5, Burst: 2, Now: func() time.Time { return now }})
	alice, bob := identityN(1), identityN(2)
	for i := range 2 {
		if p := l.Take(alice, 1); p != nil {
			t.Fatalf("publish %d within the burst: %v", i, p)
		}
	}
	p := l.Take(alice, 1)
	if p == nil || p.Status != http.StatusTooManyRequests || p.Type != problem.TypeRateLimited || p.RetryAfterSeconds() != 2 {
		t.Fatalf("over the rate: %+v; want a 429 rate-limited with Retry-After 2", p)
	}
	if p := l.Take(bob, 1); p != nil {
		t.Fatalf("another credential is limited with the first: %v", p)
	}
	now = now.Add(2 * time.Second)
	if p := l.Take(alice, 2); p == nil || p.RetryAfterSeconds() != 2 {
		t.Fatalf("a batch of 2 with one token: %+v; want refused whole, Retry-After 2", p)
	}
	if p := l.Take(alice, 1); p != nil {
		t.Fatalf("the token the refused batch left: %v", p)
	}

	if NewPublishLimiter(PublishConfig{}) != nil {
		t.Fatal("rate 0 makes a limiter")
	}
	var off *PublishLimiter
	if p := off.Take(alice, 1000); p != nil {
		t.Fatalf("no limiter: %v", p)
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
		if p := l.Take(identityN(i), 1); p != nil {
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
