// Package gateway is herald's connection core: the hub that maps channels to local
// subscriptions, the WebSocket, SSE and long-poll sessions, fan-out, heartbeats and
// backpressure. WebSocket and SSE connections are driven by epoll (package netpoll), so an idle
// connection holds no goroutine and no buffer.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/cors"
	"github.com/herald-gateway/herald/gateway/admission"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/metrics"
	"github.com/herald-gateway/herald/gateway/netpoll"
	"golang.org/x/sys/unix"
)

// Verifier checks a credential and says what it allows (implemented by *auth.Verifier).
type Verifier interface {
	Verify(ctx context.Context, token string) (*auth.Claims, error)
}

// Config tunes the gateway. Zero fields take the defaults in brackets.
type Config struct {
	Auth    Verifier         // required
	Metrics *metrics.Metrics // required
	CORS    cors.Policy
	Logger  *slog.Logger

	MaxChannelsPerConn int           // channels per connection [128]
	ReplayCap          int           // messages replayed per subscribe [1000]
	MaxFrameBytes      int           // largest client WebSocket message [64 KiB]
	MaxMessageBytes    int           // largest published data [64 KiB]
	FrameRateLimit     int           // client frames per FrameRateWindow [100]
	FrameRateWindow    time.Duration // [10s]
	QueueBytes         int           // outbound bytes queued per connection before 4008, replays aside [1 MiB]
	ReplayQueueBytes   int           // bytes of a replay page a connection may have queued on top of QueueBytes [64 MiB]
	// PendingBytes bounds the live messages a subscription buffers while its replay is paged;
	// past it they are dropped and read from the log instead [QueueBytes/2].
	PendingBytes    int
	FanOutBacklog   int           // deliveries queued in the hub before publishers wait [1,000,000]
	FanOutWait      time.Duration // how long a WebSocket publish waits for fan-out room before "backlogged" [5s]
	Heartbeat       time.Duration // ping / SSE comment interval [15s]
	Tick            time.Duration // heartbeat wheel resolution [1s]
	AuthTimeout     time.Duration // time to send the auth frame [10s]
	RefreshBefore   time.Duration // send "refresh" this long before the token expires [60s]
	SSERetry        time.Duration // the SSE retry field [2s]
	PollTimeout     time.Duration // default long-poll wait [25s]
	PollTimeoutMax  time.Duration // longest long-poll wait [60s]
	HTTPIdleTimeout time.Duration // idle keep-alive HTTP connection in the epoll core, as the HTTP server's IdleTimeout [2m]
	BrokerTimeout   time.Duration // per broker call made for a client [5s]
	ShutdownJitter  time.Duration // spread of reconnect hints on shutdown [5s]
	Workers         int           // epoll worker goroutines [netpoll default]
	// Admission limits subscriber connections before they start [nil: no limits].
	Admission *admission.Controller
	// PublishLimiter limits each credential's publishes; the HTTP API shares it [nil: no limit].
	PublishLimiter *admission.PublishLimiter
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxChannelsPerConn, 128)
	def(&c.ReplayCap, 1000)
	def(&c.MaxFrameBytes, 64<<10)
	def(&c.MaxMessageBytes, 64<<10)
	def(&c.FrameRateLimit, 100)
	def(&c.QueueBytes, 1<<20)
	def(&c.ReplayQueueBytes, 64<<20)
	def(&c.PendingBytes, c.QueueBytes/2)
	def(&c.FanOutBacklog, defaultBacklog)
	defDur(&c.FrameRateWindow, 10*time.Second)
	defDur(&c.Heartbeat, 15*time.Second)
	defDur(&c.Tick, time.Second)
	defDur(&c.AuthTimeout, 10*time.Second)
	defDur(&c.RefreshBefore, 60*time.Second)
	defDur(&c.SSERetry, 2*time.Second)
	defDur(&c.PollTimeout, 25*time.Second)
	defDur(&c.PollTimeoutMax, 60*time.Second)
	defDur(&c.HTTPIdleTimeout, 2*time.Minute)
	defDur(&c.BrokerTimeout, 5*time.Second)
	defDur(&c.FanOutWait, 5*time.Second)
	defDur(&c.ShutdownJitter, 5*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Gateway serves subscribers. Create it with New, hand it to the broker as its Handler, then call
// Start with that broker.
type Gateway struct {
	cfg     Config
	auth    Verifier
	metrics *metrics.Metrics
	log     *slog.Logger
	broker  broker.Broker
	hub     *Hub
	poller  *netpoll.Poller
	wheel   *wheel
	replays replayReads // history reads of subscribes, shared when they coincide

	nextID   atomic.Uint64
	draining atomic.Bool
	handBack atomic.Pointer[handBackListener] // set by Listener
	stopping chan struct{}                    // closed when Shutdown begins: long-polls return

	authMu      sync.Mutex
	pendingAuth map[*wsSession]int64 // unauthenticated sessions and their deadline tick

	retireMu    sync.Mutex
	retired     []*conn
	retireWake  chan struct{}
	janitorStop chan struct{}
	janitorDone chan struct{}
	polls       sync.WaitGroup
	admitted    admittedConns // see admit.go
	lingers     lingerer      // sockets closed with a close frame, kept a moment (linger.go)
}

// New creates a gateway. It serves nothing until Start.
func New(cfg Config) (*Gateway, error) {
	cfg.setDefaults()
	if cfg.Auth == nil || cfg.Metrics == nil {
		return nil, fmt.Errorf("gateway: Auth and Metrics are required")
	}
	p, err := netpoll.New(netpoll.Config{Workers: cfg.Workers})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{
		cfg: cfg, auth: cfg.Auth, metrics: cfg.Metrics, log: cfg.Logger,
		hub: newHub(cfg.Metrics, cfg.FanOutBacklog), poller: p,
		stopping:    make(chan struct{}),
		pendingAuth: make(map[*wsSession]int64),
		retireWake:  make(chan struct{}, 1),
		janitorStop: make(chan struct{}),
		janitorDone: make(chan struct{}),
	}
	g.hub.pendingBytes = cfg.PendingBytes
	g.wheel = newWheel(cfg.Heartbeat, cfg.Tick, g.onTick)
	go g.janitor()
	return g, nil
}

// The gateway is what herald serve hands its broker as the Handler: the compiler holds it to the
// whole contract, gap notices included.
var _ broker.Handler = (*Gateway)(nil)

// Deliver implements broker.Handler.
func (g *Gateway) Deliver(msg broker.Message) { g.hub.Deliver(msg) }

// Gap implements broker.Handler: the channel's live subscribers on every transport are told, in
// order with its messages, that some were lost and why.
func (g *Gateway) Gap(channel string, reason broker.GapReason) { g.hub.Gap(channel, reason) }

// Start attaches the broker (created with this gateway as its Handler). Call it once, before
// serving.
func (g *Gateway) Start(b broker.Broker) {
	g.broker = b
	g.hub.broker = b
}

// Subscribers returns the number of this node's subscriptions to channel.
func (g *Gateway) Subscribers(channel string) int { return g.hub.Subscribers(channel) }

// Connections returns the number of connections the epoll core holds: WebSocket, SSE and adopted
// keep-alive HTTP connections (see AdoptHTTP).
func (g *Gateway) Connections() int { return g.wheel.len() }

// adopt makes c the gateway's: it takes the socket out of netc (see detach), fills the
// connection fields and counts it. It returns false when it cannot: netc is not a plain socket
// the epoll core can drive, or the process has no descriptor left for the duplicate (EMFILE at
// the descriptor limit). Then nothing of c is set or counted and netc is still open and the
// caller's: it answers the client its own way (see refuseSSE, refuseWebSocket, AdoptHTTP) and
// closes it, and slot is still the caller's to release. On success c holds slot (nil for a
// connection that was not admitted), which the janitor releases when c is retired.
func (g *Gateway) adopt(c *conn, netc net.Conn, kind sinkKind, proto protocol, slot *admission.Slot) bool {
	fd, err := detach(netc)
	if err != nil {
		if errors.Is(err, errNotSocket) {
			g.log.Error("connection is not a socket (TLS must be terminated in front of herald)", "remote", netc.RemoteAddr().String())
		} else {
			g.log.Warn("cannot take a connection over", "transport", kindName(kind), "remote", netc.RemoteAddr().String(), "err", err)
		}
		return false
	}
	c.gw, c.fd, c.kind, c.proto = g, int32(fd), kind, proto
	g.holdAdmitted(c, slot) // before the wheel has it: from then on c may be retired at any moment
	c.id = g.nextID.Add(1)
	c.lastSeen.Store(g.wheel.now())
	g.wheel.add(c)
	g.metrics.Connections.WithLabelValues(kindName(kind)).Inc()
	if kind != kindHTTP && g.log.Enabled(context.Background(), slog.LevelDebug) {
		g.log.Debug("session opened", "session", sessionName(c.id), "transport", kindName(kind), "remote", netc.RemoteAddr().String())
	}
	return true
}

var errNotSocket = errors.New("not a socket")

// detach returns a non-blocking duplicate of netc's descriptor and closes netc. Closing it takes
// the socket out of Go's own poller and frees what net keeps per connection (the netFD, two
// addresses and the runtime's poll descriptor, about 500 bytes); the duplicate keeps the socket
// open, so the number of descriptors per connection stays one. On an error netc stays open, so
// that the caller can still tell the client why it is refused.
func detach(netc net.Conn) (int, error) {
	if pc, ok := netc.(*prefixConn); ok && len(pc.prefix) == 0 {
		netc = pc.Conn // handed back to net/http earlier (see Listener), all its bytes read
	}
	sc, ok := netc.(syscall.Conn)
	if !ok {
		return -1, errNotSocket
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, fmt.Errorf("duplicating the socket: %w", dupErr)
	}
	// O_NONBLOCK belongs to the open file, which the duplicate shares: net's sockets are
	// non-blocking, so the duplicate is too, without another system call per connection.
	netc.Close()
	return fd, nil
}

// AwaitFanOutRoom waits, for at most max, until this node's fan-out backlog (Config.FanOutBacklog)
// has room, and reports whether it has. The API calls it before storing a message so that at
// saturation publishers wait rather than the backlog growing past its bound: the memory broker
// delivers as it stores, so its publishes wait anyway, but the Valkey broker delivers through
// pub/sub, and without this its publishers would outrun the fan-out and latency would grow
// without limit. Only this node's backlog is seen: publishers on another node are slowed only
// through Valkey's own output buffer limit (after which this node catches up from the streams).
func (g *Gateway) AwaitFanOutRoom(ctx context.Context, max time.Duration) bool {
	return g.hub.backlog.waitRoom(ctx.Done(), max)
}

// start registers an adopted connection with epoll.
func (g *Gateway) start(c *conn) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return
	}
	register := g.poller.Register
	if c.edgeTriggered() {
		// A publisher's connection sees a request and an answer each time: edge triggering
		// saves the re-arm (an epoll_ctl) per request.
		register = g.poller.RegisterEdge
	}
	desc, err := register(int(c.fd), c)
	if err != nil {
		c.closeLocked(closeCause{code: 1011, reason: "internal error", metric: "internal_error"})
		return
	}
	c.desc = desc
	if len(c.queue) > 0 {
		if err := c.desc.Arm(netpoll.Readable | netpoll.Writable); err != nil {
			c.closeLocked(causeIO)
		}
	}
}

