package herald

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// State is a Client's connection state.
type State int

const (
	// Connecting: a connection attempt is under way.
	Connecting State = iota
	// Connected: the connection is open and authenticated; subscriptions are (re)established on it.
	Connected
	// Disconnected: the connection ended or could not be made; the next attempt follows after
	// StateChange.RetryIn.
	Disconnected
	// Closed: Close was called; nothing follows.
	Closed
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Closed:
		return "closed"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// StateChange is what a state handler receives.
type StateChange struct {
	State     State
	Transport Transport
	// Err says why the connection ended or failed (Disconnected): a *CloseError, a *ProblemError
	// (the handshake was refused; 429 or 503: the node refused for its load, which is not
	// final), ErrDeadConnection, ErrTokenExpired, a network error...
	Err error
	// RetryIn is the delay before the next attempt (Disconnected). After a 429 or 503 it is never
	// less than the problem's RetryAfter.
	RetryIn time.Duration
}

// Client subscribes to channels over one connection that it keeps open: it reconnects by itself
// and resumes every channel where it left off. It is safe for concurrent use.
//
// Concurrency: mu guards the subscription set, every subscription's position and active flag,
// the current WebSocket session and the state. The run goroutine owns the connection; it calls
// state handlers without mu held. Each subscription has a dispatcher goroutine that calls its
// handler.
type Client struct {
	base    *url.URL // http or https
	wsURL   string
	cfg     config
	http    *http.Client
	ownHTTP bool
	api     *Publisher // channel info lookups for SSE, without retries

	ctx      context.Context
	cancel   context.CancelFunc
	runDone  chan struct{}
	handlers sync.WaitGroup // subscription dispatchers

	mu     sync.Mutex
	subs   map[string]*Subscription
	order  []*Subscription // in subscribe order: the channel order of an SSE stream
	sess   *wsSession      // the open WebSocket session, nil between connections
	state  State
	closed bool

	changed chan struct{} // cap 1: the channel set changed (an SSE stream reopens)
	up      chan struct{} // closed at the first Connected
	upOnce  sync.Once
	lastErr error // guarded by mu: why the last attempt failed
}

// NewClient returns a Client for the gateway at baseURL ("https://push.example.com"; ws and wss
// work too, and a path prefix is kept). It starts connecting in the background at once; see
// Dial to wait for the connection.
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	base, err := parseBase(baseURL, "http", "https")
	if err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	hc, own := httpClient(cfg)
	wsBase := *base
	wsBase.Scheme = map[string]string{"http": "ws", "https": "wss"}[base.Scheme]
	c := &Client{
		base: base, wsURL: endpoint(&wsBase, nil, "v1", "ws"), cfg: cfg, http: hc, ownHTTP: own,
		runDone: make(chan struct{}),
		subs:    make(map[string]*Subscription),
		changed: make(chan struct{}, 1),
		up:      make(chan struct{}),
	}
	apiCfg := cfg
	apiCfg.retry.MaxAttempts = 1
	c.api = &Publisher{base: base, cfg: apiCfg, http: hc}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run()
	return c, nil
}

// Dial is NewClient followed by waiting, until ctx ends, for the first WebSocket connection to
// be up; on failure it closes the Client and returns why the attempts failed. An SSE Client has
// nothing to open before its first Subscribe, so Dial returns it at once.
func Dial(ctx context.Context, baseURL string, opts ...Option) (*Client, error) {
	c, err := NewClient(baseURL, opts...)
	if err != nil {
		return nil, err
	}
	if c.cfg.transport == SSE {
		return c, nil
	}
	select {
	case <-c.up:
		return c, nil
	case <-ctx.Done():
		c.mu.Lock()
		last := c.lastErr
		c.mu.Unlock()
		c.Close()
		if last != nil {
			return nil, fmt.Errorf("herald: dial: %w (last attempt: %w)", ctx.Err(), last)
		}
		return nil, fmt.Errorf("herald: dial: %w", ctx.Err())
	}
}

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Subscribe adds a subscription to channel and returns at once; the subscription is made on the
// current connection, or on the next one. handler receives the channel's messages in id order,
// one call at a time, from a goroutine of the subscription's own. Without WithSince the
// subscription starts live (with the messages published after the server handled it); after a
// reconnect it resumes from the last message received, or from the channel's position when it
// started if none came.
func (c *Client) Subscribe(channel string, handler func(Message), opts ...SubOption) (*Subscription, error) {
	if !validChannel(channel) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidChannel, channel)
	}
	if handler == nil {
		return nil, errors.New("herald: Subscribe needs a handler")
	}
	sub := newSubscription(c, channel, handler, opts)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.subs[channel] != nil {
		return nil, fmt.Errorf("%w: %s", ErrAlreadySubscribed, channel)
	}
	c.subs[channel] = sub
	c.order = append(c.order, sub)
	c.handlers.Add(1)
	go sub.dispatch()
	if c.sess != nil {
		c.sess.subscribe(sub)
	}
	c.notifyChanged()
	return sub, nil
}

// Unsubscribe ends the subscription to channel. Its handler is not called after Unsubscribe
// returns, except for a call already in progress.
func (c *Client) Unsubscribe(channel string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sub := c.subs[channel]
	if sub == nil {
		return fmt.Errorf("herald: not subscribed to %s", channel)
	}
	c.removeLocked(sub)
	sub.halt()
	if c.sess != nil {
		c.sess.unsubscribe(sub)
	}
	return nil
}

