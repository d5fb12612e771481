package valkey

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/herald-gateway/herald/gateway/broker"
)

// DefaultTimeout bounds each operation against Valkey when Options.Timeout is zero.
const DefaultTimeout = time.Second

// DefaultKeyPrefix starts every key and pub/sub channel name when Options.KeyPrefix is empty.
const DefaultKeyPrefix = "herald"

// Options configure a Broker.
type Options struct {
	// URL locates Valkey; see ParseURL for the accepted forms (standalone, TLS, a seed list for
	// Cluster, Sentinel).
	URL string
	// Handler receives the messages of channels this node subscribed to. Required.
	Handler broker.Handler
	// Retention is the history kept per channel. As in the memory broker, a zero (or negative)
	// Size or TTL of the Default means broker.DefaultRetention's, and in a rule the Default's.
	Retention broker.RetentionPolicy
	// IdempotencyWindow is how long idempotency keys are remembered; zero means
	// broker.DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration
	// KeyPrefix starts every key and channel name; empty means DefaultKeyPrefix. Brokers that
	// share a Valkey must share the prefix to see each other's messages.
	KeyPrefix string
	// Timeout bounds each operation (a publish, a history read, a subscription's confirmation):
	// past it the operation fails with broker.ErrUnavailable, so a frozen server cannot hang
	// callers. Zero means DefaultTimeout.
	Timeout time.Duration
	// OnControl, when set, receives every control message published with PublishControl by any
	// broker sharing this Valkey and prefix, this one included. It is called from one goroutine,
	// in order, and must not block for long. Control messages are best effort: ones published
	// while this node's link is down are not delivered.
	OnControl func(payload []byte)
	// Logger reports what callers cannot see (a lost live link, a gap in delivery); nil
	// discards.
	Logger *slog.Logger

	// dial, when set, replaces the network dialer (tests count round trips with it).
	dial func(ctx context.Context, addr string, d *net.Dialer) (net.Conn, error)
}

// Broker is a broker.Broker backed by Valkey. It is safe for concurrent use.
type Broker struct {
	client    valkey.Client
	handler   broker.Handler
	retention broker.RetentionPolicy
	window    time.Duration
	scriptArg publishArgs // publish.lua's numeric arguments, formatted once
	prefix    string
	timeout   time.Duration
	log       *slog.Logger

	closeOnce sync.Once
	ctx       context.Context // canceled by Close; parent of every background loop
	cancel    context.CancelFunc
	bg        sync.WaitGroup // background loops not tied to a channel (control)

	mu     sync.Mutex             // guards subs, closed and channelSub.refs/holds
	subs   map[string]*channelSub // channels with interest or a transition in progress
	closed bool

	control *controlLoop // nil without Options.OnControl

	pubMu     sync.Mutex               // guards pubQueues and the publishes queued in it
	pubQueues map[string]*publishQueue // channels with a publish script call in flight
}

var _ broker.Broker = (*Broker)(nil)

