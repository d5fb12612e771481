package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// Hostile resumes: clients that ask for a channel's whole history and read nothing hold about a
// replay page each on the node, not the history (before paged replays: the whole backlog,
// encoded, per client).

// replayDialSmall upgrades a connection whose receive buffer is set small before the connect, so
// the kernel cannot take the replay off the node's hands, and authenticates it by query token.
func replayDialSmall(t *testing.T, s *server) *wsClient {
	t.Helper()
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	d := ws.Dialer{NetDial: nd.DialContext, Timeout: 5 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), strings.Replace(s.base, "http", "ws", 1)+"/v1/ws?access_token="+s.sub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	c := &wsClient{t: t, conn: conn, br: br, readTimeout: 10 * time.Second}
	c.expect("connected")
	return c
}

// TestHostileUnreadResumesArePaged: 20 WebSocket clients resume a channel of 300 x 60 KiB from
// its start and read nothing: the node's peak memory grows by a fraction of the 20 x 18 MiB the
// replays hold together, and a client that then reads gets every message once, in order.
func TestHostileUnreadResumesArePaged(t *testing.T) {
	s := startServer(t, freePort(t))
	const messages = 300
	hbFill(t, s, "replaybig", messages)
	before := hbStatusKB(t, s, "VmHWM")
	clients := make([]*wsClient, 20)
	for i := range clients {
		clients[i] = replayDialSmall(t, s)
		clients[i].send(subscribeFrame("replaybig", "0"))
	}
	// Every client's replay has started once the node has sent each at least a page's worth
	// (a page holds 4 of these messages); a replay that is not paged is sent whole at once.
	waitUntil(t, 20*time.Second, func() bool {
		n, _ := metric(t, s, "herald_replayed_messages_total")
		return n >= 20*4
	}, "every client's replay to start")
	if grown := hbStatusKB(t, s, "VmHWM") - before; grown > 100<<10 {
		t.Fatalf("20 unread resumes of an 18 MiB channel grew the node's peak memory by %d MiB, want under 100", grown>>10)
	}
	// A client that now reads gets the whole replay, in order, each message once.
	c := clients[0]
	if m := c.await("subscribed"); m["recovered"] != true {
		t.Fatalf("subscribed: %v", m)
	}
	prev := ""
	for n := 0; n < messages; {
		m := c.nextJSON()
		if m["type"] != "message" {
			continue
		}
		id, _ := m["id"].(string)
		if prev != "" && !idLess(prev, id) {
			t.Fatalf("message %d has id %s after %s", n, id, prev)
		}
		if d, _ := json.Marshal(m["data"]); len(d) < hbMessageBytes {
			t.Fatalf("message %d: %d bytes of data", n, len(d))
		}
		prev = id
		n++
	}
}

// idLess compares two message ids "ms-seq".
func idLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) < len(bm)
	}
	if am != bm {
		return am < bm
	}
	if len(as) != len(bs) {
		return len(as) < len(bs)
	}
	return as < bs
}

// TestHostileSlowResumeWithLiveTraffic: a client resumes a large channel, reads nothing for a
// while, and meanwhile the channel gets more live messages than the node buffers behind a replay
// (a small --queue-bytes makes the bound small): once it reads, it gets every stored and every
// live message once, in order, with no gap — on the memory broker and on Valkey.
func TestHostileSlowResumeWithLiveTraffic(t *testing.T) {
	for _, b := range []string{"memory", "valkey"} {
		t.Run(b, func(t *testing.T) {
			var s *server
			if b == "valkey" {
				s = startNode(t, valkeytest.StartServer(t).URL(), "--queue-bytes", "16384")
			} else {
				s = startServer(t, freePort(t), "--queue-bytes", "16384")
			}
			const stored, live = 100, 300
			hbFill(t, s, "replaylive", stored)
			c := replayDialSmall(t, s)
			c.send(subscribeFrame("replaylive", "0"))
			waitUntil(t, 10*time.Second, func() bool {
				n, _ := metric(t, s, "herald_replayed_messages_total")
				return n >= 1
			}, "the replay to start")
			for i := range live {
				s.publish("replaylive", `{"live":`+strconv.Itoa(i)+`}`)
			}
			if m := c.await("subscribed"); m["recovered"] != true {
				t.Fatalf("subscribed: %v", m)
			}
			prev, seen := "", 0
			for seen < stored+live {
				m := c.nextJSON()
				switch m["type"] {
				case "message":
				case "gap":
					t.Fatalf("gap after %d messages: %v", seen, m)
				default:
					continue
				}
				id, _ := m["id"].(string)
				if prev != "" && !idLess(prev, id) {
					t.Fatalf("message %d has id %s after %s: out of order or repeated", seen, id, prev)
				}
				if seen >= stored {
					d, _ := json.Marshal(m["data"])
					if want := `{"live":` + strconv.Itoa(seen-stored) + `}`; string(d) != want {
						t.Fatalf("live message %d is %s, want %s", seen-stored, d, want)
					}
				}
				prev = id
				seen++
			}
		})
	}
}

// TestHostileCloseInTheMiddleOfAReplay: clients resume a large channel, take a little of the
// replay and hang up while it is still being paged (WebSocket and SSE alike): the node lets go of
// every connection, subscription and channel, and serves the next client whole.
func TestHostileCloseInTheMiddleOfAReplay(t *testing.T) {
	s := startServer(t, freePort(t))
	const messages = 200
	hbFill(t, s, "replayquit", messages)
	for range 10 {
		c := replayDialSmall(t, s)
		c.send(subscribeFrame("replayquit", "0"))
		c.await("subscribed")
		c.nextJSON() // the first message: the replay is under way
		c.conn.Close()
		sse := hbUnread(t, s, "/v1/sse?channel=replayquit&since=0")
		sse.Close()
	}
	for _, series := range []string{`herald_subscriptions`, `herald_channels`, `herald_connections{transport="websocket"}`, `herald_connections{transport="sse"}`} {
		waitUntil(t, 10*time.Second, func() bool {
			n, ok := metric(t, s, series)
			return ok && n == 0
		}, "%s to come back to 0 after the clients hung up mid-replay", series)
	}
	c := replayDialSmall(t, s)
	c.send(subscribeFrame("replayquit", "0"))
	c.await("subscribed")
	for n := 0; n < messages; {
		if m := c.nextJSON(); m["type"] == "message" {
			n++
		}
	}
}
