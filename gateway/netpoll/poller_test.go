package netpoll

import (
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type recorder struct{ events chan Event }

func (r *recorder) HandleEvent(ev Event) { r.events <- ev }

func tcpPair(t *testing.T) (server, client *net.TCPConn) {
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
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
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

func readAll(t *testing.T, c *net.TCPConn) string {
	t.Helper()
	rc, _ := c.SyscallConn()
	buf := make([]byte, 100)
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), buf)
		return true
	}); err != nil || rerr != nil {
		t.Fatalf("read: %v %v", err, rerr)
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

func TestArmAfterCloseFails(t *testing.T) {
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
	server.Close()
	if err := d.Arm(Readable); err == nil {
		t.Fatal("Arm on a closed connection succeeded")
	}
	d.Unregister()
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

var _ syscall.Conn = (*net.TCPConn)(nil)

func register(p *Poller, c *net.TCPConn, h Handler) (*Desc, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	d, err := p.Register(rc, h)
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
