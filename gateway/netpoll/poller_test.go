package netpoll

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type recorder struct{ events chan Event }

func (r *recorder) HandleEvent(ev Event) { r.events <- ev }

// rawPair returns a connected pair: the server side as a bare non-blocking descriptor (a
// duplicate taken before its net.Conn was closed, as the gateway does) that the caller closes,
// the client as a net.Conn.
func rawPair(t *testing.T) (server int, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(sfd uintptr) { fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	s.Close() // Go's poller lets go of the socket; fd keeps it open
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fd, c.(*net.TCPConn)
}

// tcpPair is rawPair with the server descriptor closed when the test ends.
func tcpPair(t *testing.T) (server int, client *net.TCPConn) {
	fd, c := rawPair(t)
	t.Cleanup(func() { unix.Close(fd) })
	return fd, c
}

func waitEvent(t *testing.T, r *recorder, want Event) Event {
	t.Helper()
	select {
	case ev := <-r.events:
		if ev&want == 0 {
			t.Fatalf("got event %b, want %b", ev, want)
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatalf("no event %b within 5s", want)
	}
	return 0
}

func noEvent(t *testing.T, r *recorder) {
	t.Helper()
	select {
	case ev := <-r.events:
		t.Fatalf("unexpected event %b", ev)
	case <-time.After(100 * time.Millisecond):
	}
}

func readAll(t *testing.T, fd int) string {
	t.Helper()
	buf := make([]byte, 100)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n])
}

func TestReadableIsOneShotUntilArmed(t *testing.T) {
	p, err := New(Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	server, client := tcpPair(t)
	r := &recorder{events: make(chan Event, 10)}
	d, err := register(p, server, r)
	if err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("hello"))
	waitEvent(t, r, Readable)
	// Not re-armed: more data must not produce a second event.
	client.Write([]byte("again"))
	noEvent(t, r)
	if got := readAll(t, server); got != "helloagain" {
		t.Fatalf("read %q", got)
	}
	client.Write([]byte("x"))
	if err := d.Arm(Readable); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, r, Readable)
	readAll(t, server)
	d.Arm(Readable)
	client.Close()
	waitEvent(t, r, HangUp)
	d.Unregister()
	if p.Len() != 0 {
		t.Fatalf("Len = %d after Unregister", p.Len())
	}
}

func TestWritableWhenArmed(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	server, _ := tcpPair(t)
	r := &recorder{events: make(chan Event, 10)}
	d, err := register(p, server, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Arm(Writable); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, r, Writable)
}

