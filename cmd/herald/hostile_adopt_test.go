package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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
	metrics.series() // the connection is open and served before the limit
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
	if got := metrics.series(series...); got[0] != len(streams) || got[1] != len(streams) || got[2] != 0 || got[3] != 0 {
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
	wc := dialWS(t, s, wsOpts{query: s.sub, timeout: 5 * time.Second})
	_, err := wc.readJSON() // the close frame may come with the upgrade's answer
	wc.conn.Close()
	var ce wsutil.ClosedError
	if !errors.As(err, &ce) || ce.Code != 1011 {
		t.Fatalf("a WebSocket at the limit: %v, want close 1011", err)
	}

	if strings.Contains(s.logs(), "panic") {
		t.Fatalf("herald panicked:\n%s", s.logs())
	}
	if got := metrics.series(series...); got[0] != len(streams) || got[1] != len(streams) || got[3] != 0 {
		t.Fatalf("%v = %v with %d streams open", series, got, len(streams))
	}

	// The clients leave: every count goes back to nothing and the node serves streams again.
	for _, st := range streams {
		st.conn.Close()
	}
	waitUntil(t, 5*time.Second, func() bool {
		got := metrics.series(series...)
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

// adoptDialSmallWindow connects to herald with a small receive buffer and a small segment size
// (which keeps herald's send buffer small too): a client that does not read blocks herald's
// writes after a few kilobytes.
func adoptDialSmallWindow(t *testing.T, s *server) *rawClient {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
			if err == nil {
				err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, 1024)
			}
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, logs: s.logs, conn: conn, br: bufio.NewReader(conn)}
}

// adoptPipeline publishes n messages to channel on one keep-alive connection the epoll core
// adopted, pipelined, and reads no answer until all are sent; then it sends tail (one or more
// writes) and reads: exactly one complete answer per request, in order. It returns the ids of
// the publishes and the answer to the request in tail, if any.
//
// The publishes go in batches of one write each, each batch smaller than the core's 16 KiB
// read and sent once the one before is served: so the core reads whole requests and serves
// them until the answers fill the socket buffers (or, holding back, stops reading). Only the
// tail decides how the connection goes back to net/http.
func adoptPipeline(t *testing.T, s *server, channel string, n int, tail ...string) ([]string, *answer) {
	t.Helper()
	c := adoptDialSmallWindow(t, s)
	publish := func(i int) string {
		return rawRequest("POST", "/v1/channels/"+channel+"/messages", s.pub, "application/json", fmt.Sprintf(`{"data":"%06d"}`, i))
	}
	if a := c.send(publish(0)); a.status != 201 { // net/http's; then the core's
		t.Fatalf("first publish: %+v", a)
	}
	metrics := dialRaw(t, s)
	published := func() int { return metrics.series("herald_messages_published_total")[0] }
	// settled waits until herald published want messages, or stopped publishing.
	settled := func(want int) bool {
		last, still := -1, 0
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			now := published()
			if now >= want {
				return true
			}
			if now == last {
				if still++; still == 20 {
					return false
				}
			} else {
				last, still = now, 0
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("herald keeps publishing slowly")
		return false
	}
	base := published()
	var rest strings.Builder
	wrote := make(chan error, 1)
	for i := 1; i <= n; {
		var b strings.Builder
		for ; i <= n && b.Len() < 12<<10; i++ {
			b.WriteString(publish(i))
		}
		if rest.Len() > 0 { // herald holds back: the rest waits for the reader
			rest.WriteString(b.String())
			continue
		}
		if _, err := io.WriteString(c.conn, b.String()); err != nil {
			t.Fatal(err)
		}
		if !settled(base + i - 1) {
			rest.WriteString(" ") // marks the hold; trimmed below
		}
	}
	for _, part := range tail {
		if rest.Len() > 0 {
			rest.WriteString(part)
			continue
		}
		if _, err := io.WriteString(c.conn, part); err != nil {
			t.Fatal(err)
		}
		settled(base + n + 1) // the core has read the part (or is holding back)
	}
	go func() { _, err := io.WriteString(c.conn, strings.TrimPrefix(rest.String(), " ")); wrote <- err }()

	ids := []string{}
	answerRE := regexp.MustCompile(`^\{"id":"(\d+-\d+)","channel":"` + channel + `"\}$`)
	for i := 1; i <= n; i++ {
		a := c.read()
		var id string
		if m := answerRE.FindStringSubmatch(strings.TrimSpace(a.body)); m != nil {
			id = m[1]
		}
		if a.status != 201 || id == "" {
			t.Fatalf("answer %d of %d: %+v, want 201 with the id", i, n, a)
		}
		ids = append(ids, id)
	}
	var ta *answer
	if len(tail) > 0 {
		a := c.read()
		ta = &a
	}
	if err := <-wrote; err != nil {
		t.Fatalf("writing the pipeline: %v", err)
	}
	// Nothing more: no answer twice, no stray bytes.
	c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if extra, _ := c.br.Peek(1); len(extra) > 0 {
		more, _ := io.ReadAll(io.LimitReader(c.br, 300))
		t.Fatalf("bytes after the last answer: %q", more)
	}
	return ids, ta
}

// adoptHistory returns the ids channel's history holds, oldest first.
func adoptHistory(t *testing.T, s *server, channel string) []string {
	t.Helper()
	var ids []string
	since := "0"
	for {
		a := dialRaw(t, s).send(rawRequest("GET", "/v1/channels/"+channel+"/messages?limit=1000&since="+since, s.pub, "", ""))
		if a.status != 200 {
			t.Fatalf("history: %+v", a)
		}
		for _, m := range regexp.MustCompile(`"id":"(\d+-\d+)"`).FindAllStringSubmatch(a.body, -1) {
			ids = append(ids, m[1])
		}
		if !strings.Contains(a.body, `"more":true`) {
			return ids
		}
		since = ids[len(ids)-1]
	}
}

// adoptCheckPipeline checks that the history of channel holds the first publish and then
// exactly the ids answered, once each, in order.
func adoptCheckPipeline(t *testing.T, s *server, channel string, answered []string) {
	t.Helper()
	h := adoptHistory(t, s, channel)
	if len(h) != len(answered)+1 || !slices.Equal(h[1:], answered) {
		t.Fatalf("history of %s: %d messages, answered %d publishes (+1 before the pipeline); want the same ids in the same order", channel, len(h), len(answered))
	}
}

// TestHostilePipelineThenDeclinedRequest: publishes pipelined past what the socket buffers hold,
// then a request the fast path leaves to net/http. Each gets its answer, whole and in order.
func TestHostilePipelineThenDeclinedRequest(t *testing.T) {
	s := startServer(t, freePort(t), "--history-size", "5000")
	const n = 2000
	ids, tail := adoptPipeline(t, s, "pipe", n, rawRequest("GET", "/v1/channels/pipe", s.pub, "", ""))
	if tail.status != 200 || !strings.Contains(tail.body, `"last_id":"`+ids[n-1]+`"`) {
		t.Fatalf("the declined request's answer: %+v, want the channel with last_id %s", tail, ids[n-1])
	}
	adoptCheckPipeline(t, s, "pipe", ids)
}

// TestHostilePipelineThenSplitRequest: publishes pipelined past what the socket buffers hold,
// then one publish whose first part ends a read (as at the end of the core's 16 KiB read
// buffer): the core hands it to net/http. Each gets its answer, whole and in order.
func TestHostilePipelineThenSplitRequest(t *testing.T) {
	s := startServer(t, freePort(t), "--history-size", "5000")
	const n = 2000
	last := rawRequest("POST", "/v1/channels/split/messages", s.pub, "application/json", `{"data":"last"}`)
	ids, tail := adoptPipeline(t, s, "split", n, last[:100], last[100:])
	m := regexp.MustCompile(`"id":"(\d+-\d+)"`).FindStringSubmatch(tail.body)
	if tail.status != 201 || m == nil {
		t.Fatalf("the split publish's answer: %+v", tail)
	}
	adoptCheckPipeline(t, s, "split", append(ids, m[1]))
}
