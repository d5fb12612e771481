package gateway

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/http1"
)

type declineAll struct{}

func (declineAll) ServeFast(_ *http1.Request, dst []byte) ([]byte, bool) { return dst, false }

// TestAdoptedHTTPConnectionClosedWhenIdle: the epoll core closes a keep-alive connection it
// adopted once it stayed idle for Config.HTTPIdleTimeout, as net/http does with its IdleTimeout, and
// not before.
func TestAdoptedHTTPConnectionClosedWhenIdle(t *testing.T) {
	g := newEnv(t).gw
	server, client := socketPair(t)
	defer client.Close()
	s := &httpSession{h: declineAll{}}
	if !g.adopt(&s.conn, server, kindHTTP, s, nil) {
		t.Fatal("adopt failed")
	}
	g.start(&s.conn)
	seen := s.lastSeen.Load()
	idle := int64(g.cfg.HTTPIdleTimeout / g.cfg.Tick)

	s.heartbeat(seen + idle - 1)
	client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := client.Read(make([]byte, 1)); err == io.EOF {
		t.Fatal("closed before the idle timeout")
	}
	s.heartbeat(seen + idle)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %d bytes, %v after the idle timeout; want the connection closed", n, err)
	}
}

type answerAll struct{}

func (answerAll) ServeFast(_ *http1.Request, dst []byte) ([]byte, bool) {
	return append(dst, "HTTP/1.1 204 No Content\r\n\r\n"...), true
}

// TestAdoptedHTTPConnectionSeesRequestAndEndTogether: a request and the client's end of input
// that are both waiting when the connection's first event comes (one edge-triggered event) are
// both handled: the answer goes out and the connection closes.
func TestAdoptedHTTPConnectionSeesRequestAndEndTogether(t *testing.T) {
	g := newEnv(t).gw
	// TCP, not a socket pair: a Unix socket reports writability again whenever the peer reads,
	// which would hide a missed end of input behind an unrelated event.
	server, client := tcpConnPair(t)
	if _, err := client.Write([]byte("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	client.(*net.TCPConn).CloseWrite()
	time.Sleep(50 * time.Millisecond) // both are in the server's socket before it is registered
	s := &httpSession{h: answerAll{}}
	if !g.adopt(&s.conn, server, kindHTTP, s, nil) {
		t.Fatal("adopt failed")
	}
	g.start(&s.conn)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "HTTP/1.1 204 No Content\r\n\r\n" {
		t.Fatalf("read %q, %v; want the answer, then the end", got, err)
	}
}

// tcpConnPair returns the two ends of a loopback TCP connection; the client end is closed when
// the test ends.
func tcpConnPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}
