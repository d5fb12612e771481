package gateway

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// stallSink is a subscriber that holds up its channel's dispatcher on its first delivery until
// released, so that messages pile up behind it and the dispatcher takes them as one round. It
// records the size of every delivery it is handed.
type stallSink struct {
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sizes   []int
}

func (s *stallSink) deliver(_ *subscription, ds []*delivery, _ *iovecs) {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(ds))
	s.mu.Unlock()
	s.once.Do(func() { <-s.release })
}

func (s *stallSink) gap(*subscription, broker.GapReason) {}

func (s *stallSink) largest() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(0, maxOf(s.sizes))
}

func maxOf(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// TestBatchedRoundsKeepOrderPerTransport: messages that queue up while a fan-out runs are
// written to each connection together; every subscriber must still get its channels' messages
// once each, in order, with a gap notice exactly where it was reported, and an SSE stream over
// two channels must carry the right cursor on every event.
func TestBatchedRoundsKeepOrderPerTransport(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)

	// "a" and "b" hash to dispatchers we do not control; stalling both channels makes sure the
	// messages of each pile up whichever dispatcher owns them.
	stalls := map[string]*stallSink{}
	for _, ch := range []string{"a", "b"} {
		s := &stallSink{release: make(chan struct{})}
		sub, err := e.gw.hub.subscribe(context.Background(), ch, s, kindWS)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.gw.hub.goLive(sub, broker.ID{}); err != nil {
			t.Fatal(err)
		}
		stalls[ch] = s
	}

	wsc := e.dialWS(bearer(tok))
	wsc.expect("connected")
	for _, ch := range []string{"a", "b"} {
		wsc.send(map[string]any{"type": "subscribe", "channel": ch})
		wsc.expect("subscribed")
	}
	single, _ := e.openSSE("channel=a&access_token="+tok, nil)
	multi, _ := e.openSSE("channel=a&channel=b&access_token="+tok, nil)
	waitFor(t, 2*time.Second, func() bool { return e.gw.Subscribers("a") == 4 && e.gw.Subscribers("b") == 3 }, "all subscribed")

	// The first message of each channel stalls its dispatcher; everything after it queues.
	const perChannel = 300
	type event struct {
		channel, id string
		gap         bool
	}
	var want []event
	for i := range perChannel {
		for _, ch := range []string{"a", "b"} {
			id := e.publish(ch, `{"n":`+itoa(i)+`}`)
			want = append(want, event{channel: ch, id: id.String()})
		}
		if i == 100 || i == 200 {
			e.gw.hub.Gap("a", broker.GapLinkLost)
			want = append(want, event{channel: "a", gap: true})
		}
	}
	for _, s := range stalls {
		close(s.release)
	}

	expected := func(channels ...string) []event {
		var out []event
		for _, ev := range want {
			for _, ch := range channels {
				if ev.channel == ch {
					out = append(out, ev)
				}
			}
		}
		return out
	}

	// WebSocket: both channels on one connection, each in its own order.
	perChannelWS := map[string][]event{}
	for range len(expected("a", "b")) {
		m := wsc.next()
		switch m["type"] {
		case "message":
			perChannelWS[m["channel"].(string)] = append(perChannelWS[m["channel"].(string)], event{channel: m["channel"].(string), id: m["id"].(string)})
		case "gap":
			perChannelWS[m["channel"].(string)] = append(perChannelWS[m["channel"].(string)], event{channel: m["channel"].(string), gap: true})
		default:
			t.Fatalf("unexpected frame %v", m)
		}
	}
	for _, ch := range []string{"a", "b"} {
		assertEvents(t, "ws "+ch, perChannelWS[ch], expected(ch))
	}

	readSSE := func(c *sseClient, n int, checkCursor bool) map[string][]event {
		got := map[string][]event{}
		for range n {
			ev := c.next()
			if ev.event == "herald.gap" {
				got["a"] = append(got["a"], event{channel: "a", gap: true})
				continue
			}
			ch, id, _ := ev.message(t)
			if checkCursor && !strings.Contains(ev.id, id) {
				t.Fatalf("event %s of %s carries cursor %q, which lacks its own id", id, ch, ev.id)
			}
			if !checkCursor && ev.id != id {
				t.Fatalf("event %s carries id %q", id, ev.id)
			}
			got[ch] = append(got[ch], event{channel: ch, id: id})
		}
		return got
	}
	assertEvents(t, "sse single", readSSE(single, len(expected("a")), false)["a"], expected("a"))
	gotMulti := readSSE(multi, len(expected("a", "b")), true)
	for _, ch := range []string{"a", "b"} {
		assertEvents(t, "sse multi "+ch, gotMulti[ch], expected(ch))
	}
	lastA, lastB := expected("a")[len(expected("a"))-1], expected("b")[len(expected("b"))-1]
	waitFor(t, 2*time.Second, func() bool { return multi.lastID() == lastA.id+","+lastB.id }, "final cursor %q", multi.lastID())

	// The point of the test: the dispatcher did hand over several messages at once.
	for ch, s := range stalls {
		if s.largest() < 10 {
			t.Errorf("channel %s: largest round %d messages; the queued messages were not batched", ch, s.largest())
		}
	}
}

func assertEvents[E comparable](t *testing.T, who string, got, want []E) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d events, want %d", who, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: event %d is %v, want %v", who, i, got[i], want[i])
		}
	}
}
