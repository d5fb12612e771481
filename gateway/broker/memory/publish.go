package memory

import (
	"context"
	"errors"
	"fmt"

	"github.com/herald-gateway/herald/gateway/broker"
)

// errInvalid is wrapped by every error about bad input.
var errInvalid = errors.New("memory broker: invalid input")

// Publish stores one message and, when the node has declared interest in its channel, hands it
// to the Handler before returning. The request's Data is copied.
func (b *Broker) Publish(ctx context.Context, req broker.PublishRequest) (broker.PublishResult, error) {
	if err := b.check(ctx); err != nil {
		return broker.PublishResult{}, err
	}
	if err := validate(req); err != nil {
		return broker.PublishResult{}, err
	}
	ch := b.lock(req.Channel, true)
	defer ch.mu.Unlock()
	return ch.publish(req, b.now(), b.window, b.handler), nil
}

// PublishBatch publishes each request in order; a bad request fails alone.
func (b *Broker) PublishBatch(ctx context.Context, reqs []broker.PublishRequest) ([]broker.PublishResult, []error) {
	results := make([]broker.PublishResult, len(reqs))
	errs := make([]error, len(reqs))
	for i, req := range reqs {
		results[i], errs[i] = b.Publish(ctx, req)
	}
	return results, errs
}

// History reads a channel's log. The returned messages' Data is shared with the log: read-only.
func (b *Broker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryPage, error) {
	if err := b.check(ctx); err != nil {
		return broker.HistoryPage{}, err
	}
	if !broker.ValidChannel(channel) {
		return broker.HistoryPage{}, badChannel(channel)
	}
	ch := b.lock(channel, false)
	if ch == nil {
		return emptyHistory(q.Since, b.epoch), nil
	}
	defer ch.mu.Unlock()
	ch.expire(b.now())
	return ch.history(q, b.epoch), nil
}

// Subscribe declares interest in channel: from its return on, every message published to the
// channel reaches the Handler.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if !broker.ValidChannel(channel) {
		return badChannel(channel)
	}
	ch := b.lock(channel, true)
	ch.subs++
	ch.mu.Unlock()
	return nil
}

// Unsubscribe withdraws one Subscribe; more Unsubscribe calls than Subscribe calls do nothing.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if !broker.ValidChannel(channel) {
		return badChannel(channel)
	}
	if ch := b.lock(channel, false); ch != nil {
		if ch.subs > 0 {
			ch.subs--
		}
		ch.mu.Unlock()
	}
	return nil
}

// validate applies the rules every broker enforces on a publish.
func validate(req broker.PublishRequest) error {
	if !broker.ValidChannel(req.Channel) {
		return badChannel(req.Channel)
	}
	if req.Event != "" && !broker.ValidEvent(req.Event) {
		return fmt.Errorf("%w: event name %.64q", errInvalid, req.Event)
	}
	if !broker.ValidData(req.Data) {
		return fmt.Errorf("%w: data of channel %s is not one JSON value in UTF-8", errInvalid, req.Channel)
	}
	return nil
}

func badChannel(name string) error {
	return fmt.Errorf("%w: channel name %.64q", errInvalid, name)
}