// New connects to Valkey (each dial bounded by Options.Timeout), loads the scripts on every
// node and, with Options.OnControl, waits until the control channel is subscribed; ctx bounds
// those last two steps. When Valkey cannot be reached the error wraps broker.ErrUnavailable.
func New(ctx context.Context, opts Options) (*Broker, error) {
	if opts.Handler == nil {
		return nil, errors.New("valkey broker: Options.Handler is required")
	}
	copt, err := ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("valkey broker: %w", err)
	}
	b := &Broker{
		handler: opts.Handler,
		window:  opts.IdempotencyWindow,
		prefix:  opts.KeyPrefix,
		timeout: opts.Timeout,
		log:     opts.Logger,
		subs:    make(map[string]*channelSub),

		pubQueues: make(map[string]*publishQueue),
	}
	b.retention = opts.Retention.WithDefaults()
	if b.window <= 0 {
		b.window = broker.DefaultIdempotencyWindow
	}
	if b.prefix == "" {
		b.prefix = DefaultKeyPrefix
	}
	if b.timeout <= 0 {
		b.timeout = DefaultTimeout
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.scriptArg = newPublishArgs(b.retention, b.window)
	configureClient(&copt, b.timeout, opts.dial)
	if b.client, err = valkey.NewClient(copt); err != nil {
		if isUnavailable(err) {
			return nil, fmt.Errorf("valkey broker: connect: %w: %w", broker.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("valkey broker: connect: %w", err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if err := b.loadScripts(ctx); err != nil {
		b.cancel()
		b.client.Close()
		return nil, b.wrap(ctx, "load scripts", err)
	}
	// The epoch is made on first use; making it now, before this node hands out positions, lets
	// History tell an expired log (a position after the epoch) from lost data (before it).
	// Best effort: the rare reads that need it make it too.
	if _, err := b.epoch(ctx); err != nil {
		b.log.Warn("valkey broker: cannot read the epoch yet", "err", err)
	}
	if opts.OnControl != nil {
		if b.control, err = b.startControl(ctx, opts.OnControl); err != nil {
			b.cancel()
			b.client.Close()
			return nil, b.wrap(ctx, "subscribe control channel", err)
		}
	}
	return b, nil
}

// configureClient sets what herald needs on top of the URL's options: no client-side cache,
// dial and ping timeouts short enough that a frozen server is noticed within a few seconds.
func configureClient(o *valkey.ClientOption, timeout time.Duration, dial func(context.Context, string, *net.Dialer) (net.Conn, error)) {
	o.DisableCache = true
	if o.Dialer.Timeout == 0 {
		o.Dialer.Timeout = timeout
	}
	if o.ConnWriteTimeout == 0 {
		// A connection whose pings go unanswered this long is closed and redialed; the
		// pub/sub link then re-subscribes and catches up.
		o.ConnWriteTimeout = 2 * timeout
	}
	if o.ClientName == "" {
		o.ClientName = "herald"
	}
	if dial != nil {
		o.DialCtxFn = func(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, addr, d)
		}
	}
}

// Ready pings every Valkey node the client knows and reports the first failure.
func (b *Broker) Ready(ctx context.Context) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	opCtx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	for addr, node := range b.client.Nodes() {
		if err := node.Do(opCtx, node.B().Ping().Build()).Error(); err != nil {
			return b.wrap(ctx, "ping "+addr, err)
		}
	}
	return nil
}

// Close stops every subscription and the control loop, then closes the connections. It waits
// for running Handler calls to return; it must not be called from inside one.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		subs := make([]*channelSub, 0, len(b.subs))
		for _, cs := range b.subs {
			subs = append(subs, cs)
		}
		b.mu.Unlock()
		b.cancel() // ends receive loops and catch-ups without waiting for the server
		for _, cs := range subs {
			cs.opMu.Lock()
			if cs.run != nil {
				cs.run.stop()
				cs.run = nil
			}
			cs.opMu.Unlock()
		}
		b.bg.Wait()
		b.client.Close()
	})
	return nil
}

func (b *Broker) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	return nil
}

// Keys.

func (b *Broker) streamKey(channel string) string { return b.prefix + ":{" + channel + "}:log" }
func (b *Broker) liveChannel(channel string) string {
	return b.prefix + ":{" + channel + "}:live"
}
func (b *Broker) idemKey(channel, key string) string {
	return b.prefix + ":{" + channel + "}:idem:" + key
}
func (b *Broker) controlChannel() string { return b.prefix + ":control" }

// epochKey holds the broker's epoch (see epoch.lua). Every node sharing the prefix shares it.
func (b *Broker) epochKey() string { return b.prefix + ":epoch" }

// wrap is the package boundary for errors: it names the operation and marks the error with
// broker.ErrUnavailable when Valkey could not be reached or did not answer within the broker's
// timeout. ctx is the caller's context: when it is done, its error is passed through unmarked
// (the caller gave up; Valkey did not fail).
func (b *Broker) wrap(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, valkey.ErrClosing) && b.checkOpen() != nil:
		return fmt.Errorf("valkey broker: %s: %w", op, broker.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("valkey broker: %s: %w", op, ctx.Err())
	case isUnavailable(err):
		return fmt.Errorf("valkey broker: %s: %w: %w", op, broker.ErrUnavailable, err)
	}
	return fmt.Errorf("valkey broker: %s: %w", op, err)
}

// isUnavailable reports whether err means Valkey cannot serve now but may later: a network
// error, a timeout, or a server reply saying it is loading, failing over or has no quorum.
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if verr, ok := valkey.IsValkeyErr(err); ok {
		if verr.IsLoading() || verr.IsClusterDown() || verr.IsTryAgain() {
			return true
		}
		msg := verr.Error()
		for _, prefix := range []string{"MASTERDOWN", "READONLY", "BUSY", "NOREPLICAS", "OOM"} {
			if len(msg) >= len(prefix) && msg[:len(prefix)] == prefix {
				return true
			}
		}
		return false
	}
	return true // everything that is not a server reply is about reaching the server
}
