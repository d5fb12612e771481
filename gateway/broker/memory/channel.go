package memory

import (
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// channel is the state of one channel: its log, its continuity bookkeeping, its idempotency
// keys and this node's interest in it.
type channel struct {
	// Set at creation, read-only afterwards.
	name string // a private copy: the map key and every Message.Channel share it
	size int    // Retention.Size
	ttl  time.Duration

	mu sync.Mutex // guards everything below

	dead bool // removed from its shard by the janitor; see Broker.lock
	subs int  // Subscribe calls not yet matched by Unsubscribe

	log ring
	// firstID is the first id this incarnation of the log held (zero while there is no log).
	// A log that expired and was started again by a publish is a new incarnation: a client's
	// position from the old one cannot be proven continuous with it.
	firstID broker.ID
	// trimmed is the id of the newest message trimmed from this incarnation by size (zero when
	// nothing was trimmed).
	trimmed broker.ID
	// lastID is the newest id this channel was ever given, across incarnations, so that ids stay
	// increasing when the clock goes backwards. It outlives the log (not the channel state).
	lastID broker.ID
	// lastWrite is when the log was last published to; the log expires ttl after it.
	lastWrite time.Time
	// lastEvent is the event name of the newest message, shared by the next ones that have it.
	lastEvent string

	keys idempotency
}

// newChannel makes a channel's state. Its ids start above epoch.
func newChannel(name string, r broker.Retention, epoch broker.ID) *channel {
	return &channel{name: strings.Clone(name), size: r.Size, ttl: r.TTL, lastID: epoch}
}

// publish stores req (already validated) and hands it to h when there is interest.
// ch.mu must be held.
func (ch *channel) publish(req broker.PublishRequest, now time.Time, window time.Duration, h broker.Handler) broker.PublishResult {
	ch.expire(now)
	if req.IdempotencyKey != "" {
		if id, ok := ch.keys.lookup(req.IdempotencyKey, now); ok {
			return broker.PublishResult{ID: id, Duplicate: true}
		}
	}
	id := nextID(ch.lastID, now)
	msg := broker.Message{
		Channel: ch.name,
		ID:      id,
		Event:   ch.event(req.Event),
		// A copy: callers may reuse their buffer once Publish returns.
		Data: append(make(json.RawMessage, 0, len(req.Data)), req.Data...),
	}
	if ch.log.len() == 0 {
		ch.firstID = id // a new incarnation starts
	}
	if evicted, ok := ch.log.push(msg, ch.size); ok {
		ch.trimmed = evicted
	}
	ch.lastID = id
	ch.lastWrite = now
	if req.IdempotencyKey != "" {
		ch.keys.remember(strings.Clone(req.IdempotencyKey), id, now.Add(window))
	}
	// Still under the lock: this is what keeps deliveries in id order and one at a time.
	if ch.subs > 0 && h != nil {
		h.Deliver(msg)
	}
	return broker.PublishResult{ID: id}
}

// event returns a private copy of name (the caller's string might pin a whole request body),
// reusing the previous message's copy when the name is the same, as it mostly is.
// ch.mu must be held.
func (ch *channel) event(name string) string {
	if name != ch.lastEvent {
		ch.lastEvent = strings.Clone(name)
	}
	return ch.lastEvent
}

// nextID returns the id of a message stored at now after last: the current millisecond with
// sequence 0, or, when the clock has not moved past last (same millisecond, or gone backwards),
// the id right after last.
func nextID(last broker.ID, now time.Time) broker.ID {
	ms := now.UnixMilli()
	if ms > 0 && uint64(ms) > last.Ms {
		return broker.ID{Ms: uint64(ms)}
	}
	return last.Next()
}

// expire drops the log when it has been silent for the channel's TTL. ch.mu must be held.
func (ch *channel) expire(now time.Time) {
	if ch.log.len() > 0 && now.Sub(ch.lastWrite) >= ch.ttl {
		ch.log = ring{} // let the buffer go
		ch.firstID, ch.trimmed = broker.ID{}, broker.ID{}
	}
}

// history answers q from the log. ch.mu must be held and expire must have run.
func (ch *channel) history(q broker.HistoryQuery, epoch broker.ID) broker.HistoryPage {
	n := ch.log.len()
	if n == 0 {
		return emptyHistory(q.Since, epoch)
	}
	gap := ch.gapAfter(q.Since, epoch)
	if q.Since == epoch {
		// The client saw this channel empty in this process: it misses nothing unless
		// something was trimmed.
		gap = broker.GapNone
		if !ch.trimmed.IsZero() || !epoch.Less(ch.firstID) {
			gap = broker.GapTrimmed
		}
	}
	page := broker.HistoryPage{LastID: ch.log.at(n - 1).ID, Gap: gap}
	start := ch.log.after(q.Since)
	avail := n - start
	if q.StartOnly && q.Newest {
		page.Start = q.Since
		if avail > q.Limit {
			page.Start = ch.log.at(n - q.Limit - 1).ID
			if page.Gap == broker.GapNone {
				page.Gap = broker.GapReplayCap
			}
		}
		page.Complete = page.Gap == broker.GapNone
		return page
	}
	if q.Limit > 0 && avail > 0 {
		count := min(avail, q.Limit)
		if avail > q.Limit {
			if q.Newest {
				start = n - q.Limit
				if page.Gap == broker.GapNone {
					page.Gap = broker.GapReplayCap // the older ones were skipped
				}
			} else {
				page.More = true
			}
		}
		if q.MaxBytes > 0 && !q.Newest {
			if fit := ch.fitting(start, count, q.MaxBytes); fit < count {
				count, page.More = fit, true
			}
		}
		page.Messages = make([]broker.Message, count)
		ch.log.copyFrom(page.Messages, start)
	}
	page.Complete = page.Gap == broker.GapNone
	return page
}

// fitting returns how many of the count messages from the start-th oldest on fit in maxBytes
// (at least one). ch.mu must be held.
func (ch *channel) fitting(start, count, maxBytes int) int {
	size := 0
	for i := range count {
		size += broker.MessageBytes(*ch.log.at(start + i))
		if size > maxBytes {
			return max(i, 1)
		}
	}
	return count
}

// emptyHistory is the page of a channel without a log: never used, or expired. A position from
// a log that is gone cannot be proven continuous; "from the beginning" trivially can, and so can
// "empty as of this epoch" (see broker.HistoryPage.LastID for what that cannot see: a log that
// was created and expired entirely while the client was away).
func emptyHistory(since, epoch broker.ID) broker.HistoryPage {
	page := broker.HistoryPage{LastID: epoch, Complete: true}
	if !since.IsZero() && since != epoch {
		page.Gap, page.Complete = lostLog(since, epoch), false
	}
	return page
}

// gapAfter says what, if anything, this channel lost of what it stored after since.
// ch.mu must be held and the log must not be empty.
func (ch *channel) gapAfter(since, epoch broker.ID) broker.GapReason {
	if since.IsZero() {
		if ch.trimmed.IsZero() {
			return broker.GapNone
		}
		return broker.GapTrimmed
	}
	if !ch.trimmed.IsZero() && since.Less(ch.trimmed) {
		return broker.GapTrimmed // something after since was trimmed
	}
	if since.Less(ch.firstID) {
		// since comes from before this log began: an earlier incarnation, or a restart.
		return lostLog(since, epoch)
	}
	if ch.log.at(ch.log.len() - 1).ID.Less(since) {
		return broker.GapBrokerReset // a position beyond the newest id did not come from this log
	}
	return broker.GapNone
}

// lostLog is the reason a position from a log that is gone cannot be resumed: a position from
// before this process's epoch comes from a broker that lost its memory; a later one from a log
// of this process that expired. (A position this process never handed out, say a made-up one
// above the epoch, reads as expired too: the broker cannot tell it apart.)
func lostLog(since, epoch broker.ID) broker.GapReason {
	if since.Less(epoch) {
		return broker.GapBrokerReset
	}
	return broker.GapExpired
}

// idle reports whether the channel holds nothing worth keeping: no log, no interest, no keys.
// ch.mu must be held.
func (ch *channel) idle() bool {
	return ch.log.len() == 0 && ch.subs == 0 && ch.keys.len() == 0
}
