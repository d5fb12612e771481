package valkey

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/herald-gateway/herald/gateway/broker"
)

const (
	// catchUpPage is how many entries one read of a catch-up returns.
	catchUpPage = 256
	// minBackoff and maxBackoff bound the waits between attempts to resubscribe or to read the
	// log while Valkey is unreachable.
	minBackoff = 20 * time.Millisecond
	maxBackoff = time.Second
)

// subscription is one channel's SSUBSCRIBE, from the first Subscribe to the last Unsubscribe:
// a receive loop that keeps it subscribed across link failures, and a queue that one drainer
// goroutine at a time hands to the Handler.
type subscription struct {
	b             *Broker
	channel, live string

	ctx           context.Context // canceled by stop; ends the loop, catch-ups and waits
	cancel        context.CancelFunc
	unsubscribing atomic.Bool           // set before SUNSUBSCRIBE: the Receive that ends then is the last
	confirms      atomic.Uint64         // subscription confirmations seen, to reset the loop's backoff
	lastErr       atomic.Pointer[error] // the latest failure to subscribe, for start's timeout
	loopDone      chan struct{}         // closed when the receive loop has returned
	ready         chan struct{}         // closed by the drainer once the starting id is known

	mu       sync.Mutex // guards queue, draining and stopped
	queue    []event    // in the order the connection delivered them
	draining bool       // a drainer goroutine runs
	stopped  bool       // no more events are queued or drained
	drainers sync.WaitGroup

	// Owned by the running drainer (handed from one to the next through mu).
	last    broker.ID // the newest id handed to the Handler, or the starting point
	started bool      // last holds the starting point: the first confirmation was handled
}

// event is a subscription confirmation or a live message, queued in connection order.
type event struct {
	confirm bool
	entry   entry
}