// retire queues a closed connection for cleanup on the janitor. It never blocks: the caller
// holds the connection's write lock and possibly hub locks.
func (g *Gateway) retire(c *conn) {
	g.retireMu.Lock()
	g.retired = append(g.retired, c)
	g.retireMu.Unlock()
	select {
	case g.retireWake <- struct{}{}:
	default:
	}
}

func (g *Gateway) janitor() {
	defer close(g.janitorDone)
	for {
		open := true
		select {
		case <-g.retireWake:
		case <-g.janitorStop:
			open = false
		}
		g.retireMu.Lock()
		batch := g.retired
		g.retired = nil
		g.retireMu.Unlock()
		for _, c := range batch {
			// closeLocked already took c out of epoll and closed (or shut down) its socket.
			g.wheel.remove(c)
			if ws, ok := c.proto.(*wsSession); ok {
				g.authDone(ws)
			}
			c.proto.cleanup()
			g.releaseAdmitted(c)
			g.metrics.Connections.WithLabelValues(kindName(c.kind)).Dec()
			if c.reason != reasonHandedBack { // still open, in net/http's hands
				g.metrics.Disconnects.WithLabelValues(c.reason.String()).Inc()
			}
			if c.kind != kindHTTP && g.log.Enabled(context.Background(), slog.LevelDebug) {
				g.log.Debug("session closed", "session", sessionName(c.id), "transport", kindName(c.kind), "cause", c.reason.String())
			}
		}
		if !open {
			return
		}
	}
}

