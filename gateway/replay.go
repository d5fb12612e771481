package gateway

import (
	"context"

	"github.com/herald-gateway/herald/gateway/broker"
)

// A replay (the messages a resuming WebSocket or SSE subscription missed) is read and written
// in pages, paced by the socket: a page is read from the log only once the previous one has
// left the connection's queue, so a client that does not read holds its socket buffer, one page
// and its live queue, whatever the log holds. The common resume, a backlog of one page, costs
// one read and one write, as a whole replay did.
//
// While a replay is paged its subscription buffers live messages (hub.go, pending); past its
// bound they are dropped and read from the log instead, which holds them (the broker stores
// before it delivers). The subscription goes live once a page read that began after the last
// overflow reaches the end of the log (see Hub.goLive): the messages buffered since are then
// exactly those the reads did not cover. So a slow reader is never disconnected for its replay.

const (
	// replayPageBytes bounds the message bytes of a replay page (broker.HistoryQuery.MaxBytes).
	replayPageBytes = 256 << 10
	// replayPageMessages bounds the messages of a replay page.
	replayPageMessages = 256
	// replayKeepBytes bounds the first pages an SSE stream keeps, read while it subscribes, to
	// write once the stream has started; the channels past it read theirs again in their turn.
	replayKeepBytes = 2 * replayPageBytes
)

// replayRun is a connection's replays in progress, one subscription's after another. It exists
// only while a replay is paged or its last page is queued (conn.replay), so an idle connection
// holds none.
//
// Concurrency contract: conn.replay, end and waiting are guarded by the connection's write lock.
// jobs belongs to whoever continues the run: the connection's event handler (a subscribe, or the
// flush that wrote the end of a page) or, before the connection is registered with epoll, the
// goroutine that sets it up. They never run at once, so at most one page read is in flight per
// connection, and no goroutine waits while the socket is full.
type replayRun struct {
	// end is how many queued bytes, from the head, reach to the end of the last page queued; they
	// do not count toward the slow-consumer bound (see writeReplayLocked).
	end int
	// waiting says a page is queued: the flush that writes its end continues the run.
	waiting bool
	jobs    []*replayJob // the head is being paged
}

// replayJob is one subscription's replay.
type replayJob struct {
	sub *subscription
	// from is where the replay reads on: the last message it wrote, or where it starts.
	from broker.ID
	// first is the replay's first page when join's read of it was kept; nil: read it from from.
	first *broker.HistoryPage
	// fresh says the next page is the replay's first: its gap is the one the client was told
	// when it subscribed (or is told with it: gap), not news.
	fresh bool
	lead  []byte           // bytes to write before the first page (WebSocket: the subscribed frame)
	gap   broker.GapReason // a gap to announce before the first page (SSE: its herald.gap)
}

// replayWriter is what a session adds to the paging of its replays.
type replayWriter interface {
	// replaying reports whether sub still wants its replay (false once unsubscribed).
	replaying(sub *subscription) bool
	// writePage writes lead, a gap notice when gap is not GapNone, and msgs (messages of j's
	// channel after j.from, in order) as one replay page, and moves j.from to the last of msgs.
	// It reports false when the connection is closed.
	writePage(j *replayJob, lead []byte, gap broker.GapReason, msgs []broker.Message) bool
	// caughtUp is called when j's replay wrote everything up to through, just before its
	// subscription goes live from there.
	caughtUp(j *replayJob, through broker.ID)
	// replaysDone is called when the run has no job left.
	replaysDone()
}

// startReplays adds jobs to the connection's run and continues it, unless a page of it is
// queued: then the flush that writes it does. Call it from the connection's event handler, or
// before the connection is registered.
func (c *conn) startReplays(jobs ...*replayJob) {
	c.wmu.Lock()
	if c.closed || c.closeAfter {
		c.wmu.Unlock()
		return // the session's cleanup releases the subscriptions
	}
	r := c.replay
	if r == nil {
		r = &replayRun{}
		c.replay = r
	}
	r.jobs = append(r.jobs, jobs...)
	wait := r.waiting
	c.wmu.Unlock()
	if !wait {
		c.continueReplay(r)
	}
}

