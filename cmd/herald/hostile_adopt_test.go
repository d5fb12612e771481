package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/sys/unix"
)

// Attacks on the moment a connection moves into the epoll core (adoption) or out of it (hand-back
// to net/http): at the descriptor limit, adoption fails; a pipelining publisher that does not
// read makes answers wait in the core's queue when a request goes back to net/http.

// adoptLimitFDs lowers the file descriptor limit (soft and hard: Go raises the soft one to the
// hard one at start) of the running herald to headroom descriptors above what it has open now.
func adoptLimitFDs(t *testing.T, s *server, headroom int) {
	t.Helper()
	pid := s.cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("cannot count herald's descriptors: %v", err)
	}
	n := uint64(len(fds) + headroom)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}, nil); err != nil {
		t.Skipf("cannot lower herald's descriptor limit: %v", err)
	}
}

// adoptMetrics reads /metrics over c, a keep-alive connection opened while descriptors were
// plentiful, and returns the value of each series named (0 when absent).
func adoptMetrics(c *rawClient, series ...string) []int {
	c.t.Helper()
	a := c.send(rawRequest("GET", "/metrics", "", "", ""))
	if a.status != 200 || a.closes {
		c.t.Fatalf("/metrics: %+v", a)
	}
	out := make([]int, len(series))
	for i, name := range series {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)$`).FindStringSubmatch(a.body)
		if m != nil {
			out[i], _ = strconv.Atoi(m[1])
		}
	}
	return out
}

// adoptSSE is an SSE stream read byte for byte.
type adoptSSE struct {
	conn net.Conn
	br   *bufio.Reader
}

// adoptOpenSSE asks for a stream of channel and returns it, or the refusal when the answer is
// not 200.
func adoptOpenSSE(t *testing.T, s *server, channel string) (*adoptSSE, answer) {
	t.Helper()
	c := dialRaw(t, s)
	if _, err := io.WriteString(c.conn, rawRequest("GET", "/v1/sse?channel="+channel, s.sub, "", "")); err != nil {
		t.Fatal(err)
	}
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("opening a stream: no answer (%v); herald's log:\n%s", err, s.logs())
	}
	if resp.StatusCode == 200 {
		return &adoptSSE{conn: c.conn, br: c.br}, answer{status: 200}
	}
	body, _ := io.ReadAll(resp.Body)
	return nil, answer{status: resp.StatusCode, headers: resp.Header.Get("Content-Type") + " " + resp.Header.Get("Retry-After"),
		body: string(body), closes: resp.Close}
}

// waitData reads the stream until a data line contains want.
func (st *adoptSSE) waitData(t *testing.T, want string) {
	t.Helper()
	st.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := st.br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before %q: %v", want, err)
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, want) {
			return
		}
	}
}

// TestHostileSSEAtDescriptorLimit: streams opened until herald runs out of descriptors. The ones
// it cannot take over get 503 unavailable; no panic, no ghost subscription, no miscount; a
// publisher's keep-alive connection at the limit stays served; a WebSocket at the limit is
// closed with 1011; and once the clients leave, the node serves streams again.
func TestHostileSSEAtDescriptorLimit(t *testing.T) {
	s := startServer(t, freePort(t))
	metrics := dialRaw(t, s)
	adoptMetrics(metrics) // the connection is open and served before the limit
	adoptLimitFDs(t, s, 6)

	var streams []*adoptSSE
	refused := 0
	for range 40 {
		st, a := adoptOpenSSE(t, s, "limit")
		if st != nil {
			streams = append(streams, st)
			continue
		}
		if a.status != 503 || a.headers != "application/problem+json 1" || !strings.Contains(a.body, `"unavailable"`) || !a.closes {
			t.Fatalf("a stream refused at the limit: %+v, want 503 unavailable with Retry-After: 1, then the end", a)
		}
		if refused++; refused == 3 {
			break
		}
	}
	if refused < 3 || len(streams) == 0 {
		t.Fatalf("%d streams open and %d refused; want some of each", len(streams), refused)
	}
	t.Logf("%d streams open, %d refused", len(streams), refused)
	series := []string{`herald_subscriptions`, `herald_connections{transport="sse"}`, `herald_connections{transport="http"}`, `herald_connections{transport="websocket"}`}
	if got := adoptMetrics(metrics, series...); got[0] != len(streams) || got[1] != len(streams) || got[2] != 0 || got[3] != 0 {
		t.Fatalf("%v = %v with %d streams open", series, got, len(streams))
	}

	// A publisher on a keep-alive connection at the limit: the epoll core cannot take the
	// connection after the first publish, so net/http keeps it.
	pub := dialRaw(t, s)
	for i := range 2 {
		if a := pub.send(rawRequest("POST", "/v1/channels/limit/messages", s.pub, "application/json", fmt.Sprintf(`{"data":"at-limit-%d"}`, i))); a.status != 201 {
			t.Fatalf("publish %d at the limit: %+v", i, a)
		}
	}
	for _, st := range streams {
		st.waitData(t, "at-limit-1")
	}
	pub.conn.Close()

	// A WebSocket at the limit: upgraded by net/http, then refused by the core.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wc, _, _, err := ws.Dial(ctx, strings.Replace(s.base, "http", "ws", 1)+"/v1/ws?access_token="+s.sub)
	if err == nil {
		wc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = wsutil.ReadServerText(wc)
		wc.Close()
		var ce wsutil.ClosedError
		if !errors.As(err, &ce) || ce.Code != 1011 {
			t.Fatalf("a WebSocket at the limit: %v, want close 1011", err)
		}
	}

	if strings.Contains(s.logs(), "panic") {
		t.Fatalf("herald panicked:\n%s", s.logs())
	}
	if got := adoptMetrics(metrics, series...); got[0] != len(streams) || got[1] != len(streams) || got[3] != 0 {
		t.Fatalf("%v = %v with %d streams open", series, got, len(streams))
	}

	// The clients leave: every count goes back to nothing and the node serves streams again.
	for _, st := range streams {
		st.conn.Close()
	}
	waitUntil(t, 5*time.Second, func() bool {
		got := adoptMetrics(metrics, series...)
		return got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == 0
	}, "every count back to 0 after the clients left")
	st, a := adoptOpenSSE(t, s, "limit")
	if st == nil {
		t.Fatalf("a stream after the clients left: %+v", a)
	}
	if a := metrics.send(rawRequest("POST", "/v1/channels/limit/messages", s.pub, "application/json", `{"data":"again"}`)); a.status != 201 {
		t.Fatalf("publish after the clients left: %+v", a)
	}
	st.waitData(t, "again")
}