// removeLocked drops sub from the subscription set. mu must be held.
func (c *Client) removeLocked(sub *Subscription) {
	delete(c.subs, sub.channel)
	for i, s := range c.order {
		if s == sub {
			c.order = append(c.order[:i:i], c.order[i+1:]...)
			break
		}
	}
	sub.active = false
	c.notifyChanged()
}

// notifyChanged wakes an SSE stream to reopen with the new channel set. mu must be held.
func (c *Client) notifyChanged() {
	if c.cfg.transport != SSE {
		return
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Close closes the connection and stops every goroutine of the Client (it waits for handlers
// that are running to return, so it must not be called from a handler or a callback).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.runDone
		return nil
	}
	c.closed = true
	subs := c.order
	c.order, c.subs = nil, map[string]*Subscription{}
	c.mu.Unlock()
	for _, sub := range subs {
		sub.halt()
	}
	c.cancel()
	<-c.runDone
	c.handlers.Wait()
	if c.ownHTTP {
		c.http.CloseIdleConnections()
	}
	return nil
}

// run is the connection goroutine: connect, serve the connection until it ends, wait, repeat.
func (c *Client) run() {
	defer close(c.runDone)
	defer c.setState(StateChange{State: Closed})
	b := backoff{initial: c.cfg.reconnect.Initial, max: c.cfg.reconnect.Max}
	for c.ctx.Err() == nil {
		if c.cfg.transport == SSE && !c.waitForChannels() {
			return
		}
		c.setState(StateChange{State: Connecting})
		upAt, err := c.connect()
		if c.ctx.Err() != nil {
			return
		}
		if !upAt.IsZero() && time.Since(upAt) >= c.cfg.reconnect.StableAfter {
			b.reset()
		}
		delay := c.retryDelay(err, &b)
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		c.setState(StateChange{State: Disconnected, Err: err, RetryIn: delay})
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-c.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// waitForChannels blocks while an SSE client has no subscription. It returns false once the
// Client is closed.
func (c *Client) waitForChannels() bool {
	for {
		c.mu.Lock()
		n := len(c.order)
		c.mu.Unlock()
		if n > 0 {
			return true
		}
		select {
		case <-c.changed:
		case <-c.ctx.Done():
			return false
		}
	}
}

// connect makes one connection and serves it until it ends. It returns when the connection was
// up (zero if it never was) and why it ended.
func (c *Client) connect() (time.Time, error) {
	token := ""
	if c.cfg.token != nil {
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.dialTimeout)
		var err error
		token, err = c.cfg.token(ctx)
		cancel()
		if err != nil {
			return time.Time{}, fmt.Errorf("herald: token: %w", err)
		}
	}
	if c.cfg.transport == SSE {
		return c.runSSE(token)
	}
	return c.runWS(token)
}

// connected records that the connection is up.
func (c *Client) connected() {
	c.setState(StateChange{State: Connected})
	c.upOnce.Do(func() { close(c.up) })
}

func (c *Client) setState(sc StateChange) {
	sc.Transport = c.cfg.transport
	c.mu.Lock()
	c.state = sc.State
	c.mu.Unlock()
	if c.cfg.onState != nil {
		c.cfg.onState(sc)
	}
}

// retryDelay is the wait before the next attempt: the server's hint when it gave one, else the
// next backoff delay.
func (c *Client) retryDelay(err error, b *backoff) time.Duration {
	var (
		ce   *CloseError
		hint *reconnectHint
		pe   *ProblemError
	)
	switch {
	case errors.Is(err, errReopen):
		return 0 // the SSE channel set changed: nothing failed
	case errors.As(err, &hint):
		return hint.after
	case errors.As(err, &pe) && pe.overloaded():
		return refusalDelay(pe.RetryAfter, b.next())
	case errors.As(err, &ce):
		switch ce.Code {
		case 1001, 1012:
			if d, ok := reconnectAfter(ce.Reason); ok {
				return d // the server spread its clients already
			}
		case 4001, 4008:
			// Expired token (a fresh one is fetched) or slow consumer: resume at once, with
			// jitter so that many clients do not come back in the same instant.
			return jitter(c.cfg.reconnect.Initial)
		}
	case errors.Is(err, ErrTokenExpired):
		return jitter(c.cfg.reconnect.Initial)
	}
	return b.next()
}

// refusalDelay is the wait after the server refused to connect for its load (429, 503): the
// backoff delay, but never shorter than the Retry-After, and past it by a random share of a
// quarter of it, so that the clients a node refused in the same instant do not all come back in
// the same instant either.
func refusalDelay(retryAfter, backoff time.Duration) time.Duration {
	if retryAfter <= 0 {
		return backoff
	}
	return max(backoff, retryAfter+jitter(retryAfter/4))
}

// reconnectAfter reads the "reconnect_after_ms=N" reason of a shutdown close.
func reconnectAfter(reason string) (time.Duration, bool) {
	v, ok := strings.CutPrefix(reason, "reconnect_after_ms=")
	if !ok {
		return 0, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 || ms > int64(time.Hour/time.Millisecond) {
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

// reconnectHint is the end of an SSE stream that named its reconnect delay (the retry field the
// server sends when it shuts down).
type reconnectHint struct{ after time.Duration }

func (h *reconnectHint) Error() string {
	return "herald: the server closed the stream and asked to reconnect after " + h.after.String()
}

// errReopen ends an SSE stream whose channel set changed.
var errReopen = errors.New("herald: channel set changed: reopening the stream")

func (c *Client) reportError(err error) {
	if c.cfg.onError != nil {
		c.cfg.onError(err)
	}
}
