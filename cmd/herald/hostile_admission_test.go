package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Attacks on admission control, against the real binary: many connections from one address,
// connects too fast, a forged X-Forwarded-For, a full node, and a process out of descriptors.
// Every 127.0.0.0/8 address is loopback on Linux, so a test can be several clients at once.

// admConn is one raw HTTP/1.1 connection from a chosen local address.
type admConn struct {
	conn net.Conn
	br   *bufio.Reader
}

// admPaths are the subscribe requests of each transport (the poll waits long enough to be
// held through a test).
var admPaths = map[string]string{
	"websocket": "/v1/ws",
	"sse":       "/v1/sse?channel=adm",
	"poll":      "/v1/poll?channel=adm&timeout=30",
}

// admOpen dials s from local (an address of 127.0.0.0/8) and sends the subscribe request of
// transport with the dev subscriber token and the extra header lines.
func admOpen(t *testing.T, s *server, local, transport string, extra ...string) *admConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatalf("dial from %s: %v", local, err)
	}
	t.Cleanup(func() { conn.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer %s\r\n", admPaths[transport], s.sub)
	if transport == "websocket" {
		b.WriteString("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	return &admConn{conn: conn, br: bufio.NewReader(conn)}
}

// admResult is the head of an answer, and the problem document of a refusal.
type admResult struct {
	status     int
	retryAfter string
	problem    string // the problem's type; "" when the answer is not problem+json
}

// head reads the answer's head (and a refusal's body); the connection stays open after 101 and
// after an SSE stream's 200.
func (c *admConn) head(t *testing.T, s *server) admResult {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v (herald's log: %s)", err, s.logs())
	}
	r := admResult{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		var p struct{ Type string }
		body, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("problem %q: %v", body, err)
		}
		r.problem = p.Type
	}
	return r
}

// admExpect opens a connection and checks its answer: status 101/200 to be admitted, else a
// refusal with the problem type and a Retry-After of at least a second.
func admExpect(t *testing.T, s *server, local, transport string, status int, problemType string, extra ...string) *admConn {
	t.Helper()
	c := admOpen(t, s, local, transport, extra...)
	r := c.head(t, s)
	if r.status != status || r.problem != problemType {
		t.Fatalf("%s from %s: %d %q, want %d %q", transport, local, r.status, r.problem, status, problemType)
	}
	if problemType != "" {
		if n, err := strconv.Atoi(r.retryAfter); err != nil || n < 1 {
			t.Fatalf("%s from %s: Retry-After %q", transport, local, r.retryAfter)
		}
	}
	return c
}

// admHeldPoll opens a long-poll from local and waits until the node counts it admitted.
func admHeldPoll(t *testing.T, s *server, local string) *admConn {
	t.Helper()
	before := admMetric(t, s, "herald_admitted_connections")
	c := admOpen(t, s, local, "poll")
	waitUntil(t, 10*time.Second, func() bool { return admMetric(t, s, "herald_admitted_connections") > before },
		"the poll from %s admitted", local)
	return c
}

// admMetric reads one series from /metrics (-1 when it is missing).
func admMetric(t *testing.T, s *server, series string) float64 {
	t.Helper()
	if v, ok := metric(t, s, series); ok {
		return v
	}
	return -1
}

func admHealthy(t *testing.T, s *server) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.base + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
}

// TestHostileAdmissionNodeFull: a node at --max-connections refuses every transport with 503,
// Retry-After and a problem document before the upgrade or the stream, keeps answering its
// health checks, and admits again once a client leaves.
func TestHostileAdmissionNodeFull(t *testing.T) {
	s := startServer(t, freePort(t), "--max-connections", "3")
	ws := admExpect(t, s, "127.0.0.2", "websocket", 101, "")
	admExpect(t, s, "127.0.0.3", "sse", 200, "")
	admHeldPoll(t, s, "127.0.0.4")
	for _, transport := range []string{"websocket", "sse", "poll"} {
		admExpect(t, s, "127.0.0.5", transport, 503, "over-capacity")
	}
	admHealthy(t, s)
	for series, want := range map[string]float64{
		"herald_admitted_connections": 3, "herald_connection_limit": 3,
		`herald_connection_refusals_total{reason="node_full"}`: 3,
	} {
		if got := admMetric(t, s, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// A client leaves: its slot is released at its cleanup, and the next one is admitted.
	ws.conn.Close()
	waitUntil(t, 10*time.Second, func() bool { return admMetric(t, s, "herald_admitted_connections") == 2 },
		"the closed WebSocket's slot released")
	admExpect(t, s, "127.0.0.5", "websocket", 101, "")
}

// TestHostileAdmissionPerAddress: one address cannot hold more than its share, over any mix
// of transports, while another address still connects.
func TestHostileAdmissionPerAddress(t *testing.T) {
	s := startServer(t, freePort(t), "--max-connections-per-ip", "3")
	admExpect(t, s, "127.0.0.2", "websocket", 101, "")
	admExpect(t, s, "127.0.0.2", "sse", 200, "")
	poll := admHeldPoll(t, s, "127.0.0.2")
	for _, transport := range []string{"websocket", "sse", "poll"} {
		admExpect(t, s, "127.0.0.2", transport, 429, "too-many-connections")
	}
	admExpect(t, s, "127.0.0.3", "websocket", 101, "")
	if got := admMetric(t, s, `herald_connection_refusals_total{reason="address_connections"}`); got != 3 {
		t.Errorf("address_connections refusals %v", got)
	}
	// The poll's slot is released when it returns (here: its client went away).
	poll.conn.Close()
	waitUntil(t, 10*time.Second, func() bool { return admMetric(t, s, "herald_admitted_connections") == 3 },
		"the poll's slot released")
	admExpect(t, s, "127.0.0.2", "sse", 200, "")
}

// TestHostileAdmissionConnectRate: an address that connects faster than its rate is refused
// with 429 once its burst is spent; connections it closed do not give the burst back; other
// addresses are not affected.
func TestHostileAdmissionConnectRate(t *testing.T) {
	// One new connection per 10 s after a burst of 3: the test runs well within one refill.
	s := startServer(t, freePort(t), "--connect-rate-per-ip", "0.1", "--connect-burst-per-ip", "3")
	for i := range 3 {
		c := admExpect(t, s, "127.0.0.6", []string{"websocket", "sse", "websocket"}[i], []int{101, 200, 101}[i], "")
		c.conn.Close()
	}
	c := admOpen(t, s, "127.0.0.6", "sse")
	r := c.head(t, s)
	if r.status != 429 || r.problem != "connect-rate-limited" {
		t.Fatalf("fourth connect: %d %q", r.status, r.problem)
	}
	// The bucket holds a token again in at most 10 s: Retry-After says when.
	if n, err := strconv.Atoi(r.retryAfter); err != nil || n < 1 || n > 10 {
		t.Fatalf("Retry-After %q", r.retryAfter)
	}
	admExpect(t, s, "127.0.0.7", "websocket", 101, "")
	if got := admMetric(t, s, `herald_connection_refusals_total{reason="address_rate"}`); got != 1 {
		t.Errorf("address_rate refusals %v", got)
	}
}

// TestHostileAdmissionForwardedFor: X-Forwarded-For names the client only when the peer is a
// trusted proxy; from anyone else it is ignored, so it cannot be used to dodge the limits.
func TestHostileAdmissionForwardedFor(t *testing.T) {
	s := startServer(t, freePort(t), "--max-connections-per-ip", "1", "--trusted-proxies", "127.0.0.10/32")
	proxy := "127.0.0.10"
	admExpect(t, s, proxy, "websocket", 101, "", "X-Forwarded-For: 198.51.100.1")
	admExpect(t, s, proxy, "sse", 429, "too-many-connections", "X-Forwarded-For: 198.51.100.1")
	admExpect(t, s, proxy, "sse", 200, "", "X-Forwarded-For: 198.51.100.2")
	// A client forging its own entry in front of the proxy's is still counted as itself.
	admExpect(t, s, proxy, "websocket", 429, "too-many-connections", "X-Forwarded-For: 203.0.113.77, 198.51.100.1")
	admExpect(t, s, proxy, "websocket", 101, "", `Forwarded: for="198.51.100.3:5000"`)

	// Not a trusted proxy: the header means nothing, the TCP peer is the client.
	admExpect(t, s, "127.0.0.11", "websocket", 101, "", "X-Forwarded-For: 198.51.100.4")
	admExpect(t, s, "127.0.0.11", "sse", 429, "too-many-connections", "X-Forwarded-For: 198.51.100.5")
}

// TestHostileAdmissionHeaderTooLarge: a header block past 32 KiB is refused (431) instead of
// being buffered: a slow client trickling headers for the whole header timeout pins no more.
func TestHostileAdmissionHeaderTooLarge(t *testing.T) {
	s := startServer(t, freePort(t))
	c := admOpen(t, s, "127.0.0.8", "sse", "X-Filler: "+strings.Repeat("a", 64<<10))
	if r := c.head(t, s); r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 64 KiB header: %d", r.status)
	}
	admExpect(t, s, "127.0.0.8", "sse", 200, "", "X-Filler: "+strings.Repeat("a", 8<<10))
}

// admAlive fails the test when the server exited.
func admAlive(t *testing.T, s *server) {
	t.Helper()
	select {
	case err := <-s.exited:
		t.Fatalf("herald exited: %v\n%s", err, s.logs())
	default:
	}
}

// TestHostileAdmissionDescriptorLimit: with 200 descriptors the node admits 100 subscribers
// (the rest are its reserve) and refuses the next with 503 while /healthz answers; clients
// that then take every descriptor with bare connections make accept fail, which backs off
// without a log flood or a panic; once they leave the node serves again by itself.
func TestHostileAdmissionDescriptorLimit(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit is not installed")
	}
	s := startServerUnder(t, []string{prlimit, "--nofile=200:200"}, freePort(t))
	if got := admMetric(t, s, "herald_connection_limit"); got != 100 {
		t.Fatalf("connection limit %v with 200 descriptors, want 100", got)
	}
	var subs []*admConn
	for i := range 100 {
		subs = append(subs, admExpect(t, s, "127.0.1."+strconv.Itoa(1+i%50), []string{"websocket", "sse"}[i%2], []int{101, 200}[i%2], ""))
	}
	admExpect(t, s, "127.0.2.1", "websocket", 503, "over-capacity")
	admHealthy(t, s)

	// Take every descriptor left, and churn: close one bare connection and open another, so
	// that accepts alternately work and fail (what resets net/http's own back-off and made it
	// log each failure).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.3.1")}, Timeout: 5 * time.Second}
	var bare []net.Conn
	for range 150 {
		c, err := d.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		bare = append(bare, c)
	}
	waitUntil(t, 10*time.Second, func() bool { return strings.Contains(s.logs(), "too many open files") },
		"accept failing for want of descriptors (log: %s)", s.logs)
	for i := range 100 {
		bare[i].Close()
		c, err := d.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		bare[i] = c
		time.Sleep(10 * time.Millisecond)
	}
	admAlive(t, s)
	for _, c := range bare {
		c.Close()
	}
	for _, c := range subs {
		c.conn.Close()
	}
	// It recovers by itself: health checks and subscribers are served again.
	waitUntil(t, 20*time.Second, func() bool {
		resp, err := (&http.Client{Timeout: time.Second}).Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, "/healthz answering again")
	waitUntil(t, 10*time.Second, func() bool { return admMetric(t, s, "herald_admitted_connections") == 0 },
		"every slot released")
	admExpect(t, s, "127.0.2.1", "websocket", 101, "")
	admAlive(t, s)

	logs := s.logs()
	if strings.Contains(logs, "panic") {
		t.Fatalf("panic in the log:\n%s", logs)
	}
	warnings := 0
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(strings.ToLower(line), "accept") {
			warnings++
		}
	}
	// The test stays at the limit for a few seconds: one warning per 10 s interval, maybe two
	// on a slow machine, never one per failure.
	if warnings == 0 || warnings > 2 {
		t.Fatalf("%d accept warnings:\n%s", warnings, logs)
	}
	if got := admMetric(t, s, "herald_accept_errors_total"); got < 1 {
		t.Errorf("herald_accept_errors_total = %v", got)
	}
}
