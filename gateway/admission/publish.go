package admission

import (
	"time"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
)

// PublishConfig sets the publish rate limit. A zero Rate switches it off.
type PublishConfig struct {
	// Rate is the messages per second one credential may publish, on every path together
	// (HTTP, batch, keep-alive, WebSocket); it may be a fraction (0: no limit).
	Rate float64
	// Burst is how many messages a credential may publish at once before Rate applies
	// [twice the rate, at least 10].
	Burst int
	// Table is the most credentials whose rate is tracked at a time [DefaultRateTable].
	Table int
	// Now is the clock [time.Now]; tests set it.
	Now func() time.Time
}

// PublishLimiter limits the publishes of each credential (auth.Claims.Identity) to a token
// bucket: one token per message stored. The HTTP API and the gateway share one, so a
// credential's rate is the same whichever path it publishes on. A nil *PublishLimiter allows
// everything.
//
// Its memory is bounded like the connect rate's: at most PublishConfig.Table credentials are
// tracked, each in a fixed-size entry, however many credentials a client mints (a forgotten
// credential comes back with a full bucket; see bucketTable). It is safe for concurrent use.
type PublishLimiter struct {
	buckets *bucketTable[auth.Identity]
	now     func() time.Time
}

// NewPublishLimiter makes the limiter cfg describes, or nil when cfg.Rate is not positive.
func NewPublishLimiter(cfg PublishConfig) *PublishLimiter {
	if cfg.Rate <= 0 {
		return nil
	}
	if cfg.Table <= 0 {
		cfg.Table = DefaultRateTable
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst(cfg.Rate)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &PublishLimiter{buckets: newBucketTable[auth.Identity](cfg.Rate, cfg.Burst, cfg.Table), now: cfg.Now}
}

// DefaultBurst is the burst a rate gets when none is set: twice the rate, at least 10.
func DefaultBurst(rate float64) int { return max(10, int(2*rate+0.5)) }

// Take asks for n publishes of the credential id (n messages of a batch). It grants as many as
// the credential's bucket allows, in order, and returns that number; when it grants fewer than
// n, refusal is the 429 problem for the rest, whose RetryAfter is when the bucket holds them
// (or is full again). Nothing is taken for what is refused.
func (l *PublishLimiter) Take(id auth.Identity, n int) (granted int, refusal *problem.Details) {
	if l == nil {
		return n, nil
	}
	granted, wait := l.buckets.takeN(id, n, l.now())
	if granted == n {
		return n, nil
	}
	return granted, problem.RateLimited(wait)
}