func (g *Gateway) awaitAuth(s *wsSession) {
	g.authMu.Lock()
	g.pendingAuth[s] = g.wheel.now() + int64(g.cfg.AuthTimeout/g.cfg.Tick)
	g.authMu.Unlock()
}

func (g *Gateway) authDone(s *wsSession) {
	g.authMu.Lock()
	delete(g.pendingAuth, s)
	g.authMu.Unlock()
}

// onTick runs on every tick of the heartbeat wheel.
func (g *Gateway) onTick(now int64) {
	g.checkAuthDeadlines(now)
	g.lingers.closeDue(now)
}

func (g *Gateway) checkAuthDeadlines(now int64) {
	var late []*wsSession
	g.authMu.Lock()
	for s, deadline := range g.pendingAuth {
		if now >= deadline {
			late = append(late, s)
			delete(g.pendingAuth, s)
		}
	}
	g.authMu.Unlock()
	for _, s := range late {
		s.close(closeCause{code: 1008, reason: "no auth frame in time", metric: "auth_timeout"})
	}
}

// join subscribes a session to channel and reads the first page of its replay (see replay.go);
// since nil means live only. The page says how the replay starts: Complete, Gap and LastID are
// what the client is told first (the subscribed frame, the stream's herald.gap); Start is where
// the replay reads forward from (the newest id for a live-only subscription); Messages are its
// first page, and More says the replay goes on past them. The subscription buffers live
// messages until the replay is written and goLive called.
func (g *Gateway) join(ctx context.Context, channel string, s sink, kind sinkKind, since *broker.ID) (*subscription, broker.HistoryPage, error) {
	sub, err := g.hub.subscribe(ctx, channel, s, kind)
	if err != nil {
		return nil, broker.HistoryPage{}, err
	}
	page, err := g.firstPage(ctx, channel, since)
	if err != nil {
		g.hub.remove(sub)
		return nil, broker.HistoryPage{}, err
	}
	return sub, page, nil
}

