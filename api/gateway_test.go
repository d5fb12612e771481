package api_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestGatewayRoutesCanHijack checks that the delegated routes reach the gateway with a
// ResponseWriter that can be hijacked: the stub answers on the raw connection.
func TestGatewayRoutesCanHijack(t *testing.T) {
	e := newEnv(t)
	conn, err := net.DialTimeout("tcp", e.srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte("GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("/v1/ws answered %q (%v), want 101", status, err)
	}

	r := e.do(request{path: "/v1/sse?channel=a"})
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "text/event-stream" || !strings.HasPrefix(string(r.body), "retry:") {
		t.Fatalf("/v1/sse: %d %v %q", r.status, r.header, r.body)
	}
	r = e.do(request{path: "/v1/poll?channel=a"})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"cursor"`) {
		t.Fatalf("/v1/poll: %d %s", r.status, r.body)
	}
}

func TestWithoutGateway(t *testing.T) {
	e := newEnv(t, func(c *envConfig) { c.noGateway = true })
	for _, path := range []string{"/v1/ws", "/v1/sse?channel=a", "/v1/poll?channel=a"} {
		e.do(request{path: path, token: testAPIKey}).wantProblem(t, 404, "not-found")
	}
	r := e.do(request{path: "/v1/channels/a", token: testAPIKey})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"subscribers":0`) {
		t.Fatalf("channel info without a gateway: %d %s", r.status, r.body)
	}
}
