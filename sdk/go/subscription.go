package herald

import "sync"

// SubOption configures one subscription.
type SubOption func(*Subscription)

// WithSince starts the subscription after the message id given instead of live: it first
// receives the retained messages after id ("0": everything retained), then live ones. If the
// server cannot prove that none is missing, the gap callback runs first.
func WithSince(id string) SubOption { return func(s *Subscription) { s.pos = id } }

// OnGap sets the subscription's gap callback: called (in order with the messages, from the
// handler's goroutine) when the server cannot prove that nothing was missed since the
// subscription's position, with the server's reason: history trimmed by size (GapTrimmed) or
// expired (GapExpired), a log lost in a restart (GapBrokerReset), more messages missed than the
// replay cap (GapReplayCap), or messages lost while the gateway's link to its broker was down
// (GapLinkLost). Refetch the channel's state when it runs.
func OnGap(fn func(channel string, reason GapReason)) SubOption {
	return func(s *Subscription) { s.onGap = fn }
}

// GapReason is why the server could not give a subscription every message: the "reason" of its
// gap notice. A server that predates reasons sends none: then it is "".
type GapReason string

// The reasons a gateway gives (docs/protocol.md, "Guarantees").
const (
	GapTrimmed     GapReason = "trimmed"      // history dropped by the gateway's history size
	GapExpired     GapReason = "expired"      // the channel's log expired after its TTL of silence
	GapBrokerReset GapReason = "broker_reset" // the broker lost its data (a restart without it)
	GapReplayCap   GapReason = "replay_cap"   // more was missed than one replay carries: only the newest came
	GapLinkLost    GapReason = "link_lost"    // the gateway lost its broker link; messages meanwhile are gone
)

// OnError sets a callback for the server refusing the subscription (a *SubscribeError, for
// example code "forbidden"). The subscription is then removed from the Client.
func OnError(fn func(error)) SubOption { return func(s *Subscription) { s.onError = fn } }

// Subscription is a Client's subscription to one channel.
type Subscription struct {
	c       *Client
	channel string
	handler func(Message)
	onGap   func(string, GapReason)
	onError func(error)

	// guarded by c.mu
	pos    string // resume position: the last id received, or the server's; "" = live only
	active bool   // the current WebSocket session's subscribe was acknowledged

	// delivery queue, guarded by qmu
	qmu   sync.Mutex
	queue []event

	wake     chan struct{} // cap 1: the queue has events
	stop     chan struct{} // closed by halt
	haltOnce sync.Once
}

type eventKind uint8

const (
	evMessage eventKind = iota
	evGap
	evRefused // the server refused the subscription: the last event
)

type event struct {
	kind   eventKind
	msg    Message
	reason GapReason // of an evGap
	err    error
}

func newSubscription(c *Client, channel string, handler func(Message), opts []SubOption) *Subscription {
	s := &Subscription{c: c, channel: channel, handler: handler,
		wake: make(chan struct{}, 1), stop: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	if s.onGap == nil {
		s.onGap = c.cfg.onGap
	}
	return s
}

// Channel returns the subscription's channel.
func (s *Subscription) Channel() string { return s.channel }

// LastID returns the subscription's position: the id of the last message received (queued for
// the handler), or where the server placed it when none came yet. A later Subscribe with
// WithSince(LastID()), even from another process, resumes right after it.
func (s *Subscription) LastID() string {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.pos
}

// Unsubscribe ends the subscription (see Client.Unsubscribe).
func (s *Subscription) Unsubscribe() error {
	s.c.mu.Lock()
	current := s.c.subs[s.channel] == s
	s.c.mu.Unlock()
	if !current {
		return nil
	}
	return s.c.Unsubscribe(s.channel)
}

// push queues an event for the dispatcher. It never blocks.
func (s *Subscription) push(e event) {
	s.qmu.Lock()
	s.queue = append(s.queue, e)
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// halt stops the dispatcher; queued events are dropped.
func (s *Subscription) halt() { s.haltOnce.Do(func() { close(s.stop) }) }

func (s *Subscription) halted() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// dispatch calls the handler for each queued event, in order, until halted.
func (s *Subscription) dispatch() {
	defer s.c.handlers.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		for {
			s.qmu.Lock()
			batch := s.queue
			s.queue = nil
			s.qmu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, e := range batch {
				if s.halted() {
					return
				}
				switch e.kind {
				case evMessage:
					s.handler(e.msg)
				case evGap:
					if s.onGap != nil {
						s.onGap(s.channel, e.reason)
					}
				case evRefused:
					if s.onError != nil {
						s.onError(e.err)
					}
					s.c.reportError(e.err)
					return
				}
			}
		}
	}
}
