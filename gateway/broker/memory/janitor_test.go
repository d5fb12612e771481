package memory

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// channelCount returns how many channels hold state.
func (b *Broker) channelCount() int {
	n := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.RLock()
		n += len(s.channels)
		s.mu.RUnlock()
	}
	return n
}

// TestSweepFreesIdleChannels: a channel's state goes once it has no log, no interest and no
// idempotency key, and not before.
func TestSweepFreesIdleChannels(t *testing.T) {
	now := time.UnixMilli(1_732_700_000_000)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	b := New(Options{
		Now:               clock,
		Retention:         broker.RetentionPolicy{Default: broker.Retention{Size: 10, TTL: time.Minute}},
		IdempotencyWindow: time.Hour,
	})
	defer b.Close()
	ctx := t.Context()
	data := json.RawMessage(`{}`)
	mustPublish := func(req broker.PublishRequest) {
		t.Helper()
		if _, err := b.Publish(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	mustPublish(broker.PublishRequest{Channel: "keyed", Data: data, IdempotencyKey: "k"})
	mustPublish(broker.PublishRequest{Channel: "plain", Data: data})
	if err := b.Subscribe(ctx, "watched"); err != nil {
		t.Fatal(err)
	}
	b.sweep()
	if n := b.channelCount(); n != 3 {
		t.Fatalf("before any expiry: %d channels, want 3", n)
	}
	advance(time.Minute)
	b.sweep()
	if n := b.channelCount(); n != 2 {
		t.Fatalf("logs expired: %d channels, want 2 (keyed: its key; watched: interest)", n)
	}
	if err := b.Unsubscribe(ctx, "watched"); err != nil {
		t.Fatal(err)
	}
	advance(time.Hour)
	b.sweep()
	if n := b.channelCount(); n != 0 {
		t.Fatalf("everything expired: %d channels, want 0", n)
	}
	// The key went with the window: the same key stores a new message.
	if res, err := b.Publish(ctx, broker.PublishRequest{Channel: "keyed", Data: data, IdempotencyKey: "k"}); err != nil || res.Duplicate {
		t.Fatalf("key after its window: %+v, %v", res, err)
	}
}

// TestSweepRacesInterest: a Subscribe racing the janitor's removal of its channel must land on
// the live channel, or its deliveries would be lost.
func TestSweepRacesInterest(t *testing.T) {
	var delivered atomic.Int64
	b := New(Options{Handler: handlerFunc(func(broker.Message) { delivered.Add(1) })})
	defer b.Close()
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // keeps making the channel idle
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = b.Subscribe(ctx, "c")
			_ = b.Unsubscribe(ctx, "c")
		}
	})
	wg.Go(func() { // keeps removing it
		for {
			select {
			case <-stop:
				return
			default:
				b.sweep()
			}
		}
	})
	for i := range 2000 {
		if err := b.Subscribe(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		before := delivered.Load()
		if _, err := b.Publish(ctx, broker.PublishRequest{Channel: "c", Data: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if delivered.Load() == before {
			t.Fatalf("round %d: a message published under interest was not delivered", i)
		}
		if err := b.Unsubscribe(ctx, "c"); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestLockRetriesRemovedChannel: a channel removed by the janitor between its lookup and its
// lock is looked up again, so a Subscribe lands on the channel that later publishes use.
func TestLockRetriesRemovedChannel(t *testing.T) {
	var delivered atomic.Int64
	b := New(Options{Handler: handlerFunc(func(broker.Message) { delivered.Add(1) })})
	defer b.Close()
	ctx := t.Context()
	if err := b.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unsubscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	var removed *channel
	testHookLookedUp = func(ch *channel) {
		if removed == nil {
			removed = ch
			b.remove(b.shardOf("c"), []*channel{ch})
		}
	}
	t.Cleanup(func() { testHookLookedUp = nil })
	if err := b.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if removed == nil || !removed.dead {
		t.Fatalf("the hook did not remove the channel")
	}
	if _, err := b.Publish(ctx, broker.PublishRequest{Channel: "c", Data: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if delivered.Load() != 1 || b.channelCount() != 1 {
		t.Fatalf("delivered %d, %d channels; want 1, 1", delivered.Load(), b.channelCount())
	}
}

type handlerFunc func(broker.Message)

func (f handlerFunc) Deliver(m broker.Message) { f(m) }

func (handlerFunc) Gap(string, broker.GapReason) {}

// TestIdempotencyQueue: expiry forgets exactly the lapsed keys, and a key published again after
// it lapsed lives its new window.
func TestIdempotencyQueue(t *testing.T) {
	var k idempotency
	t0 := time.Unix(1000, 0)
	k.remember("a", broker.ID{Ms: 1}, t0.Add(1*time.Second))
	k.remember("b", broker.ID{Ms: 2}, t0.Add(2*time.Second))
	k.remember("c", broker.ID{Ms: 3}, t0.Add(3*time.Second))
	k.expire(t0.Add(1 * time.Second))
	if _, ok := k.lookup("a", t0); ok || k.len() != 2 {
		t.Fatalf("a should be gone, 2 left; have %d", k.len())
	}
	// b lapses, then is used again before the sweep: the old queue entry must not delete it.
	k.remember("b", broker.ID{Ms: 4}, t0.Add(10*time.Second))
	k.expire(t0.Add(5 * time.Second))
	if id, ok := k.lookup("b", t0.Add(5*time.Second)); !ok || id != (broker.ID{Ms: 4}) {
		t.Fatalf("renewed b: %v, %v", id, ok)
	}
	if k.len() != 1 {
		t.Fatalf("%d keys left, want 1", k.len())
	}
	k.expire(t0.Add(10 * time.Second))
	if k.len() != 0 || k.ids != nil || k.queue != nil {
		t.Fatalf("all expired, yet %d keys, map %v, queue %v", k.len(), k.ids, k.queue)
	}
}

// TestRingGrowsAndWraps: the ring keeps the newest size messages in order through growth and
// wrap-around, and reports each evicted id.
func TestRingGrowsAndWraps(t *testing.T) {
	for _, size := range []int{1, 2, 3, 5, 8, 13} {
		var r ring
		for i := 1; i <= 3*size+2; i++ {
			evicted, ok := r.push(broker.Message{ID: broker.ID{Ms: uint64(i)}}, size)
			if wantOK := i > size; ok != wantOK || (ok && evicted.Ms != uint64(i-size)) {
				t.Fatalf("size %d push %d: evicted %v, %v", size, i, evicted, ok)
			}
			if len(r.buf) > size {
				t.Fatalf("size %d: buffer of %d", size, len(r.buf))
			}
			n := min(i, size)
			if r.len() != n {
				t.Fatalf("size %d push %d: len %d", size, i, r.len())
			}
			for j := range n {
				if got := r.at(j).ID.Ms; got != uint64(i-n+1+j) {
					t.Fatalf("size %d push %d: at(%d) = %d", size, i, j, got)
				}
			}
			for start := range n {
				dst := make([]broker.Message, n-start)
				r.copyFrom(dst, start)
				for j, m := range dst {
					if m.ID != r.at(start+j).ID {
						t.Fatalf("size %d push %d: copyFrom(%d)[%d] = %v", size, i, start, j, m.ID)
					}
				}
			}
			oldest := uint64(i - n + 1)
			for since := oldest - 1; since <= uint64(i); since++ {
				if got, want := r.after(broker.ID{Ms: since}), int(since-(oldest-1)); got != want {
					t.Fatalf("size %d push %d: after(%d) = %d, want %d", size, i, since, got, want)
				}
			}
		}
	}
}
