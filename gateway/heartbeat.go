package gateway

import (
	"sync"
	"sync/atomic"
	"time"
)

// wheel drives every connection's periodic work (pings, dead-peer detection, auth deadlines,
// token expiry) from one goroutine and one ticker, instead of a timer per connection.
//
// Connections are spread over slots, one slot per second of the heartbeat interval; each tick
// visits one slot, so each connection is visited once per interval and the work is spread evenly.
type wheel struct {
	slots []wheelSlot
	next  int          // slot the next tick visits; owned by the wheel goroutine
	ticks atomic.Int64 // seconds since the wheel started: a cheap clock for lastSeen
	stop  chan struct{}
	done  chan struct{}
	step  time.Duration
	// onTick, when set, runs on every tick (for deadlines finer than the interval).
	onTick func(now int64)
}

type wheelSlot struct {
	mu   sync.Mutex
	head *conn
	n    int
}

func newWheel(interval, step time.Duration, onTick func(now int64)) *wheel {
	n := max(1, int(interval/step))
	w := &wheel{slots: make([]wheelSlot, n), stop: make(chan struct{}), done: make(chan struct{}), step: step, onTick: onTick}
	go w.run()
	return w
}

// now returns the wheel's clock in ticks.
func (w *wheel) now() int64 { return w.ticks.Load() }

// slotOf is the slot a connection lives in for its whole life, derived from its id rather than
// stored in it.
func (w *wheel) slotOf(c *conn) *wheelSlot { return &w.slots[c.id%uint64(len(w.slots))] }

func (w *wheel) add(c *conn) {
	s := w.slotOf(c)
	s.mu.Lock()
	c.wheelNext = s.head
	if s.head != nil {
		s.head.wheelPrev = c
	}
	s.head = c
	s.n++
	s.mu.Unlock()
}

func (w *wheel) remove(c *conn) {
	s := w.slotOf(c)
	s.mu.Lock()
	if c.wheelPrev != nil {
		c.wheelPrev.wheelNext = c.wheelNext
	} else if s.head == c {
		s.head = c.wheelNext
	} else {
		s.mu.Unlock()
		return // not in the wheel
	}
	if c.wheelNext != nil {
		c.wheelNext.wheelPrev = c.wheelPrev
	}
	c.wheelPrev, c.wheelNext = nil, nil
	s.n--
	s.mu.Unlock()
}

// each calls fn for every connection in the wheel. fn runs without the slot lock held.
func (w *wheel) each(fn func(c *conn)) {
	for i := range w.slots {
		for _, c := range w.snapshot(i) {
			fn(c)
		}
	}
}

// len returns the number of connections in the wheel.
func (w *wheel) len() int {
	n := 0
	for i := range w.slots {
		s := &w.slots[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

func (w *wheel) snapshot(i int) []*conn {
	s := &w.slots[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, s.n)
	for c := s.head; c != nil; c = c.wheelNext {
		out = append(out, c)
	}
	return out
}

func (w *wheel) run() {
	defer close(w.done)
	t := time.NewTicker(w.step)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			now := w.ticks.Add(1)
			// Heartbeats run outside the slot lock: they write to sockets and may close.
			for _, c := range w.snapshot(w.next) {
				c.proto.heartbeat(now)
			}
			w.next = (w.next + 1) % len(w.slots)
			if w.onTick != nil {
				w.onTick(now)
			}
		case <-w.stop:
			return
		}
	}
}

func (w *wheel) close() {
	close(w.stop)
	<-w.done
}
