package memory

import (
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// idempotency remembers a channel's idempotency keys for the broker's window. Every key lives
// exactly the window, so the order keys were remembered in is the order they expire in: the
// queue lets expiry touch only the keys that are due instead of scanning them all.
// The zero value is ready to use. It is guarded by its channel's lock.
type idempotency struct {
	ids   map[string]keyEntry
	queue []queuedKey // in expiry order; queue[head:] is live
	head  int
}

type keyEntry struct {
	id      broker.ID
	expires time.Time
}

type queuedKey struct {
	key     string
	expires time.Time
}

func (k *idempotency) len() int { return len(k.ids) }

// lookup returns the id a key was first published with, while the key is remembered.
func (k *idempotency) lookup(key string, now time.Time) (broker.ID, bool) {
	e, ok := k.ids[key]
	if !ok || !now.Before(e.expires) {
		return broker.ID{}, false
	}
	return e.id, true
}

// remember records that key published id, until expires.
func (k *idempotency) remember(key string, id broker.ID, expires time.Time) {
	if k.ids == nil {
		k.ids = make(map[string]keyEntry)
	}
	k.ids[key] = keyEntry{id: id, expires: expires}
	k.queue = append(k.queue, queuedKey{key: key, expires: expires})
}

// expire forgets the keys whose time is up.
func (k *idempotency) expire(now time.Time) {
	for k.head < len(k.queue) && !now.Before(k.queue[k.head].expires) {
		q := k.queue[k.head]
		k.queue[k.head] = queuedKey{} // drop the string for the collector
		k.head++
		// The key may have been published again after it lapsed: only the latest entry counts.
		if e, ok := k.ids[q.key]; ok && !now.Before(e.expires) {
			delete(k.ids, q.key)
		}
	}
	switch {
	case k.head == len(k.queue):
		k.queue, k.head = nil, 0
		if len(k.ids) == 0 {
			k.ids = nil // a map never shrinks: start afresh
		}
	case k.head > len(k.queue)/2:
		k.queue = append(k.queue[:0:0], k.queue[k.head:]...)
		k.head = 0
	}
}
