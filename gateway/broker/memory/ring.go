package memory

import "github.com/herald-gateway/herald/gateway/broker"

// ring is a channel's log: the newest messages, oldest first, at most size of them. Its buffer
// grows by doubling up to size, so a channel with a few messages does not pay for a thousand.
// The zero ring is empty and ready to use.
type ring struct {
	buf  []broker.Message // every slot in use once len(buf) == size
	head int              // index in buf of the oldest message
	n    int              // messages held
}

func (r *ring) len() int { return r.n }

// at returns the i-th oldest message, 0 <= i < r.len().
func (r *ring) at(i int) *broker.Message {
	i += r.head
	if i >= len(r.buf) {
		i -= len(r.buf)
	}
	return &r.buf[i]
}

// push appends m; when the ring already holds size messages it overwrites the oldest and
// returns that message's id.
func (r *ring) push(m broker.Message, size int) (evicted broker.ID, ok bool) {
	if r.n == len(r.buf) && r.n < size {
		r.grow(size)
	}
	if r.n < len(r.buf) {
		*r.at(r.n) = m
		r.n++
		return broker.ID{}, false
	}
	evicted = r.buf[r.head].ID
	r.buf[r.head] = m
	if r.head++; r.head == len(r.buf) {
		r.head = 0
	}
	return evicted, true
}

// grow doubles the buffer (at least 4 slots, at most size) and lays the messages out from 0.
func (r *ring) grow(size int) {
	buf := make([]broker.Message, min(max(2*len(r.buf), 4), size))
	for i := range r.n {
		buf[i] = *r.at(i)
	}
	r.buf, r.head = buf, 0
}

// copyFrom fills dst with the messages from the i-th oldest on, in at most two copies.
func (r *ring) copyFrom(dst []broker.Message, i int) {
	i += r.head
	if i >= len(r.buf) {
		i -= len(r.buf)
	}
	n := copy(dst, r.buf[i:])
	copy(dst[n:], r.buf)
}

// after returns the index of the oldest message with an id greater than since (r.len() when
// there is none). Ids in the ring are increasing, so a binary search does.
func (r *ring) after(since broker.ID) int {
	lo, hi := 0, r.n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if since.Less(r.at(mid).ID) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}
