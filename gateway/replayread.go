package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// replayReads shares the history reads of subscribers that ask the same question at the same
// time. In a reconnect storm thousands of clients resume one channel from the same id; with
// Valkey each would otherwise make its own round trip and decode the same entries.
//
// A read may be shared only by subscriptions registered before it started: the seam's guarantee
// (a message is in the history read or arrives live) needs the read to begin after the
// subscription exists. So a caller never joins a read already in flight; it joins the next one,
// which starts when the current one ends and serves everyone who arrived meanwhile. A caller
// that arrives when nothing is in flight starts a read at once, so a lone subscribe waits for
// nothing.
//
// At most maxReplayReads reads run at once per node; the others wait their turn before their
// broker deadline starts. Hundreds of clients resuming different positions at once, each with
// a backlog of thousands of entries, otherwise all ask Valkey together: every read then takes
// longer than the broker timeout, all fail, and the clients' retries repeat it without end.
// In turn, each read takes what one read takes, and the turns move on.
type replayReads struct {
	mu      sync.Mutex
	flights map[replayKey]*replayFlight
	turns   chan struct{} // a token per read running; made on first use
}

// maxReplayReads bounds the history reads of subscribes running at once on a node: enough to
// keep a remote broker busy (Valkey runs one command at a time anyway), few enough that each
// gets the broker's attention within its deadline.
const maxReplayReads = 8

type replayKey struct {
	channel string
	q       broker.HistoryQuery
}

// replayFlight is the reads of one key: the one in flight, and the batch waiting for the next.
type replayFlight struct {
	next *replayBatch // callers for the next read; nil when none waits
}

// replayBatch is the callers of one read and its answer, set before done is closed. The page's
// Messages are shared by every caller: read-only.
type replayBatch struct {
	done chan struct{}
	page broker.HistoryPage
	err  error
}

// read returns b's history of channel for q, sharing the broker call as described above. The
// broker call runs with its own deadline (timeout), since it may serve callers other than this
// one; this caller stops waiting when ctx ends.
func (r *replayReads) read(ctx context.Context, b broker.Broker, timeout time.Duration, channel string, q broker.HistoryQuery) (broker.HistoryPage, error) {
	key := replayKey{channel: channel, q: q}
	r.mu.Lock()
	if r.flights == nil {
		r.flights = make(map[replayKey]*replayFlight)
		r.turns = make(chan struct{}, maxReplayReads)
	}
	f := r.flights[key]
	if f == nil {
		f = &replayFlight{}
		r.flights[key] = f
		go r.fly(key, f, b, timeout)
	}
	batch := f.next
	if batch == nil {
		batch = &replayBatch{done: make(chan struct{})}
		f.next = batch
	}
	r.mu.Unlock()
	select {
	case <-batch.done:
		return batch.page, batch.err
	case <-ctx.Done():
		return broker.HistoryPage{}, ctx.Err()
	}
}

// fly makes the reads of one key, one after another, while callers wait for one. It lives only
// as long as reads are asked for: no goroutine stays behind for an idle channel.
func (r *replayReads) fly(key replayKey, f *replayFlight, b broker.Broker, timeout time.Duration) {
	for {
		r.mu.Lock()
		batch := f.next
		f.next = nil
		if batch == nil {
			delete(r.flights, key)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		r.turns <- struct{}{}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		batch.page, batch.err = b.History(ctx, key.channel, key.q)
		cancel()
		<-r.turns
		close(batch.done)
	}
}
