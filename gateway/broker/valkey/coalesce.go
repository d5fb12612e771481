package valkey

import (
	"context"
	"slices"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// Concurrent publishes to one channel are coalesced. While a script call for a channel is in
// flight, further publishes to that channel queue; when the call ends, the queued ones go
// together as one call (publish.lua stores a run of messages atomically, in order). A publish
// to a channel with no call in flight goes at once, so at low load nothing waits. Under load one
// round trip, one script run and one XREVRANGE serve many messages: with 16 concurrent
// publishers, runs of 8 cost the client a fifth of the CPU per message and took a third of the
// time per message.
//
// Each run is made by one of its own publishes: when a run ends, the first queued publish is
// handed the next run (up to maxRun messages), so no caller works for others after its own
// message is stored and nothing needs a goroutine of its own.
//
// A queued publish whose context ends before its run starts leaves the queue and is not
// stored. Nor is one that has waited Options.Timeout when a run ends: it is answered as timed
// out. With at most maxRun waiting, each goes in the run after the one in flight when it came,
// which ends within Options.Timeout; behind a longer queue a publish may wait for several runs,
// and fails at the end of the first run past its timeout (no timer per publish: a timer and the
// select over it cost a tenth of the coalescing). Once its run has started it is answered with
// the error and may be stored, as any publish that fails on the way to Valkey. The publish that
// makes a run gives it a full Options.Timeout: the others do not fail because it waited.

// maxRun bounds the messages of one coalesced script call, and maxRunBytes their data, so that
// one script run does not hold Valkey long.
const (
	maxRun      = 64
	maxRunBytes = 1 << 20
)

// publishQueue holds the publishes waiting for a channel's script call in flight. Guarded by
// Broker.pubMu; present in Broker.pubQueues exactly while a call for the channel is in flight.
type publishQueue struct {
	waiting []*pendingPublish
}

// pendingPublish is one Publish call on its way to Valkey.
type pendingPublish struct {
	ctx    context.Context // the caller's: it decides whether an error is the caller giving up
	msg    scriptMessage
	queued time.Time // when it joined the queue
	// Set once, under pubMu, when the publish is taken into a run; run is set on the
	// publish that makes the run (the first of it) and holds the whole run.
	taken bool
	run   []*pendingPublish
	// wake is closed when res and err are set, or when run is: this publish must make it.
	wake chan struct{}
	res  broker.PublishResult
	err  error
}

// coalesce stores req (already validated), alone or with other publishes to its channel.
func (b *Broker) coalesce(ctx context.Context, req broker.PublishRequest) (broker.PublishResult, error) {
	p := &pendingPublish{ctx: ctx, msg: newScriptMessage(&req)}
	b.pubMu.Lock()
	q, busy := b.pubQueues[req.Channel]
	if !busy {
		b.pubQueues[req.Channel] = &publishQueue{}
		b.pubMu.Unlock()
		b.runPublishes(ctx, req.Channel, []*pendingPublish{p})
		return p.res, p.err
	}
	p.wake, p.queued = make(chan struct{}), time.Now()
	q.waiting = append(q.waiting, p)
	b.pubMu.Unlock()

	done := ctx.Done()
	if done == nil { // the fast publish path: nothing but the run can end the wait
		<-p.wake
	} else {
		select {
		case <-p.wake:
		case <-done:
			b.pubMu.Lock()
			if !p.taken { // still queued: leave
				q.waiting = slices.DeleteFunc(q.waiting, func(w *pendingPublish) bool { return w == p })
				b.pubMu.Unlock()
				return broker.PublishResult{}, b.wrap(ctx, "publish", ctx.Err())
			}
			b.pubMu.Unlock()
			<-p.wake // taken into a run meanwhile: it answers, or this publish makes it
		}
	}
	if p.run != nil {
		b.runPublishes(ctx, req.Channel, p.run)
	}
	return p.res, p.err
}

// runPublishes makes one script call for run, answers each of its publishes, and hands the next
// run, if publishes are queued, to the first of them. run[0] is the caller's own publish.
func (b *Broker) runPublishes(ctx context.Context, channel string, run []*pendingPublish) {
	msgs := make([]scriptMessage, len(run))
	for i, p := range run {
		msgs[i] = p.msg
	}
	opCtx := ctx
	if len(run) > 1 {
		// The others' messages must not fail because this caller gave up.
		opCtx = context.WithoutCancel(ctx)
	}
	opCtx, cancel := context.WithTimeout(opCtx, b.timeout)
	out := make([]broker.PublishResult, len(run))
	err := decodePublished(publishScript.exec(opCtx, b.client, b.publishCall(channel, msgs)), out)
	cancel()
	for i, p := range run {
		p.res = out[i]
		if err != nil {
			p.res, p.err = broker.PublishResult{}, b.wrap(p.ctx, "publish", err)
		}
	}

	b.pubMu.Lock()
	q := b.pubQueues[channel]
	expired := b.takeExpired(q)
	var next []*pendingPublish
	if n := runLength(q.waiting); n > 0 {
		next = slices.Clone(q.waiting[:n])
		q.waiting = slices.Delete(q.waiting, 0, n)
		for _, p := range next {
			p.taken = true
		}
		next[0].run = next
	} else {
		delete(b.pubQueues, channel)
	}
	b.pubMu.Unlock()

	for _, p := range run[1:] {
		close(p.wake)
	}
	for _, p := range expired {
		p.err = b.wrap(p.ctx, "publish", context.DeadlineExceeded)
		close(p.wake)
	}
	if next != nil {
		close(next[0].wake)
	}
}

// takeExpired removes from q the publishes that have waited Options.Timeout and returns them,
// to be answered as timed out. b.pubMu must be held.
func (b *Broker) takeExpired(q *publishQueue) []*pendingPublish {
	cutoff := time.Now().Add(-b.timeout)
	if len(q.waiting) == 0 || q.waiting[0].queued.After(cutoff) {
		return nil // the oldest is first
	}
	var expired []*pendingPublish
	q.waiting = slices.DeleteFunc(q.waiting, func(p *pendingPublish) bool {
		if p.queued.After(cutoff) {
			return false
		}
		p.taken = true
		expired = append(expired, p)
		return true
	})
	return expired
}

// runLength is how many of the queued publishes go in the next run.
func runLength(waiting []*pendingPublish) int {
	n, size := 0, 0
	for n < len(waiting) && n < maxRun {
		size += len(waiting[n].msg.data)
		if n > 0 && size > maxRunBytes {
			break
		}
		n++
	}
	return n
}
