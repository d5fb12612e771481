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
	// [twice the rate, at least 10]. A larger batch passes from a full bucket, which it leaves
	// below empty.
	Burst int
	// Table is the most credentials whose rate is tracked at a time [DefaultRateTable].
	Table int
	// Now is the clock [time.Now]; tests set it.
	Now func() time.Time
}

// PublishLimiter limits the publishes of each credential (auth.Claims.Identity) to a token
// bucket: one token per message. The HTTP API and the gateway share one, so a
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

// Take asks for n publishes of the credential id at once (the messages of a batch), all or
// none. It allows them when the credential's bucket holds n tokens, or is full when n is more
// than a burst (the credential then pays the rest off before it publishes again); otherwise
// refusal is the 429 problem, whose RetryAfter is when they would be allowed, and nothing is
// taken.
func (l *PublishLimiter) Take(id auth.Identity, n int) (refusal *problem.Details) {
	if l == nil {
		return nil
	}
	if ok, wait := l.buckets.takeN(id, n, l.now()); !ok {
		return problem.RateLimited(wait)
	}
	return nil
}
