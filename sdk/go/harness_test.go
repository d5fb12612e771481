package herald

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-gateway/herald/api/auth"
)

// The tests run the real gateway: TestMain builds ./cmd/herald once and each test starts the
// `herald serve` processes it needs on free loopback ports.

var heraldBin string

const (
	testSecret = "herald-sdk-test-secret-0123456789abcdef" // 32+ bytes
	testAPIKey = "sdk-test-api-key"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-sdk-go")
	if err != nil {
		panic(err)
	}
	heraldBin = filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-o", heraldBin, "github.com/herald-gateway/herald/cmd/herald")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "building herald:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// What goleak.VerifyTestMain does, but with the temporary directory removed after.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: goroutines left behind:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// noKeepAlive is the harness's own HTTP client: it leaves no idle connection (and so no
// goroutine) behind.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// gatewayProc is a `herald serve` process that can be killed and started again on its address.
type gatewayProc struct {
	t    *testing.T
	addr string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs syncBuffer
}

// startGateway runs `herald serve` on a free port with the test secret and API key; args add flags.
func startGateway(t *testing.T, args ...string) *gatewayProc {
	t.Helper()
	g := &gatewayProc{t: t, addr: freeAddr(t), args: args}
	g.start()
	t.Cleanup(func() {
		g.kill()
		if t.Failed() {
			t.Logf("gateway %s log:\n%s", g.addr, g.logs.String())
		}
	})
	return g
}

func (g *gatewayProc) url() string { return "http://" + g.addr }

// start runs the process and waits until it is ready.
func (g *gatewayProc) start() {
	g.t.Helper()
	args := append([]string{"serve", "--listen", g.addr, "--jwt-secret", testSecret, "--api-key", testAPIKey,
		"--shutdown-timeout", "3s", "--log-level", "warn"}, g.args...)
	cmd := exec.Command(heraldBin, args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "HERALD_") })
	cmd.Stdout, cmd.Stderr = &g.logs, &g.logs
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	g.mu.Lock()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()
	checkFor(g.t, 10*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-done:
			return fmt.Errorf("herald exited: %s", g.logs.String())
		default:
		}
		resp, err := noKeepAlive.Get(g.url() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %d", resp.StatusCode)
		}
		return nil
	})
}

// kill ends the process at once (SIGKILL): clients see their connections reset.
func (g *gatewayProc) kill() { g.signal(syscall.SIGKILL) }

// stop shuts the process down gracefully (SIGTERM): clients get the reconnect hint.
func (g *gatewayProc) stop() { g.signal(syscall.SIGTERM) }

func (g *gatewayProc) signal(sig syscall.Signal) {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.cmd = nil
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
			t.Fatalf("after %v: %v", total, err)
		}
		time.Sleep(every)
	}
}

// mint returns a token for the test secret.
func mint(t testing.TB, ttl time.Duration, subscribe, publish []string) string {
	t.Helper()
	tok, err := auth.MintHMAC([]byte(testSecret), auth.MintClaims{Subject: "sdk-test", Subscribe: subscribe, Publish: publish, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// publisher returns a Publisher with the API key, closed at the end of the test.
func publisher(t *testing.T, baseURL string, opts ...Option) *Publisher {
	t.Helper()
	opts = append([]Option{WithAPIKey(testAPIKey), WithRetry(RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond})}, opts...)
	p, err := NewPublisher(baseURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// fastReconnect keeps reconnect delays short in tests.
var fastReconnect = WithReconnect(ReconnectPolicy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond})

// newTestClient returns a Client with a subscribe-anything token, closed at the end of the test.
func newTestClient(t *testing.T, baseURL string, tr Transport, opts ...Option) (*Client, *stateLog) {
	t.Helper()
	states := &stateLog{}
	tok := mint(t, time.Hour, []string{"*"}, nil)
	opts = append([]Option{WithToken(tok), WithTransport(tr), fastReconnect, WithStateHandler(states.record)}, opts...)
	c, err := NewClient(baseURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, states
}

// stateLog records a Client's state changes.
type stateLog struct {
	mu      sync.Mutex
	changes []StateChange
}

func (s *stateLog) record(sc StateChange) {
	s.mu.Lock()
	s.changes = append(s.changes, sc)
	s.mu.Unlock()
}

func (s *stateLog) count(st State) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.changes {
		if c.State == st {
			n++
		}
	}
	return n
}

// disconnects returns the errors of the Disconnected changes.
func (s *stateLog) disconnects() []StateChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StateChange
	for _, c := range s.changes {
		if c.State == Disconnected {
			out = append(out, c)
		}
	}
	return out
}

// inbox collects what a subscription's handler and gap callback receive, in order.
type inbox struct {
	mu     sync.Mutex
	events []string // message data (JSON) or "gap"
	msgs   []Message
	gaps   int
	why    []GapReason // the gaps' reasons, in order
}

func (in *inbox) handle(m Message) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.msgs = append(in.msgs, m)
	in.events = append(in.events, string(m.Data))
}

func (in *inbox) gap(_ string, reason GapReason) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.gaps++
	in.why = append(in.why, reason)
	in.events = append(in.events, "gap")
}

