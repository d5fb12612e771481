package herald

import (
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"time"
)

// Message is a message of a channel. The Client hands received messages to handlers; the
// Publisher's PublishBatch takes messages to send (ID is then ignored).
type Message struct {
	Channel string `json:"channel"`
	// ID is the message's position in its channel's log ("1732700000512-0"), opaque to clients.
	ID string `json:"id,omitempty"`
	// Event is the publisher's event name; empty when it gave none.
	Event string `json:"event,omitempty"`
	// Data is the message's JSON value, as published.
	Data json.RawMessage `json:"data"`
}

// Decode unmarshals the message's data into v.
func (m Message) Decode(v any) error { return json.Unmarshal(m.Data, v) }

// validChannel applies the server's channel-name rule: 1-255 bytes of A-Z a-z 0-9 _ . : @ / = + -.
func validChannel(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '.' || c == ':' || c == '@' || c == '/' || c == '=' || c == '+' || c == '-':
		default:
			return false
		}
	}
	return true
}

// newIdempotencyKey returns 128 random bits in hex.
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// backoff computes exponential delays with full jitter: the n-th delay is uniform in
// [0, min(max, initial*2^n)]. It is not safe for concurrent use.
type backoff struct {
	initial, max time.Duration
	n            int
}

// ceiling is the upper bound of the next delay.
func (b *backoff) ceiling() time.Duration {
	d := b.initial
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// next returns the next delay and counts a failure.
func (b *backoff) next() time.Duration {
	d := jitter(b.ceiling())
	b.n++
	return d
}

func (b *backoff) reset() { b.n = 0 }

// jitter returns a random duration in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}