func (b *Broker) newSubscription(channel string) *subscription {
	s := &subscription{
		b: b, channel: channel, live: b.liveChannel(channel),
		loopDone: make(chan struct{}), ready: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(b.ctx)
	return s
}

// start runs the receive loop and waits until the subscription is confirmed and its starting
// id read (the drainer closes ready), at most twice the broker's timeout.
func (s *subscription) start(ctx context.Context) error {
	go s.receiveLoop()
	wait, cancel := context.WithTimeout(ctx, 2*s.b.timeout)
	defer cancel()
	select {
	case <-s.ready:
		return nil
	case <-s.b.ctx.Done():
		return broker.ErrClosed
	case <-wait.Done():
		if err := s.lastErr.Load(); err != nil && ctx.Err() == nil {
			return errors.Join(wait.Err(), *err)
		}
		return wait.Err()
	}
}

// unsubscribe ends the subscription on the server (best effort: the connection may be down)
// and then stops it.
func (s *subscription) unsubscribe(ctx context.Context) {
	s.unsubscribing.Store(true)
	opCtx, cancel := context.WithTimeout(ctx, s.b.timeout)
	defer cancel()
	c := s.b.client
	if err := c.Do(opCtx, c.B().Sunsubscribe().Channel(s.live).Build()).Error(); err == nil {
		select { // Receive returns once the server's sunsubscribe arrives
		case <-s.loopDone:
		case <-opCtx.Done():
		}
	}
	s.stop()
}

// stop ends the receive loop, discards queued events and waits for a running Handler call.
func (s *subscription) stop() {
	s.cancel()
	<-s.loopDone
	s.mu.Lock()
	s.stopped = true
	s.queue = nil
	s.mu.Unlock()
	s.drainers.Wait()
}

// receiveLoop keeps the channel subscribed until stop. valkey-go's Receive returns when the
// connection fails (it may also resubscribe by itself first) or when the server ends the
// subscription (SUNSUBSCRIBE, a slot moved); every confirmation, first or not, reaches
// onSubscription.
func (s *subscription) receiveLoop() {
	defer close(s.loopDone)
	c := s.b.client
	hooked := valkey.WithOnSubscriptionHook(s.ctx, s.onSubscription)
	backoff := minBackoff
	for {
		confirms := s.confirms.Load()
		err := c.Receive(hooked, c.B().Ssubscribe().Channel(s.live).Build(), s.onMessage)
		if s.ctx.Err() != nil || (err == nil && s.unsubscribing.Load()) {
			return
		}
		if err != nil {
			s.lastErr.Store(&err)
		}
		s.b.log.Warn("valkey broker: live link lost, resubscribing", "channel", s.channel, "err", err)
		if s.confirms.Load() != confirms {
			backoff = minBackoff
		}
		if !sleep(s.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// onSubscription runs on valkey-go's connection reader: it only enqueues.
func (s *subscription) onSubscription(ps valkey.PubSubSubscription) {
	if ps.Kind == "ssubscribe" && ps.Channel == s.live {
		s.confirms.Add(1)
		s.enqueue(event{confirm: true})
	}
}

// onMessage runs in Receive's goroutine, which valkey-go's reader feeds through a small
// buffer: it only decodes and enqueues.
func (s *subscription) onMessage(m valkey.PubSubMessage) {
	if m.Channel != s.live {
		return
	}
	e, err := decodeLive(m.Message)
	if err != nil {
		s.b.log.Error("valkey broker: dropped a malformed live message", "channel", s.channel, "err", err)
		return
	}
	s.enqueue(event{entry: e})
}

func (s *subscription) enqueue(ev event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.queue = append(s.queue, ev)
	if !s.draining {
		s.draining = true
		s.drainers.Add(1)
		go s.drain()
	}
}

// drain hands queued events to handle until the queue is empty or the subscription stops.
func (s *subscription) drain() {
	defer s.drainers.Done()
	var batch []event
	for {
		s.mu.Lock()
		if s.stopped || len(s.queue) == 0 {
			s.draining = false
			s.mu.Unlock()
			return
		}
		batch, s.queue = s.queue, batch[:0]
		s.mu.Unlock()
		for i := range batch {
			if s.ctx.Err() != nil {
				break
			}
			s.handle(batch[i])
		}
		clear(batch) // do not keep message data alive in the spare buffer
	}
}

// handle processes one event; see the package doc, "Node interest and outages".
func (s *subscription) handle(ev event) {
	if ev.confirm {
		if s.started { // a resubscription: read what the link missed
			s.b.log.Debug("valkey broker: resubscribed, catching up from the log", "channel", s.channel, "after", s.last.String())
			s.catchUp()
			return
		}
		if last, ok := s.readLast(); ok {
			s.last, s.started = last, true
			close(s.ready)
		}
		return
	}
	e := ev.entry
	if !s.started || !s.last.Less(e.id) {
		return // at or before the starting point, or delivered already
	}
	if e.prev != s.last && !e.prev.IsZero() {
		// Something between the last delivered message and this one did not arrive live.
		gapped := s.catchUp()
		if s.ctx.Err() != nil || !s.last.Less(e.id) {
			return
		}
		if !gapped {
			s.gap() // the log did not have this message either: it was lost or is gone
		}
	}
	// e.prev zero with a non-zero last: e starts a new log after the old one expired or was
	// deleted. Every resubscription is queued before the messages that follow it and was
	// caught up, so the link has been unbroken since last: whatever the old log held after
	// last arrived before e. Nothing was missed.
	s.deliver(e)
}

// readLast reads the channel's last id, retrying until it succeeds or the subscription stops.
func (s *subscription) readLast() (broker.ID, bool) {
	backoff := minBackoff
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.b.timeout)
		page, err := s.b.history(ctx, s.channel, broker.HistoryQuery{})
		cancel()
		if err == nil {
			return page.LastID, true
		}
		s.lastErr.Store(&err)
		if !sleep(s.ctx, backoff) {
			return broker.ID{}, false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// catchUp delivers every logged message after the last delivered one, page by page, retrying
// reads until they succeed or the subscription stops. When the log cannot prove it holds
// everything after the last delivered id (the History continuity rule: trimmed past it,
// expired or lost meanwhile), the Handler is told of the gap (GapLinkLost) first; catchUp reports whether
// it did.
func (s *subscription) catchUp() (gapped bool) {
	checked, failures := false, 0
	backoff := minBackoff
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.b.timeout)
		page, err := s.b.history(ctx, s.channel, broker.HistoryQuery{Since: s.last, Limit: catchUpPage})
		cancel()
		if err != nil {
			if failures++; failures == 1 { // once per catch-up: every channel retries during an outage
				s.b.log.Warn("valkey broker: catch-up read failed, retrying", "channel", s.channel, "err", err)
			}
			if !sleep(s.ctx, backoff) {
				return gapped
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if !checked && !page.Complete {
			s.gap()
			gapped = true
		}
		checked = true
		for _, m := range page.Messages {
			if s.ctx.Err() != nil {
				return gapped
			}
			s.b.handler.Deliver(m)
			s.last = m.ID
		}
		if !page.More {
			return gapped
		}
	}
}

func (s *subscription) deliver(e entry) {
	s.b.handler.Deliver(e.message(s.channel))
	s.last = e.id
}

func (s *subscription) gap() {
	s.b.log.Warn("valkey broker: messages missed while the live link was down are no longer in the log",
		"channel", s.channel, "after", s.last.String())
	s.b.handler.Gap(s.channel, broker.GapLinkLost)
}

// sleep waits d or until ctx is done; it reports whether the wait ran its course.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
