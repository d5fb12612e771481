package valkey

import (
	"context"
	"fmt"
	"sync"

	"github.com/herald-gateway/herald/gateway/broker"
)

// channelSub is this node's interest in one channel.
type channelSub struct {
	name string

	opMu sync.Mutex    // serializes start and stop of the channel's subscription
	run  *subscription // the live SSUBSCRIBE while refs > 0; guarded by opMu

	// Guarded by Broker.mu; refs is written only with opMu held too.
	refs  int // Subscribe calls not yet matched by Unsubscribe
	holds int // Subscribe/Unsubscribe calls in progress on this entry
}

// Subscribe declares interest in channel. The first one for a channel sends SSUBSCRIBE on the
// channel's shard and returns once Valkey confirmed it and the channel's last id was read:
// every message published after that reaches the Handler, over pub/sub or, after a link
// failure, from the log. It fails with broker.ErrUnavailable when that takes longer than twice
// Options.Timeout.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if !broker.ValidChannel(channel) {
		return fmt.Errorf("valkey broker: subscribe: %w: %q", errBadChannel, channel)
	}
	cs, err := b.hold(channel, true)
	if err != nil {
		return err
	}
	defer b.unhold(cs)
	cs.opMu.Lock()
	defer cs.opMu.Unlock()
	if err := b.checkOpen(); err != nil { // Close ran while this call waited for opMu
		return err
	}
	b.mu.Lock()
	first := cs.refs == 0
	b.mu.Unlock()
	if first {
		run := b.newSubscription(channel)
		if err := run.start(ctx); err != nil {
			run.stop()
			return b.wrap(ctx, "subscribe "+channel, err)
		}
		cs.run = run
	}
	b.mu.Lock()
	cs.refs++
	b.mu.Unlock()
	return nil
}

// Unsubscribe withdraws one Subscribe. The last one sends SUNSUBSCRIBE and stops delivery for
// the channel; it returns once no Handler call for the channel is running, so the Handler must
// not call it for the channel it is delivering. Withdrawing an interest that does not exist
// does nothing.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	cs, err := b.hold(channel, false)
	if err != nil || cs == nil {
		return err
	}
	defer b.unhold(cs)
	cs.opMu.Lock()
	defer cs.opMu.Unlock()
	b.mu.Lock()
	if cs.refs == 0 {
		b.mu.Unlock()
		return nil
	}
	cs.refs--
	last := cs.refs == 0
	b.mu.Unlock()
	if last && cs.run != nil {
		cs.run.unsubscribe(ctx)
		cs.run = nil
	}
	return nil
}

// hold finds (or, with create, makes) the entry of channel and keeps it in the map until
// unhold. It returns a nil entry without create when there is none.
func (b *Broker) hold(channel string, create bool) (*channelSub, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, broker.ErrClosed
	}
	cs := b.subs[channel]
	if cs == nil {
		if !create {
			return nil, nil
		}
		cs = &channelSub{name: channel}
		b.subs[channel] = cs
	}
	cs.holds++
	return cs, nil
}

func (b *Broker) unhold(cs *channelSub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs.holds--
	if cs.holds == 0 && cs.refs == 0 && b.subs[cs.name] == cs {
		delete(b.subs, cs.name)
	}
}
