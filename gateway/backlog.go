package gateway

import (
	"sync"
	"time"
)

// backlog bounds the fan-out work queued in the hub, counted in deliveries (a message to a
// channel with 10,000 subscribers weighs 10,000). When it is full, Deliver waits, and with it the
// publisher: latency stays bounded by what the hub can write in about a second instead of
// growing with a queue of messages (a peer's reached a minute at saturation). For the Valkey
// broker the wait holds its pub/sub reader; Valkey buffers meanwhile and, past its limit, drops
// the link, after which the broker catches up from the streams.
type backlog struct {
	mu      sync.Mutex
	cond    sync.Cond
	used    int
	limit   int
	waiting int           // acquire calls waiting for room
	room    chan struct{} // closed when the backlog stops being full; nil while nobody waits for that
	closed  bool
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
	if b.used+n > b.limit && !b.closed {
		b.waiting++
		for b.used+n > b.limit && !b.closed {
			b.cond.Wait()
		}
		b.waiting--
	}
	b.used += n
	b.signalRoomLocked()
	return n
}

func (b *backlog) release(n int) {
	b.mu.Lock()
	b.used -= n
	b.signalRoomLocked()
	b.mu.Unlock()
	b.cond.Broadcast()
}

// full reports whether fan-out work is waiting for room: deliveries queued up to the limit, or
// a message that does not fit. b.mu must be held.
func (b *backlog) full() bool { return !b.closed && (b.used >= b.limit || b.waiting > 0) }

// signalRoomLocked wakes waitRoom's callers once the backlog is no longer full.
func (b *backlog) signalRoomLocked() {
	if b.room != nil && !b.full() {
		close(b.room)
		b.room = nil
	}
}

// waitRoom waits until the backlog is not full, for at most max or until done is closed, and
// reports whether it has room. Publishers call it before storing a message: with a broker that
// delivers asynchronously (Valkey), acquire holds up only the broker's delivery, not the
// publisher, and messages would pile up outside the bound.
func (b *backlog) waitRoom(done <-chan struct{}, max time.Duration) bool {
	b.mu.Lock()
	if !b.full() {
		b.mu.Unlock()
		return true
	}
	timer := time.NewTimer(max)
	defer timer.Stop()
	for b.full() {
		if b.room == nil {
			b.room = make(chan struct{})
		}
		room := b.room
		b.mu.Unlock()
		select {
		case <-room:
		case <-done:
			return false
		case <-timer.C:
			return false
		}
		b.mu.Lock()
	}
	b.mu.Unlock()
	return true
}

// close lets every waiter through: the hub is stopping.
func (b *backlog) close() {
	b.mu.Lock()
	b.closed = true
	b.signalRoomLocked()
	b.mu.Unlock()
	b.cond.Broadcast()
}
