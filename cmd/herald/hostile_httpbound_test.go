package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Hostile clients that ask for much and read nothing, or send their request a byte at a time:
// the node's memory stays bounded and its handlers give up after their timeouts.

// hbMessageBytes is the size of each message the tests store: near the 64 KiB data limit.
const hbMessageBytes = 60 << 10

// hbFill stores n large messages in channel with the batch API, 100 per request.
func hbFill(t *testing.T, s *server, channel string, n int) {
	t.Helper()
	item := `{"channel":"` + channel + `","data":"` + strings.Repeat("m", hbMessageBytes) + `"}`
	for n > 0 {
		k := min(n, 100)
		body := `{"messages":[` + strings.Repeat(item+",", k-1) + item + `]}`
		req, _ := http.NewRequest("POST", s.base+"/v1/messages", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.pub)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("batch publish: %d", resp.StatusCode)
		}
		n -= k
	}
}

// hbStatusKB reads a field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
func hbStatusKB(t *testing.T, s *server, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no %s in /proc/<pid>/status", field)
	return 0
}

// hbUnread sends a GET on a connection with a small receive buffer and reads only the status
// line: the handler has built its answer and is writing it to a client that reads no more.
func hbUnread(t *testing.T, s *server, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer %s\r\n\r\n", path, s.sub)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("%s: %q, %v", path, line, err)
	}
	return c
}

// TestHostileUnreadLongPollOfBigChannels: one long-poll of 8 channels full of large messages,
// never read, holds about one answer's budget on the node, not the channels' whole backlog
// (before the budget: the whole backlog, encoded, at once).
func TestHostileUnreadLongPollOfBigChannels(t *testing.T) {
	s := startServer(t, freePort(t))
	const channels, perChannel = 8, 300 // 8 x 300 x 60 KiB: 140 MiB stored
	query := "timeout=0&since=" + strings.TrimSuffix(strings.Repeat("0,", channels), ",")
	for i := range channels {
		ch := "hbpoll" + strconv.Itoa(i)
		hbFill(t, s, ch, perChannel)
		query += "&channel=" + ch
	}
	before := hbStatusKB(t, s, "VmHWM")
	hbUnread(t, s, "/v1/poll?"+query)
	if grown := hbStatusKB(t, s, "VmHWM") - before; grown > 40<<10 {
		t.Fatalf("an unread long-poll grew the node's peak memory by %d MiB, want under 40", grown>>10)
	}
	// The node answers others meanwhile.
	if a := httpDo(t, "GET", s.base+"/v1/channels/hbpoll0?access_token="+s.sub, nil); a.status != 200 {
		t.Fatalf("channel info while the poll is unread: %d", a.status)
	}
}

// TestHostileUnreadHistoryReads: ten history reads of a channel of large messages (limit=1000),
// none read, hold about a page each (before the page's byte bound: the whole channel, encoded,
// each).
func TestHostileUnreadHistoryReads(t *testing.T) {
	s := startServer(t, freePort(t))
	hbFill(t, s, "hbhist", 500) // 30 MiB
	before := hbStatusKB(t, s, "VmHWM")
	for range 10 {
		hbUnread(t, s, "/v1/channels/hbhist/messages?since=0&limit=1000")
	}
	if grown := hbStatusKB(t, s, "VmHWM") - before; grown > 60<<10 {
		t.Fatalf("10 unread history reads grew the node's peak memory by %d MiB, want under 60", grown>>10)
	}
}

// TestHostileUnreadResponseTimesOut: a response far larger than the socket buffers (a history
// page under a large --history-page-bytes), never read, does not hold its handler (and the
// page's memory) for ever: the write timeout fails its write and the handler returns.
func TestHostileUnreadResponseTimesOut(t *testing.T) {
	s := startServer(t, freePort(t), "--write-timeout", "1s", "--history-page-bytes", strconv.Itoa(64<<20), "--log-level", "debug")
	hbFill(t, s, "hbwrite", 500) // a 30 MiB page
	hbUnread(t, s, "/v1/channels/hbwrite/messages?since=0&limit=1000")
	// The request's log line is written when its handler returns.
	waitUntil(t, 10*time.Second, func() bool {
		return strings.Contains(s.logs(), `msg="http request" method=GET path=/v1/channels/hbwrite/messages`)
	}, "the unread response's handler to return after the write timeout (log: %s)", s.logs)
}

// TestHostileSlowlorisBody: a publish that sends its headers and then its body a byte at a time
// is answered 408 and cut off after the body timeout, not held for as long as it drips.
func TestHostileSlowlorisBody(t *testing.T) {
	s := startServer(t, freePort(t), "--body-timeout", "1s")
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/channels/hbslow/messages HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", s.pub)
	answered := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c) // until the node closes the connection
		answered <- string(b)
	}()
	drip := time.NewTicker(200 * time.Millisecond)
	defer drip.Stop()
	giveUp := time.After(15 * time.Second)
	for {
		select {
		case got := <-answered:
			if !strings.HasPrefix(got, "HTTP/1.1 408") || !strings.Contains(got, `"type":"request-timeout"`) {
				t.Fatalf("slow body answered %q, want 408 request-timeout", got)
			}
			return
		case <-drip.C:
			if _, err := c.Write([]byte(" ")); err != nil {
				select {
				case got := <-answered:
					if !strings.HasPrefix(got, "HTTP/1.1 408") {
						t.Fatalf("slow body answered %q, want 408", got)
					}
					return
				case <-time.After(5 * time.Second):
					t.Fatal("write failed and no answer")
				}
			}
		case <-giveUp:
			t.Fatal("a body dripping a byte every 200 ms was still being read after 15 s (body timeout 1 s)")
		}
	}
}

// TestHostileLongPollOutlivesWriteTimeout: the write timeout does not cut a long-poll that
// waits longer than it: the poll's own deadline is its wait plus a margin.
func TestHostileLongPollOutlivesWriteTimeout(t *testing.T) {
	s := startServer(t, freePort(t), "--write-timeout", "1s")
	resp, err := http.Get(s.base + "/v1/poll?channel=hbwait&timeout=2&access_token=" + s.sub)
	if err != nil {
		t.Fatalf("a long-poll waiting past the write timeout: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"messages":[]`) {
		t.Fatalf("long-poll answer: %d %q %v", resp.StatusCode, body, err)
	}
}
