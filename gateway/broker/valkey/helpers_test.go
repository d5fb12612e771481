package valkey

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-gateway/herald/gateway/broker"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// Nothing is ignored: valkey-go starts no process-wide goroutines. Two kinds of its
		// goroutines do outlive Client.Close for a bounded time: after a topology refresh the
		// cluster client closes the connections it dropped 5 s later (cluster.go, _refresh),
		// and a lazy topology refresh sleeps up to 1 s first (singleflight.go, DelayDo). Wait
		// those out, then check.
		waitForGoroutines(10*time.Second, "valkey-go.(*clusterClient)._refresh", "valkey-go.(*call).DelayDo")
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// waitForGoroutines waits until no goroutine's stack mentions any of fns, at most d.
func waitForGoroutines(d time.Duration, fns ...string) {
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !slices.ContainsFunc(fns, func(fn string) bool { return strings.Contains(stacks, fn) }) {
			return
		}
	}
}

// recorder is a Handler that keeps what it was given and fails the test on
// out-of-order or concurrent delivery for one channel.
type recorder struct {
	t  testing.TB
	mu sync.Mutex
	// guarded by mu
	msgs   map[string][]broker.Message
	gaps   map[string]int
	active map[string]bool
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, msgs: map[string][]broker.Message{}, gaps: map[string]int{}, active: map[string]bool{}}
}

func (r *recorder) Deliver(m broker.Message) {
	r.mu.Lock()
	if r.active[m.Channel] {
		r.t.Errorf("concurrent Deliver for channel %s", m.Channel)
	}
	r.active[m.Channel] = true
	got := r.msgs[m.Channel]
	if n := len(got); n > 0 && !got[n-1].ID.Less(m.ID) {
		r.t.Errorf("channel %s: delivered %v after %v", m.Channel, m.ID, got[n-1].ID)
	}
	r.msgs[m.Channel] = append(got, m)
	r.mu.Unlock()
	time.Sleep(0) // leave room for a concurrent call to show up
	r.mu.Lock()
	r.active[m.Channel] = false
	r.mu.Unlock()
}

func (r *recorder) Gap(channel string, reason broker.GapReason) {
	if reason != broker.GapLinkLost {
		r.t.Errorf("channel %s: gap reason %v, want link_lost", channel, reason)
	}
	r.mu.Lock()
	r.gaps[channel]++
	r.mu.Unlock()
}

func (r *recorder) got(channel string) []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Message(nil), r.msgs[channel]...)
}

func (r *recorder) gapCount(channel string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gaps[channel]
}

// waitCount waits until channel has n messages (or more), failing after d.
func (r *recorder) waitCount(t testing.TB, channel string, n int, d time.Duration) []broker.Message {
	t.Helper()
	checkFor(t, d, 10*time.Millisecond, func() error {
		if got := len(r.got(channel)); got < n {
			return fmt.Errorf("channel %s: %d of %d messages delivered", channel, got, n)
		}
		return nil
	})
	return r.got(channel)
}

// testWriter sends a logger's lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// checkFor polls fn every `every` until it returns nil, failing the test with fn's last error
// after total.
func checkFor(t testing.TB, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(every)
	}
}

// newTestBroker connects a Broker for the test and closes it at the end.
func newTestBroker(t testing.TB, opts Options) *Broker {
	t.Helper()
	if opts.Handler == nil {
		opts.Handler = newRecorder(t)
	}
	if opts.Logger == nil && testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	if opts.Timeout == 0 {
		// Generous: a loaded CI machine (two cores, the race detector) can stall a healthy
		// operation past the 1 s default. Outage tests set their own short timeout.
		opts.Timeout = testTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testTimeout is the per-operation timeout of test brokers that do not set one.
const testTimeout = 5 * time.Second

func data(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)) }

func publish(t testing.TB, b *Broker, channel string, i int) broker.ID {
	t.Helper()
	res, err := b.Publish(context.Background(), broker.PublishRequest{Channel: channel, Data: data(i)})
	if err != nil {
		t.Fatalf("publish %d: %v", i, err)
	}
	return res.ID
}

// publishRetrying publishes message i with idempotency key k<i>, retrying failed attempts
// (as a well-behaved caller of a 503 would) until it succeeds or d passes.
func publishRetrying(t testing.TB, b *Broker, channel string, i int, d time.Duration) broker.PublishResult {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		res, err := b.Publish(context.Background(), broker.PublishRequest{
			Channel: channel, Data: data(i), IdempotencyKey: fmt.Sprintf("k%d", i),
		})
		if err == nil {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %d kept failing: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxy forwards TCP connections to a server until Cut, which closes them all and refuses new
// ones until Restore: a network partition between one broker and Valkey.
type proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex // guards cut and conns
	cut   bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{target: target, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "valkey://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
		p.mu.Unlock()
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut closes every forwarded connection and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Restore accepts connections again.
func (p *proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// writeCounter dials plain TCP connections that count their writes.
type writeCounter struct{ writes atomic.Int64 }

func (w *writeCounter) dial(ctx context.Context, addr string, d *net.Dialer) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: &w.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}
