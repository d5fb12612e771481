package valkey

import (
	"context"
	"sync"

	"github.com/valkey-io/valkey-go"
)

// controlBuffer is how many control messages may wait for OnControl before new ones are
// dropped.
const controlBuffer = 1024

// PublishControl sends payload to every broker sharing this Valkey and key prefix that has an
// Options.OnControl, this one included. On a Cluster it is a regular PUBLISH, which the cluster
// bus broadcasts to every node. Delivery is best effort: a node whose link is down misses it.
func (b *Broker) PublishControl(ctx context.Context, payload []byte) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	opCtx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	c := b.client
	if err := c.Do(opCtx, c.B().Publish().Channel(b.controlChannel()).Message(string(payload)).Build()).Error(); err != nil {
		return b.wrap(ctx, "publish control message", err)
	}
	return nil
}

// controlLoop keeps the control channel subscribed and feeds OnControl from one goroutine.
type controlLoop struct {
	b     *Broker
	fn    func([]byte)
	msgs  chan string   // from the receive callback to the dispatcher
	ready chan struct{} // closed at the first subscription confirmation
}

// startControl subscribes to the control channel and returns once Valkey confirmed it.
func (b *Broker) startControl(ctx context.Context, fn func([]byte)) (*controlLoop, error) {
	c := &controlLoop{b: b, fn: fn, msgs: make(chan string, controlBuffer), ready: make(chan struct{})}
	b.bg.Add(2)
	go c.receive()
	go c.dispatch()
	wait, cancel := context.WithTimeout(ctx, 2*b.timeout)
	defer cancel()
	select {
	case <-c.ready:
		return c, nil
	case <-wait.Done():
		b.cancel()
		b.bg.Wait()
		return nil, wait.Err()
	}
}

func (c *controlLoop) receive() {
	defer c.b.bg.Done()
	client := c.b.client
	var once sync.Once
	hooked := valkey.WithOnSubscriptionHook(c.b.ctx, func(ps valkey.PubSubSubscription) {
		if ps.Kind == "subscribe" {
			once.Do(func() { close(c.ready) })
		}
	})
	backoff := minBackoff
	for {
		err := client.Receive(hooked, client.B().Subscribe().Channel(c.b.controlChannel()).Build(), c.onMessage)
		if c.b.ctx.Err() != nil {
			return
		}
		c.b.log.Warn("valkey broker: control link lost, resubscribing", "err", err)
		if !sleep(c.b.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (c *controlLoop) onMessage(m valkey.PubSubMessage) {
	select {
	case c.msgs <- m.Message:
	default:
		c.b.log.Error("valkey broker: OnControl is too slow, dropped a control message")
	}
}

func (c *controlLoop) dispatch() {
	defer c.b.bg.Done()
	for {
		select {
		case m := <-c.msgs:
			c.fn([]byte(m))
		case <-c.b.ctx.Done():
			return
		}
	}
}