// continueReplay pages r's replays until a page stays queued (the flush that writes its end
// calls it again), every job is done, or the connection closes. The caller is the one that may
// continue the run (see replayRun).
func (c *conn) continueReplay(r *replayRun) {
	w := c.proto.(replayWriter)
	for {
		c.wmu.Lock()
		if c.closed || c.closeAfter || c.replay != r {
			c.wmu.Unlock()
			return
		}
		if r.end > 0 {
			r.waiting = true
			c.wmu.Unlock()
			return
		}
		if len(r.jobs) == 0 {
			c.replay = nil // the last page is out: the connection holds nothing of it any more
			c.wmu.Unlock()
			return
		}
		j := r.jobs[0]
		c.wmu.Unlock()
		finished, ok := c.replayStep(w, j)
		if !ok {
			return
		}
		if finished {
			r.jobs[0] = nil
			r.jobs = r.jobs[1:]
			if len(r.jobs) == 0 {
				r.jobs = nil
				w.replaysDone()
			}
		}
	}
}

// replayStep writes the next page of j and reports whether the replay is finished (its
// subscription live, or unsubscribed), and false in ok when the connection closed.
func (c *conn) replayStep(w replayWriter, j *replayJob) (finished, ok bool) {
	g := c.gw
	if !w.replaying(j.sub) {
		return true, true
	}
	page := j.first
	j.first = nil
	if page == nil {
		g.hub.beginRead(j.sub)
		p, err := g.readReplayPage(j.sub.ch.name, j.from)
		if err != nil {
			g.storeFailure(context.Background(), c.kind, "replay", err)
			c.close(causeStoreLost)
			return false, false
		}
		page = &p
	}
	gap := j.gap
	if !j.fresh && !page.Complete {
		// The log lost messages the replay had not reached yet (trimmed meanwhile): the client
		// is told, as it would be of a live gap, and the replay goes on from where the log is.
		gap = page.Gap
		g.metrics.Gaps.Inc()
	}
	lead := j.lead
	j.fresh, j.lead, j.gap = false, nil, broker.GapNone
	if !w.writePage(j, lead, gap, page.Messages) {
		return false, false
	}
	g.replayed(len(page.Messages))
	if page.More {
		return false, true
	}
	// After a gap the subscriber goes on from where the log stands: a position beyond the newest
	// id (up to broker.MaxID) did not come from this log, and keeping it would hold back every
	// live message below it.
	through := j.from
	if !page.Complete || through.Less(page.LastID) {
		through = page.LastID
	}
	j.from = through
	w.caughtUp(j, through)
	if g.hub.goLive(j.sub, through) != nil {
		return false, true // live messages overflowed during the read: read on from through
	}
	return true, true
}

// readReplayPage reads the page of a replay that follows from.
func (g *Gateway) readReplayPage(channel string, from broker.ID) (page broker.HistoryPage, err error) {
	g.poller.Blocking(func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.BrokerTimeout)
		defer cancel()
		page, err = g.replays.read(ctx, g.broker, g.cfg.BrokerTimeout, channel,
			broker.HistoryQuery{Since: from, Limit: replayPageMessages, MaxBytes: replayPageBytes})
	})
	return page, err
}

// firstPage reads how a subscription to channel from since starts (see join).
func (g *Gateway) firstPage(ctx context.Context, channel string, since *broker.ID) (broker.HistoryPage, error) {
	read := func(q broker.HistoryQuery) (broker.HistoryPage, error) {
		return g.replays.read(ctx, g.broker, g.cfg.BrokerTimeout, channel, q)
	}
	if since == nil {
		page, err := read(broker.HistoryQuery{Newest: true})
		page.Complete, page.Gap = true, broker.GapNone // live only: there is nothing to recover
		page.Start = page.LastID
		return page, err
	}
	q := broker.HistoryQuery{Since: *since, Limit: min(replayPageMessages, g.cfg.ReplayCap), MaxBytes: replayPageBytes}
	page, err := read(q)
	if err != nil {
		return page, err
	}
	page.Start = *since
	if page.More {
		// More than a page follows since: ask whether more than ReplayCap do, without reading
		// them. If so the replay is the newest ReplayCap, from where they start, with the gap
		// Newest reports.
		start, err := read(broker.HistoryQuery{Since: *since, Limit: g.cfg.ReplayCap, Newest: true, StartOnly: true})
		if err != nil {
			return page, err
		}
		if start.Start != *since {
			q.Since = start.Start
			if page, err = read(q); err != nil {
				return page, err
			}
			page.Start, page.Complete, page.Gap = start.Start, start.Complete, start.Gap
		}
	}
	if !page.Complete {
		g.metrics.Gaps.Inc()
	}
	return page, nil
}

// causeStoreLost closes a connection whose replay could not read its next page: the client
// resumes from the last message it got.
var causeStoreLost = closeCause{code: 1011, reason: "message store unavailable: resume shortly", metric: "store_unavailable"}