// reasons returns the reasons of the gaps so far.
func (in *inbox) reasons() []GapReason {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.why)
}

func (in *inbox) snapshot() ([]Message, []string, int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs), slices.Clone(in.events), in.gaps
}

// waitMessages waits until the inbox holds at least n messages.
func (in *inbox) waitMessages(t testing.TB, n int, total time.Duration) []Message {
	t.Helper()
	checkFor(t, total, 10*time.Millisecond, func() error {
		msgs, _, _ := in.snapshot()
		if len(msgs) < n {
			return fmt.Errorf("received %d of %d messages: %v", len(msgs), n, datas(msgs))
		}
		return nil
	})
	msgs, _, _ := in.snapshot()
	return msgs
}

func datas(msgs []Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Data)
	}
	return out
}

// waitLive waits until the subscription has a position: the server placed it.
func waitLive(t testing.TB, sub *Subscription) {
	t.Helper()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if sub.LastID() == "" {
			return fmt.Errorf("subscription to %s not established", sub.Channel())
		}
		return nil
	})
}

// publishN publishes the JSON numbers from..to-1 to channel and returns their ids.
func publishN(t testing.TB, p *Publisher, channel string, from, to int) []string {
	t.Helper()
	var ids []string
	for i := from; i < to; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id, err := p.Publish(ctx, channel, i)
		cancel()
		if err != nil {
			t.Fatalf("publish %d to %s: %v", i, channel, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// wantSequence checks that msgs are exactly the numbers from..to-1, in order.
func wantSequence(t testing.TB, what string, msgs []Message, from, to int) {
	t.Helper()
	var want []string
	for i := from; i < to; i++ {
		want = append(want, fmt.Sprint(i))
	}
	if got := datas(msgs); !slices.Equal(got, want) {
		t.Fatalf("%s: received %v\nwant %v", what, got, want)
	}
}

// tcpProxy forwards TCP connections to a target. It can cut every connection and refuse new
// ones (an outage between client and gateway), or freeze the open connections: they stay open
// but carry nothing more (a dead peer), while new connections work.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu           sync.Mutex
	blocked      bool
	nextConn     int
	frozenBefore int // connections numbered below it carry nothing
	conns        map[net.Conn]bool
	wg           sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.blocked {
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
		n := p.nextConn
		p.nextConn++
		p.conns[c], p.conns[up] = true, true
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(n, c, up)
		go p.pipe(n, up, c)
	}
}

// pipe copies src to dst until either ends, dropping what it reads once connection n is frozen.
// The end of a frozen connection is not passed on either: the other side sees no FIN.
func (p *tcpProxy) pipe(n int, src, dst net.Conn) {
	defer p.wg.Done()
	frozen := false
	defer func() {
		p.mu.Lock()
		src.Close()
		delete(p.conns, src)
		if !frozen {
			dst.Close()
			delete(p.conns, dst)
		}
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		p.mu.Lock()
		frozen = n < p.frozenBefore
		p.mu.Unlock()
		if k > 0 && !frozen {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every open connection and refuses new ones until resume.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) resume() {
	p.mu.Lock()
	p.blocked = false
	p.mu.Unlock()
}

// freeze makes the connections open now carry nothing more; they stay open.
func (p *tcpProxy) freeze() {
	p.mu.Lock()
	p.frozenBefore = p.nextConn
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

var _ io.Writer = (*syncBuffer)(nil)
