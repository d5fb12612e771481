package admission

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener is a real TCP listener whose Accept fails with EMFILE while fail is set,
// the way accept(2) fails when the process has no descriptor left.
type failingListener struct {
	net.Listener
	fail  atomic.Bool
	calls atomic.Int64
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	if l.fail.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
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

func TestListenerBacksOffAndRecovers(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inner := &failingListener{Listener: tcp}
	inner.fail.Store(true)
	var logs syncBuffer
	m := NewMetrics(nil)
	ln := Listener(inner, slog.New(slog.NewTextHandler(&logs, nil)), m)
	defer ln.Close()

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Fail for a while. Without a back-off eight tries take microseconds; with it the waits
	// before them (5 ms doubling) add up to 635 ms at least, however loaded the machine.
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for inner.calls.Load() < 8 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if elapsed := time.Since(start); inner.calls.Load() < 8 || elapsed < 600*time.Millisecond {
		t.Fatalf("%d accept calls in %v", inner.calls.Load(), elapsed)
	}
	calls := inner.calls.Load()
	if n := strings.Count(logs.String(), "accept is failing"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
	if got := value(m.AcceptErrors); got < 7 {
		t.Errorf("accept errors metric %v, calls %d", got, calls)
	}
	inner.fail.Store(false)
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no accept after descriptors came back")
	}
}

func TestListenerCloseEndsBackOff(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inner := &failingListener{Listener: tcp}
	inner.fail.Store(true)
	ln := Listener(inner, nil, nil)
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	for inner.calls.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still backing off after Close")
	}
}

func TestListenerPassesOtherErrors(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listener(tcp, nil, nil)
	tcp.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v", err)
	}
}
