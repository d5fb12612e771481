package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/gateway/broker"
)

// What a paged replay may hold queued for a client that reads nothing: one page (its data,
// framing and cursors) and the live queue bound, with room to spare.
const pagedReplayBound = replayPageBytes + 128<<10

// smallBufferDialer connects with a 16 KiB receive buffer, set before the connection exists
// so that the window the kernel offers stays small.
func smallBufferDialer() *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
}

// maxQueued is the most bytes any connection of the gateway has queued now.
func (e *testEnv) maxQueued() int {
	most := 0
	e.gw.wheel.each(func(c *conn) {
		c.wmu.Lock()
		most = max(most, c.queued)
		c.wmu.Unlock()
	})
	return most
}

// watchQueued samples maxQueued for d and fails when it passes bound.
func (e *testEnv) watchQueued(d time.Duration, bound int, what string) {
	e.t.Helper()
	most := 0
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		most = max(most, e.maxQueued())
	}
	if most > bound {
		e.t.Fatalf("%s: the gateway queued %d bytes for a client that reads nothing, more than one page and the live bound (%d)", what, most, bound)
	}
	if most == 0 {
		e.t.Fatalf("%s: nothing queued: the client's socket took everything, the test proves nothing", what)
	}
}

func publishPadded(e *testEnv, channel string, n, size int, tag string) []string {
	ids := make([]string, n)
	pad := strings.Repeat("p", size)
	for i := range ids {
		ids[i] = e.publish(channel, fmt.Sprintf(`{%q:%d,"pad":%q}`, tag, i, pad)).String()
	}
	return ids
}

// TestPagedReplayWebSocketBoundedThenComplete: a client with a small receive buffer resumes
// 300 x 60 KB (18 MB) and reads nothing, while live messages are published (enough to overflow
// the pending bound). The gateway holds about one page for it, never disconnects it, and once
// it reads it gets every message once, in order, the live ones after the replay.
func TestPagedReplayWebSocketBoundedThenComplete(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes, c.PendingBytes = 64<<10, 8<<10 }), withRetention(100000, time.Hour))
	ids := publishPadded(e, "big", 300, 60000, "r")

	d := ws.Dialer{Timeout: 5 * time.Second, NetDial: smallBufferDialer().DialContext}
	netc, br, _, err := d.Dial(context.Background(), "ws://"+e.addr+"/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	if br == nil {
		br = bufio.NewReader(netc)
	}
	c := &wsClient{t: t, conn: netc, br: br}
	t.Cleanup(func() { netc.Close() })
	c.send(map[string]any{"type": "auth", "token": e.token([]string{"big"}, nil, time.Hour)})
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "big", "since": "0"})
	waitFor(t, 5*time.Second, func() bool { return e.maxQueued() > 0 }, "the replay queues")

	live := publishPadded(e, "big", 60, 1000, "l")
	e.watchQueued(300*time.Millisecond, pagedReplayBound, "WebSocket")

	c.expect("connected")
	if m := c.expect("subscribed"); m["recovered"] != true {
		t.Fatalf("subscribed %v", m)
	}
	for i, want := range append(ids, live...) {
		m, err := c.read(10 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m["type"] != "message" || m["id"] != want {
			t.Fatalf("message %d: %v %v, want id %s", i, m["type"], m["id"], want)
		}
	}
	after := e.publish("big", `{"after":true}`)
	if m := c.expect("message"); m["id"] != after.String() {
		t.Fatalf("live after the replay: %v, want %s", m["id"], after)
	}
	if n := counterValue(t, e.metrics.SlowConsumerDisconnects); n != 0 {
		t.Fatalf("%v slow-consumer disconnects", n)
	}
}

// TestPagedReplaySSEThreeChannels: the same for an SSE stream of three channels: bounded while
// it reads nothing, then every message of each channel once, in order, live ones after, and
// the cursor of the last event is every channel's last id.
func TestPagedReplaySSEThreeChannels(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes, c.PendingBytes = 64<<10, 8<<10 }), withRetention(100000, time.Hour))
	chans := []string{"sa", "sb", "sc"}
	want := map[string][]string{}
	for _, ch := range chans {
		want[ch] = publishPadded(e, ch, 100, 60000, "r")
	}
	netc, err := smallBufferDialer().Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netc.Close() })
	fmt.Fprintf(netc, "GET /v1/sse?channel=sa&channel=sb&channel=sc&since=0,0,0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n",
		e.token(chans, nil, time.Hour))
	waitFor(t, 5*time.Second, func() bool { return e.maxQueued() > 0 }, "the replay queues")
	for _, ch := range chans {
		want[ch] = append(want[ch], publishPadded(e, ch, 20, 1000, "l")...)
	}
	e.watchQueued(300*time.Millisecond, pagedReplayBound, "SSE")

	br := bufio.NewReader(netc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("answer %v %v", resp, err)
	}
	c := &sseClient{t: t, br: br, events: make(chan sseEvent, 10000), errs: make(chan error, 1)}
	go c.run()
	total := 0
	for _, ids := range want {
		total += len(ids)
	}
	got := map[string][]string{}
	for range total {
		var ev sseEvent
		select {
		case ev = <-c.events:
		case <-time.After(10 * time.Second):
			t.Fatalf("no event in time; got %d of %d", len(got["sa"])+len(got["sb"])+len(got["sc"]), total)
		}
		if ev.event != "" {
			t.Fatalf("unexpected %s event %s", ev.event, ev.data)
		}
		ch, id, _ := ev.message(t)
		got[ch] = append(got[ch], id)
	}
	for _, ch := range chans {
		if strings.Join(got[ch], " ") != strings.Join(want[ch], " ") {
			t.Fatalf("channel %s: got %d messages, want %d, in order, each once", ch, len(got[ch]), len(want[ch]))
		}
	}
	waitFor(t, 5*time.Second, func() bool {
		return c.lastID() == strings.Join([]string{want["sa"][119], want["sb"][119], want["sc"][119]}, ",")
	}, "the cursor is every channel's last id (it is %q)", c.lastID())
}

// TestPagedReplayPastTheCapSendsTheNewest: a backlog of more than ReplayCap messages, more than
// a page in bytes, still replays the newest ReplayCap with replay_cap.
func TestPagedReplayPastTheCapSendsTheNewest(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.ReplayCap = 30 }), withRetention(100000, time.Hour))
	ids := publishPadded(e, "cap", 80, 60000, "r")
	c := e.dialWS(nil)
	c.auth(e.token([]string{"cap"}, nil, time.Hour))
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "cap", "since": "0"})
	if m := c.expect("subscribed"); m["recovered"] != false || m["reason"] != broker.GapReplayCap.String() {
		t.Fatalf("subscribed %v", m)
	}
	for _, want := range ids[50:] {
		if m := c.expect("message"); m["id"] != want {
			t.Fatalf("replayed %v, want %s", m["id"], want)
		}
	}
	live := e.publish("cap", `1`)
	if m := c.expect("message"); m["id"] != live.String() {
		t.Fatalf("live %v, want %s", m["id"], live)
	}
}
