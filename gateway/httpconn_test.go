package gateway

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/http1"
	"github.com/herald-gateway/herald/gateway/metrics"
)

type declineAll struct{}

func (declineAll) ServeFast(_ *http1.Request, dst []byte) ([]byte, bool) { return dst, false }

// TestAdoptedHTTPConnectionClosedWhenIdle: the epoll core closes a keep-alive connection it
// adopted once it stayed idle for httpIdleTimeout, as net/http does with its IdleTimeout, and
// not before.
func TestAdoptedHTTPConnectionClosedWhenIdle(t *testing.T) {
	verifier, err := auth.New(context.Background(), auth.Config{APIKeys: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	defer verifier.Close()
	g, err := New(Config{Auth: verifier, Metrics: metrics.New(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	server, client := socketPair(t)
	defer client.Close()
	s := &httpSession{h: declineAll{}}
	if !g.adopt(&s.conn, server, kindHTTP, s) {
		t.Fatal("adopt failed")
	}
	g.start(&s.conn)
	seen := s.lastSeen.Load()
	idle := int64(httpIdleTimeout / g.cfg.Tick)

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
