package gateway

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/metrics"
	"golang.org/x/sys/unix"
)

// BenchmarkFanOut measures the per-subscriber cost of delivering messages to every live
// WebSocket subscriber of a channel: the encode-once path writing to real sockets. One op is one
// dispatcher round of `batch` messages to all subscribers (batch 1: a message arriving alone,
// as at a low rate; batch 16: messages that queued up while the previous round ran);
// ns/delivery and allocs/delivery divide by the number of messages times subscribers.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, batch := range []int{1, 16} {
			b.Run(itoa(n)+"subs/batch"+itoa(batch), func(b *testing.B) { benchFanOut(b, n, batch) })
		}
	}
}

func benchFanOut(b *testing.B, n, batch int) {
	verifier, err := auth.New(context.Background(), auth.Config{APIKeys: []string{"k"}})
	if err != nil {
		b.Fatal(err)
	}
	defer verifier.Close()
	g, err := New(Config{Auth: verifier, Metrics: metrics.New(nil), QueueBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	g.hub.broker = nopBroker{}

	drained := make(chan struct{})
	var peers []net.Conn
	for range n {
		server, client := socketPair(b)
		peers = append(peers, client)
		s := &wsSession{}
		if !g.adopt(&s.conn, server, kindWS, s, nil) {
			b.Fatal("adopt failed")
		}
		sub, err := g.hub.subscribe(context.Background(), "bench", s, kindWS)
		if err != nil {
			b.Fatal(err)
		}
		g.hub.goLive(sub, broker.ID{})
	}
	// Drain every peer so sockets never fill: the benchmark measures the write path, not the
	// queue.
	for _, p := range peers {
		buf := make([]byte, 64<<10) // allocated here, so B/op counts only the fan-out
		go func() {
			for {
				if _, err := p.Read(buf); err != nil {
					drained <- struct{}{}
					return
				}
			}
		}()
	}
	msg := broker.Message{Channel: "bench", Event: "tick", Data: json.RawMessage(`{"price":101.25,"symbol":"HRLD"}`)}
	var before, after runtime.MemStats
	b.ReportAllocs()
	runtime.ReadMemStats(&before)
	r := &dispatchRound{}
	seq := uint64(0)
	b.ResetTimer()
	for range b.N {
		r.msgs = r.msgs[:0]
		for range batch {
			seq++
			msg.ID = broker.ID{Ms: 1, Seq: seq}
			r.msgs = append(r.msgs, msg)
		}
		g.hub.fanOut(r, "bench")
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	deliveries := float64(b.N) * float64(n) * float64(batch)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
	for _, p := range peers {
		p.Close()
	}
	for range peers {
		<-drained
	}
}

// BenchmarkLoopbackWrite is the floor under any fan-out over TCP on this machine: one
// non-blocking write of a 100-byte frame to each of 1,000 loopback TCP connections in turn, whose
// peers read, with no gateway code at all. A delivery to a subscriber on loopback can cost no
// less than this (on loopback the kernel also runs the receiving half of TCP in the writer's
// context), which is what bounds the fan-out's CPU per delivery at a low message rate, where
// each message goes out alone.
func BenchmarkLoopbackWrite(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const n = 1000
	fds := make([]int, 0, n)
	var peers []net.Conn
	done := make(chan struct{}, n)
	for range n {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		server, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		fd, err := detach(server)
		if err != nil {
			b.Fatal(err)
		}
		fds = append(fds, fd)
		peers = append(peers, client)
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := client.Read(buf); err != nil {
					done <- struct{}{}
					return
				}
			}
		}()
	}
	frame := make([]byte, 100)
	b.ResetTimer()
	for i := range b.N {
		if _, err := unix.Write(fds[i%n], frame); err != nil && err != unix.EAGAIN {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	for i := range fds {
		unix.Close(fds[i])
		peers[i].Close()
		<-done
	}
}

// socketPair returns two connected stream sockets as net.Conns.
func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f) // dups the descriptor
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// nopBroker confirms interest at once; the benchmark calls the fan-out directly.
type nopBroker struct{ broker.Broker }

func (nopBroker) Subscribe(context.Context, string) error   { return nil }
func (nopBroker) Unsubscribe(context.Context, string) error { return nil }
