package brokertest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// Recorder is a broker.Handler that records every delivery and gap notice per channel and
// checks the Handler's contract as it goes: per channel, ids strictly increasing (so no
// duplicate) and no two deliveries at once. The zero Recorder is ready to use.
type Recorder struct {
	mu       sync.Mutex
	msgs     map[string][]broker.Message // by channel, in delivery order
	gaps     map[string][]RecordedGap    // by channel, in order
	busy     map[string]bool             // channels with a Deliver call in progress
	problems []string                    // contract violations seen, for Check
	changed  chan struct{}               // closed (and dropped) on the next delivery
}

var _ broker.Handler = (*Recorder)(nil)

// Deliver records msg. It never blocks for long.
func (r *Recorder) Deliver(msg broker.Message) {
	r.mu.Lock()
	if r.msgs == nil {
		r.msgs, r.busy = make(map[string][]broker.Message), make(map[string]bool)
	}
	if r.busy[msg.Channel] {
		r.problems = append(r.problems, fmt.Sprintf("%s: Deliver of %v while another delivery of the channel was in progress", msg.Channel, msg.ID))
	}
	r.busy[msg.Channel] = true
	r.mu.Unlock()

	// The lock is let go in between so that an overlapping delivery has a window to show itself.
	r.mu.Lock()
	defer r.mu.Unlock()
	r.busy[msg.Channel] = false
	prev := r.msgs[msg.Channel]
	if n := len(prev); n > 0 && !prev[n-1].ID.Less(msg.ID) {
		r.problems = append(r.problems, fmt.Sprintf("%s: delivered %v after %v", msg.Channel, msg.ID, prev[n-1].ID))
	}
	r.msgs[msg.Channel] = append(prev, msg)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// RecordedGap is one Gap call.
type RecordedGap struct {
	Reason broker.GapReason
	// Before is how many messages of the channel had been delivered when the gap was reported.
	Before int
}

// Gap records a gap notice in order with the channel's deliveries.
func (r *Recorder) Gap(channel string, reason broker.GapReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gaps == nil {
		r.gaps = make(map[string][]RecordedGap)
	}
	if r.busy[channel] {
		r.problems = append(r.problems, fmt.Sprintf("%s: Gap while a delivery of the channel was in progress", channel))
	}
	r.gaps[channel] = append(r.gaps[channel], RecordedGap{Reason: reason, Before: len(r.msgs[channel])})
}

// Gaps returns the gap notices of channel so far, in order.
func (r *Recorder) Gaps(channel string) []RecordedGap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RecordedGap(nil), r.gaps[channel]...)
}

// Messages returns what was delivered for channel so far, in delivery order.
func (r *Recorder) Messages(channel string) []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Message(nil), r.msgs[channel]...)
}

// Check fails t if any delivery broke the Handler contract (out of id order, a duplicate, or
// two deliveries of one channel at once).
func (r *Recorder) Check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		t.Error(p)
	}
}

// Wait returns the channel's deliveries once there are at least n, and fails t if that takes
// longer than timeout.
func (r *Recorder) Wait(t testing.TB, channel string, n int, timeout time.Duration) []broker.Message {
	t.Helper()
	return r.waitFor(t, channel, timeout, func(msgs []broker.Message) bool { return len(msgs) >= n },
		"%d deliveries", n)
}

// WaitID returns the channel's deliveries once the message with id is among them, and fails t
// if that takes longer than timeout.
func (r *Recorder) WaitID(t testing.TB, channel string, id broker.ID, timeout time.Duration) []broker.Message {
	t.Helper()
	return r.waitFor(t, channel, timeout, func(msgs []broker.Message) bool {
		for i := len(msgs) - 1; i >= 0; i-- {
			if msgs[i].ID == id {
				return true
			}
		}
		return false
	}, "the delivery of %v", id)
}

func (r *Recorder) waitFor(t testing.TB, channel string, timeout time.Duration, done func([]broker.Message) bool, format string, args ...any) []broker.Message {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		msgs := r.msgs[channel]
		if done(msgs) {
			msgs = append([]broker.Message(nil), msgs...)
			r.mu.Unlock()
			return msgs
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("%s: waited %v for "+format+"; got %d: %s",
				append(append([]any{channel, timeout}, args...), len(msgs), idList(msgs))...)
			return nil
		}
	}
}
