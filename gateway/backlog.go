package gateway

import "sync"

// backlog bounds the fan-out work queued in the hub, counted in deliveries (a message to a
// channel with 10,000 subscribers weighs 10,000). When it is full, Deliver waits, and with it the
// publisher: latency stays bounded by what the hub can write in about a second instead of
// growing with a queue of messages (a peer's reached a minute at saturation). For the Valkey
// broker the wait holds its pub/sub reader; Valkey buffers meanwhile and, past its limit, drops
// the link, after which the broker catches up from the streams.
type backlog struct {
	mu     sync.Mutex
	cond   sync.Cond
	used   int
	limit  int
	closed bool
}

// defaultBacklog is under a second of fan-out on a small machine. The bound also sets how many
// messages a dispatcher round can batch for a large channel (100 at 10,000 subscribers), and
// bigger rounds cost less per delivery: on two shared cores with 10,000 subscribers, a bound of
// 100,000 gave 460k deliveries/s (p99 0.9 s), 250,000 gave 1.0M (p99 0.6 s), 1,000,000 gave 3.1M
// (p99 0.9 s) and 2,000,000 gave 3.4M (p99 2.0 s, the load generator being the limit).
const defaultBacklog = 1_000_000

func newBacklog(limit int) *backlog {
	b := &backlog{limit: limit}
	b.cond.L = &b.mu
	return b
}

// acquire waits until n deliveries fit and takes them; it returns the amount taken (n is
// clamped to 1..limit, so a channel bigger than the whole backlog still gets through, alone).
func (b *backlog) acquire(n int) int {
	n = min(max(n, 1), b.limit)
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used+n > b.limit && !b.closed {
		b.cond.Wait()
	}
	b.used += n
	return n
}

func (b *backlog) release(n int) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// close lets every waiter through: the hub is stopping.
func (b *backlog) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}
