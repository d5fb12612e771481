// Package memory is herald's embedded broker: every channel's log lives in this process, and
// messages reach the Handler of this process only. It is the default when no Valkey URL is
// configured, and the reference the conformance suite (package brokertest) is written against.
//
// Invariants that must never break:
//   - Ids are strictly increasing per channel, even when the wall clock goes backwards: an id
//     is never below the newest id the channel was given while its state is held in memory.
//   - A message is stored and handed to the Handler under its channel's lock, so deliveries of
//     one channel happen in id order and never concurrently, whatever the number of publishers.
//   - A channel's state is only removed from its shard while holding the shard's write lock and
//     the channel's lock, and is then marked dead; whoever finds a dead channel looks it up again.
//     Lock order: shard, then channel. Nothing holds a channel's lock while taking a shard's.
//   - The log never holds more than Retention.Size messages.
//   - Stored message bodies are copies: callers may reuse their buffers after Publish returns.
//     The bodies handed to the Handler and returned by History are shared with the log and are
//     read-only.
package memory

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// Options configures a Broker.
type Options struct {
	// Handler receives the messages of channels with interest (see Broker.Subscribe). It may be
	// nil: then nothing is delivered. Deliver is called inside Publish with the channel's lock
	// held: it must return quickly and must not call back into the broker.
	Handler broker.Handler
	// Retention says how much history each channel keeps. A zero Default means
	// broker.DefaultRetention; a zero Size or TTL in any rule means the Default's.
	Retention broker.RetentionPolicy
	// IdempotencyWindow is how long idempotency keys are remembered; 0 means
	// broker.DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration
	// Now returns the current time; nil means time.Now. Tests use it to move the clock.
	Now func() time.Time
}

// shardCount spreads channels over this many independently locked maps, so that publishes to
// different channels rarely contend on a map lock.
const shardCount = 64

// sweepInterval is how often the janitor drops expired logs and idempotency keys.
const sweepInterval = time.Second

// Broker is the in-memory broker. It is safe for concurrent use; create it with New.
type Broker struct {
	// Set by New and read-only afterwards.
	handler broker.Handler
	policy  broker.RetentionPolicy // zero fields already replaced by defaults
	window  time.Duration
	now     func() time.Time
	// epoch is the LastID of channels without messages: just below the first millisecond of
	// this process, so every id assigned later is above it and a position from before a restart
	// (when the memory was lost) is below it.
	epoch broker.ID

	shards [shardCount]shard

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{} // closed by Close to stop the janitor
	done      chan struct{} // closed by the janitor when it has returned
}

// shard is one part of the channel map.
type shard struct {
	mu       sync.RWMutex        // guards channels (the map, not the channels' contents)
	channels map[string]*channel // by name
	_        [32]byte            // keeps neighbouring shards' locks off one cache line
}

var _ broker.Broker = (*Broker)(nil)

// New returns a running Broker; Close stops it.
func New(opts Options) *Broker {
	b := &Broker{
		handler: opts.Handler,
		policy:  opts.Retention.WithDefaults(),
		window:  opts.IdempotencyWindow,
		now:     opts.Now,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if b.window <= 0 {
		b.window = broker.DefaultIdempotencyWindow
	}
	if b.now == nil {
		b.now = time.Now
	}
	if ms := b.now().UnixMilli(); ms > 1 {
		b.epoch = broker.ID{Ms: uint64(ms) - 1}
	}
	for i := range b.shards {
		b.shards[i].channels = make(map[string]*channel)
	}
	go b.janitor()
	return b
}

// Ready reports nil while the broker is open: memory is always reachable.
func (b *Broker) Ready(ctx context.Context) error {
	return b.check(ctx)
}

// Close stops the janitor. Afterwards every method returns broker.ErrClosed; Close itself may
// be called again and then returns nil.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.stop)
		<-b.done
	})
	return nil
}

// check returns the error an operation must fail with before it starts, if any.
func (b *Broker) check(ctx context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	return ctx.Err()
}

// shardOf picks the shard of a channel by the FNV-1a hash of its name (inlined: hash/fnv's
// interface value would cost an allocation per lookup).
func (b *Broker) shardOf(name string) *shard {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return &b.shards[h%shardCount]
}

// lock returns the named channel with its lock held, creating it when create is set; without
// create it returns nil for a channel that has no state.
func (b *Broker) lock(name string, create bool) *channel {
	s := b.shardOf(name)
	for {
		s.mu.RLock()
		ch := s.channels[name]
		s.mu.RUnlock()
		if ch == nil {
			if !create {
				return nil
			}
			ch = b.create(s, name)
		}
		if testHookLookedUp != nil {
			testHookLookedUp(ch)
		}
		ch.mu.Lock()
		if !ch.dead {
			return ch
		}
		// The janitor removed it between our lookup and our lock: look again.
		ch.mu.Unlock()
	}
}

// testHookLookedUp, when set by a test, runs between finding a channel and locking it: the
// window in which the janitor may remove it.
var testHookLookedUp func(*channel)

// create adds the named channel to s unless another goroutine just did, and returns it.
func (b *Broker) create(s *shard, name string) *channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch := s.channels[name]; ch != nil {
		return ch
	}
	ch := newChannel(name, b.policy.For(name), b.epoch)
	s.channels[ch.name] = ch
	return ch
}