func (g *Gateway) replayed(n int) {
	if n > 0 {
		g.metrics.Replayed.Add(float64(n))
		g.metrics.Deliveries.Add(float64(n))
	}
}

// checkPublish validates a client publish; it returns an error code and message, or "".
func (g *Gateway) checkPublish(req broker.PublishRequest, claims *auth.Claims) (code, msg string) {
	switch {
	case !broker.ValidChannel(req.Channel):
		return "invalid-channel", "invalid channel name " + quote(req.Channel)
	case !claims.CanPublish(req.Channel):
		return "forbidden", "token does not allow publishing to " + req.Channel
	case len(req.Data) == 0:
		return "invalid-data", `"data" is required`
	case len(req.Data) > g.cfg.MaxMessageBytes:
		return "message-too-large", "data exceeds " + itoa(g.cfg.MaxMessageBytes) + " bytes"
	case !broker.DataIsUTF8(req.Data):
		// A text frame is UTF-8 already (onFrame closes with 1007 otherwise); this keeps the rule
		// the same as the HTTP API's for data from anywhere else.
		return "invalid-data", "data is not valid UTF-8"
	case req.Event != "" && !broker.ValidEvent(req.Event):
		return "invalid-event", "invalid event name " + quote(req.Event)
	case len(req.IdempotencyKey) > 255:
		return "invalid-idempotency-key", "idempotency_key is longer than 255 bytes"
	}
	return "", ""
}

// Shutdown stops accepting subscribers, tells every connected client to reconnect elsewhere
// after a jittered delay (WebSocket 1001, SSE retry), waits for their queues to drain until ctx
// ends, then closes what is left and stops the core. Call it after the HTTP server stopped
// accepting.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if g.draining.Swap(true) {
		return nil
	}
	close(g.stopping)
	g.wheel.each(func(c *conn) {
		jitter := time.Duration(rand.Int64N(int64(g.cfg.ShutdownJitter) + 1))
		c.closeGracefully(shutdownCause(jitter))
	})
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for g.wheel.len() > 0 {
		select {
		case <-ctx.Done():
			g.wheel.each(func(c *conn) { c.close(closeCause{code: 1001, reason: "shutdown", metric: "shutdown"}) })
		case <-poll.C:
			continue
		}
		break
	}
	g.polls.Wait()
	// Let the janitor retire the connections closed above before it stops.
	for deadline := time.Now().Add(2 * time.Second); g.wheel.len() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	g.wheel.close()
	close(g.janitorStop)
	<-g.janitorDone
	g.lingers.closeDue(-1)
	g.hub.close()
	return g.poller.Close()
}

func shutdownCause(reconnectAfter time.Duration) closeCause {
	return closeCause{
		code:   1001,
		reason: "reconnect_after_ms=" + strconv.FormatInt(reconnectAfter.Milliseconds(), 10),
		metric: "shutdown",

		retryAfter: reconnectAfter,
	}
}

func kindName(k sinkKind) string {
	switch k {
	case kindWS:
		return "websocket"
	case kindSSE:
		return "sse"
	case kindHTTP:
		return "http"
	}
	return "poll"
}

func sessionName(id uint64) string { return "s-" + strconv.FormatUint(id, 36) }

func itoa(n int) string { return strconv.Itoa(n) }
