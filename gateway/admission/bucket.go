package admission

import (
	"sync"
	"time"
)

// bucketTable holds a token bucket per key (a client address for connects, a credential's
// identity for publishes), for at most a fixed number of keys, so that no number of distinct
// keys makes it grow past its capacity. Keys are fixed-size values (netip.Addr, a digest), so
// the capacity bounds its memory too. The text below says "address" for a key.
//
// Its entries are kept in least-recently-seen order. An entry whose bucket has refilled is the
// same as no entry (a new address starts with a full bucket), so such entries are dropped from
// the old end as new connects come in: the table forgets idle addresses by itself. When it is
// full of addresses that are all still refilling, the least recently seen one is forgotten,
// which gives that address a full bucket again if it comes back: an attacker with more addresses
// than the table holds gets a burst per address per cycle through them, and the node-wide limit
// is what bounds that.
//
// mu guards everything below it; no method calls out while holding it.
type bucketTable[K comparable] struct {
	rate  float64 // tokens per second
	burst float64 // bucket size; a new address starts full
	max   int     // capacity in addresses

	mu    sync.Mutex
	index map[K]int32
	slots []bucket[K] // entries; a free one is on the free list
	free  []int32
	head  int32 // most recently seen, -1 when empty
	tail  int32 // least recently seen, -1 when empty
}

type bucket[K comparable] struct {
	key        K
	tokens     float64
	at         int64 // unix nanoseconds of the last refill
	prev, next int32 // toward head, toward tail; -1 at the ends
}

// dropPerTake bounds how many refilled entries one take drops, so that no connect pays for a
// long sweep; the rest go on later takes.
const dropPerTake = 8

func newBucketTable[K comparable](rate float64, burst, max int) *bucketTable[K] {
	return &bucketTable[K]{rate: rate, burst: float64(burst), max: max,
		index: make(map[K]int32), head: -1, tail: -1}
}

// take takes a token for key at now. When the bucket is empty it takes nothing and says how
// long until it holds a token again.
func (t *bucketTable[K]) take(key K, now time.Time) (ok bool, wait time.Duration) {
	return t.takeN(key, 1, now)
}

// takeN takes n tokens for key at now, all or none. It takes them when the bucket holds n, or
// is full when n is more than it can hold: the bucket then goes below empty by the rest and
// refills from there, so n is paid for in full before the key gets another token. When it takes
// nothing it says how long until it would.
func (t *bucketTable[K]) takeN(key K, n int, now time.Time) (ok bool, wait time.Duration) {
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropRefilled(ns)
	i, found := t.index[key]
	if found {
		t.unlink(i)
		t.refill(&t.slots[i], ns)
	} else {
		i = t.alloc(key, ns)
	}
	t.pushFront(i)
	b := &t.slots[i]
	need := min(float64(n), t.burst)
	if b.tokens >= need {
		b.tokens -= float64(n)
		return true, 0
	}
	return false, time.Duration((need - b.tokens) / t.rate * float64(time.Second))
}

// len is the number of addresses the table holds.
func (t *bucketTable[K]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.index)
}

func (t *bucketTable[K]) refill(b *bucket[K], ns int64) {
	if ns > b.at {
		b.tokens = min(t.burst, b.tokens+float64(ns-b.at)/float64(time.Second)*t.rate)
	}
	b.at = ns
}

// dropRefilled forgets entries at the old end whose buckets are full again. mu must be held.
func (t *bucketTable[K]) dropRefilled(ns int64) {
	for n := 0; n < dropPerTake && t.tail >= 0; n++ {
		b := &t.slots[t.tail]
		if b.tokens+float64(ns-b.at)/float64(time.Second)*t.rate < t.burst {
			return
		}
		t.remove(t.tail)
	}
}

// alloc makes an entry for key with a full bucket, forgetting the least recently seen address
// when the table is full. The entry is not linked yet. mu must be held.
func (t *bucketTable[K]) alloc(key K, ns int64) int32 {
	if len(t.index) >= t.max {
		t.remove(t.tail)
	}
	var i int32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.slots = append(t.slots, bucket[K]{})
		i = int32(len(t.slots) - 1)
	}
	t.slots[i] = bucket[K]{key: key, tokens: t.burst, at: ns, prev: -1, next: -1}
	t.index[key] = i
	return i
}

// remove forgets entry i. mu must be held.
func (t *bucketTable[K]) remove(i int32) {
	t.unlink(i)
	delete(t.index, t.slots[i].key)
	t.slots[i] = bucket[K]{}
	t.free = append(t.free, i)
}

func (t *bucketTable[K]) unlink(i int32) {
	b := &t.slots[i]
	if b.prev >= 0 {
		t.slots[b.prev].next = b.next
	} else if t.head == i {
		t.head = b.next
	}
	if b.next >= 0 {
		t.slots[b.next].prev = b.prev
	} else if t.tail == i {
		t.tail = b.prev
	}
	b.prev, b.next = -1, -1
}

func (t *bucketTable[K]) pushFront(i int32) {
	b := &t.slots[i]
	b.prev, b.next = -1, t.head
	if t.head >= 0 {
		t.slots[t.head].prev = i
	}
	t.head = i
	if t.tail < 0 {
		t.tail = i
	}
}