func TestArmAfterUnregisterFails(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	server, _ := tcpPair(t)
	d, err := register(p, server, &recorder{events: make(chan Event, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d.Unregister()
	if d.Registered() {
		t.Fatal("Registered after Unregister")
	}
	if err := d.Arm(Readable); err == nil {
		t.Fatal("Arm after Unregister succeeded")
	}
	d.Unregister() // a second call is harmless
}

func TestRegisterAfterClose(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	server, _ := tcpPair(t)
	if _, err := register(p, server, &recorder{}); err != ErrClosed {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func register(p *Poller, fd int, h Handler) (*Desc, error) {
	d, err := p.Register(fd, h)
	return &d, err
}

// TestReusedSlotIgnoresStaleToken: after Unregister, a new registration may take the same slot;
// the old token must not reach the new handler.
func TestReusedSlotIgnoresStaleToken(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, _ := tcpPair(t)
	b, _ := tcpPair(t)
	ra, rb := &recorder{events: make(chan Event, 1)}, &recorder{events: make(chan Event, 1)}
	da, err := register(p, a, ra)
	if err != nil {
		t.Fatal(err)
	}
	old := da.token
	da.Unregister()
	db, err := register(p, b, rb)
	if err != nil {
		t.Fatal(err)
	}
	if uint32(db.token) != uint32(old) || db.token == old {
		t.Fatalf("tokens %x then %x: want the same slot, another generation", old, db.token)
	}
	if p.lookup(old) != nil || p.lookup(db.token) != Handler(rb) {
		t.Fatal("a stale token found a handler")
	}
}

// TestReusedDescriptorNumber: a descriptor closed after Unregister is reused by the next socket;
// the new registration gets only its own events.
func TestReusedDescriptorNumber(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, ca := rawPair(t)
	ra := &recorder{events: make(chan Event, 10)}
	da, err := register(p, a, ra)
	if err != nil {
		t.Fatal(err)
	}
	ca.Write([]byte("x")) // an event for a may be queued or handled: either way it is a's
	da.Unregister()
	unix.Close(a)
	b, cb := tcpPair(t) // most likely the same number as a
	rb := &recorder{events: make(chan Event, 10)}
	if _, err := register(p, b, rb); err != nil {
		t.Fatal(err)
	}
	cb.Write([]byte("y"))
	waitEvent(t, rb, Readable)
	if got := readAll(t, b); got != "y" {
		t.Fatalf("b read %q", got)
	}
	// a's handler sees at most the event it had before Unregister, never b's.
	time.Sleep(50 * time.Millisecond)
	if n := len(ra.events); n > 1 {
		t.Fatalf("a's handler got %d events", n)
	}
}

// blocker is a handler that, on its first event, waits inside Blocking until released.
type blocker struct {
	p        *Poller
	entered  chan struct{}
	release  chan struct{}
	returned chan struct{}
}

func (b *blocker) HandleEvent(Event) {
	b.p.Blocking(func() {
		close(b.entered)
		<-b.release
	})
	close(b.returned)
}

// TestBlockingHandlerDoesNotStarveOthers: with one worker, a handler waiting inside Blocking
// (as a subscribe waits on a frozen broker) must not keep other connections' events from being
// handled, and the pool must shrink back to its size once the wait ends.
func TestBlockingHandlerDoesNotStarveOthers(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	blockedFd, blockedClient := tcpPair(t)
	b := &blocker{p: p, entered: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(b.release) }) }
	defer release() // before p.Close, which waits for the handler
	if _, err := register(p, blockedFd, b); err != nil {
		t.Fatal(err)
	}
	otherFd, otherClient := tcpPair(t)
	r := &recorder{events: make(chan Event, 10)}
	od, err := register(p, otherFd, r)
	if err != nil {
		t.Fatal(err)
	}

	blockedClient.Write([]byte("subscribe"))
	<-b.entered
	for i := range 3 {
		otherClient.Write([]byte("ping"))
		waitEvent(t, r, Readable)
		readAll(t, otherFd)
		if err := od.Arm(Readable); err != nil {
			t.Fatal(err)
		}
		if n := p.running.Load(); n != 2 {
			t.Fatalf("event %d: %d workers while one handler waits, want 2 (the worker and its stand-in)", i, n)
		}
	}

	release()
	<-b.returned
	// The pool shrinks when a worker finishes its next handler.
	otherClient.Write([]byte("ping"))
	waitEvent(t, r, Readable)
	deadline := time.Now().Add(5 * time.Second)
	for p.running.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers after the wait ended, want 1", p.running.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStandInsStayWhileNeeded: a stand-in started for one wait serves the waits that follow
// soon after (no goroutine per wait), and leaves once no wait needed it for a while.
func TestStandInsStayWhileNeeded(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitRunning := func(want int32, what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for p.running.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d workers, want %d", what, p.running.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for round := range 5 {
		fd, client := tcpPair(t)
		b := &blocker{p: p, entered: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
		var releaseOnce sync.Once
		release := func() { releaseOnce.Do(func() { close(b.release) }) }
		defer release() // before p.Close, which waits for the handler
		if _, err := register(p, fd, b); err != nil {
			t.Fatal(err)
		}
		client.Write([]byte("wait"))
		<-b.entered
		// The worker and one stand-in: the stand-in of round 0 in every later round.
		waitRunning(2, "during wait "+strconv.Itoa(round))
		release()
		<-b.returned
		// The stand-in stays for the next wait.
		time.Sleep(20 * time.Millisecond)
		if n := p.running.Load(); n != 2 {
			t.Fatalf("after wait %d: %d workers, want 2 (the stand-in lingers)", round, n)
		}
	}
	start := time.Now()
	waitRunning(1, "after the waits")
	if d := time.Since(start); d > 3*standInLinger {
		t.Fatalf("the stand-in left %v after the last wait", d)
	}
}

// TestBlockingOutsideWorker: Blocking called outside a worker (the gateway may handle frames
// that came with the upgrade request on the HTTP goroutine) leaves the pool at its size too.
func TestBlockingOutsideWorker(t *testing.T) {
	p, err := New(Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ran := false
	p.Blocking(func() { ran = true })
	if !ran {
		t.Fatal("Blocking did not run fn")
	}
	// Two events, so each worker (the stand-in included) finishes a handler and one leaves.
	fd, client := tcpPair(t)
	r := &recorder{events: make(chan Event, 10)}
	d, err := register(p, fd, r)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.running.Load() != 2 {
		client.Write([]byte("x"))
		waitEvent(t, r, Readable)
		readAll(t, fd)
		d.Arm(Readable)
		if time.Now().After(deadline) {
			t.Fatalf("%d workers, want 2", p.running.Load())
		}
	}
}

// TestEdgeRegistrationReportsEachArrival: an edge-triggered registration needs no Arm: each new
// arrival of bytes is an event, and so is the peer's end.
func TestEdgeRegistrationReportsEachArrival(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	server, client := tcpPair(t)
	r := &recorder{events: make(chan Event, 10)}
	d, err := p.RegisterEdge(server, r)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Unregister()
	waitEvent(t, r, Writable) // the socket is writable from the start
	client.Write([]byte("one"))
	waitEvent(t, r, Readable)
	if got := readAll(t, server); got != "one" {
		t.Fatalf("read %q", got)
	}
	client.Write([]byte("two")) // no Arm in between
	waitEvent(t, r, Readable)
	readAll(t, server)
	client.Close()
	waitEvent(t, r, HangUp)
	if err := d.Arm(Readable); err != nil {
		t.Fatalf("Arm on an edge registration: %v", err)
	}
}
