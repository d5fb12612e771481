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
// A queued publish whose context ends, or whose Options.Timeout passes, before its run starts
// leaves the queue and is not stored. Once its run has started it is answered with the error
// and may be stored, as any publish that fails on the way to Valkey. The publish that makes a
// run gives it a full Options.Timeout, after waiting at most one for the run before: the
// others do not fail because it waited.

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
	ctx context.Context // the caller's: it decides whether an error is the caller giving up
	msg scriptMessage
	// Set once, under pubMu, when the publish is taken into a run; run is set on the
	// publish that makes the run (the first of it) and holds the whole run.
	taken bool
	run   []*pendingPublish
	lead  chan struct{} // closed when this publish must make its run
	done  chan struct{} // closed when res and err are set
	res   broker.PublishResult
	err   error
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
	p.lead, p.done = make(chan struct{}), make(chan struct{})
	q.waiting = append(q.waiting, p)
	b.pubMu.Unlock()

	// A timer rather than a context.WithTimeout: a child context registers with its parent
	// (the HTTP request's), which cost more than the rest of the wait.
	timeout := time.NewTimer(b.timeout)
	defer timeout.Stop()
	var gaveUp error
	select {
	case <-p.done:
		return p.res, p.err
	case <-p.lead:
		b.runPublishes(ctx, req.Channel, p.run)
		return p.res, p.err
	case <-ctx.Done():
		gaveUp = ctx.Err()
	case <-timeout.C:
		gaveUp = context.DeadlineExceeded
	}
	b.pubMu.Lock()
	switch {
	case p.run != nil: // handed the next run just now: the others wait for it
		b.pubMu.Unlock()
		b.runPublishes(ctx, req.Channel, p.run)
		return p.res, p.err
	case !p.taken:
		q.waiting = slices.DeleteFunc(q.waiting, func(w *pendingPublish) bool { return w == p })
	}
	b.pubMu.Unlock()
	return broker.PublishResult{}, b.wrap(ctx, "publish", gaveUp)
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
		close(p.done)
	}
	if next != nil {
		close(next[0].lead)
	}
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
