package herald

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func transports() []Transport { return []Transport{WebSocket, SSE} }

// TestRoundTrip publishes over HTTP and receives over each transport: several channels on one
// connection, event names and data intact, per-channel order, unsubscribe, replay with WithSince.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	pub := publisher(t, g.url())
	for _, tr := range transports() {
		t.Run(tr.String(), func(t *testing.T) {
			t.Parallel()
			ch := func(name string) string { return "rt-" + tr.String() + ":" + name }
			c, states := newTestClient(t, g.url(), tr)
			var a, b inbox
			subA, err := c.Subscribe(ch("a"), a.handle)
			if err != nil {
				t.Fatal(err)
			}
			subB, err := c.Subscribe(ch("b"), b.handle)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Subscribe(ch("a"), a.handle); !errors.Is(err, ErrAlreadySubscribed) {
				t.Fatalf("second Subscribe to the same channel: %v, want ErrAlreadySubscribed", err)
			}
			waitLive(t, subA)
			waitLive(t, subB)

			ctx := context.Background()
			type order struct {
				ID    int    `json:"id"`
				State string `json:"state"`
			}
			for i := range 10 {
				if _, err := pub.Publish(ctx, ch("a"), order{i, "paid"}, WithEvent("status")); err != nil {
					t.Fatal(err)
				}
				if _, err := pub.Publish(ctx, ch("b"), json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
					t.Fatal(err)
				}
			}
			gotA := a.waitMessages(t, 10, 10*time.Second)
			gotB := b.waitMessages(t, 10, 10*time.Second)
			for i, m := range gotA {
				var o order
				if err := m.Decode(&o); err != nil || o.ID != i || m.Event != "status" || m.Channel != ch("a") || m.ID == "" {
					t.Fatalf("message %d on a: %+v (%v)", i, m, err)
				}
			}
			for i, m := range gotB {
				if string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) || m.Event != "" {
					t.Fatalf("message %d on b: %+v", i, m)
				}
			}
			if subA.LastID() != gotA[9].ID {
				t.Fatalf("LastID %q, want the last message's id %q", subA.LastID(), gotA[9].ID)
			}

			// Unsubscribe b; a keeps receiving, b receives nothing more.
			if err := subB.Unsubscribe(); err != nil {
				t.Fatal(err)
			}
			publishN(t, pub, ch("b"), 100, 103)
			publishN(t, pub, ch("a"), 100, 103)
			gotA = a.waitMessages(t, 13, 10*time.Second)
			if d := datas(gotA[10:]); !slices.Equal(d, []string{"100", "101", "102"}) {
				t.Fatalf("a after unsubscribing b: %v", d)
			}
			time.Sleep(100 * time.Millisecond)
			if msgs, _, _ := b.snapshot(); len(msgs) != 10 {
				t.Fatalf("b received %d messages after Unsubscribe", len(msgs)-10)
			}

			// A new subscription from "0" replays the retained history, then goes live.
			var replay inbox
			if _, err := c.Subscribe(ch("b"), replay.handle, WithSince("0")); err != nil {
				t.Fatal(err)
			}
			publishN(t, pub, ch("b"), 103, 104)
			got := replay.waitMessages(t, 14, 10*time.Second)
			if d := datas(got[10:]); !slices.Equal(d, []string{"100", "101", "102", "103"}) || string(got[0].Data) != `{"n":0}` {
				t.Fatalf("replay from 0: %v", datas(got))
			}
			if n := states.count(Connected); n < 1 {
				t.Fatalf("state handler saw %d connects", n)
			}
		})
	}
}

// TestSSEReopenLosesNothing subscribes to more channels while a channel of the same SSE stream
// is busy: each change reopens the stream with the multi-channel cursor, and the busy channel
// gets every message once, in order.
func TestSSEReopenLosesNothing(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	pub := publisher(t, g.url())
	c, states := newTestClient(t, g.url(), SSE)
	var busy inbox
	sub, err := c.Subscribe("reopen:busy", busy.handle)
	if err != nil {
		t.Fatal(err)
	}
	waitLive(t, sub)
	const n = 60
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if _, err := pub.Publish(context.Background(), "reopen:busy", i); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var others [4]inbox
	for i := range others {
		time.Sleep(50 * time.Millisecond)
		if _, err := c.Subscribe(fmt.Sprintf("reopen:other%d", i), others[i].handle); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	wantSequence(t, "busy channel across reopens", busy.waitMessages(t, n, 10*time.Second), 0, n)
	time.Sleep(100 * time.Millisecond)
	msgs, _, _ := busy.snapshot()
	wantSequence(t, "busy channel, no duplicates", msgs, 0, n)
	if got := len(states.disconnects()); got < 4 {
		t.Fatalf("the stream reopened %d times; want one per Subscribe (4)", got)
	}
	// The new channels are live on the last stream.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if c.State() != Connected {
			return fmt.Errorf("state %v", c.State())
		}
		return nil
	})
	publishN(t, pub, "reopen:other3", 0, 1)
	wantSequence(t, "a channel added last", others[3].waitMessages(t, 1, 10*time.Second), 0, 1)
}

// TestSubscribeRefused: the server refuses a channel the token does not allow; the error reaches
// OnError and the error handler, and the connection and other subscriptions carry on.
func TestSubscribeRefused(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	pub := publisher(t, g.url())
	errs := make(chan error, 2)
	tok := mint(t, time.Hour, []string{"ok:*"}, nil)
	c, err := NewClient(g.url(), WithToken(tok), fastReconnect, WithErrorHandler(func(err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	subErr := make(chan error, 1)
	if _, err := c.Subscribe("secret:1", func(Message) {}, OnError(func(err error) { subErr <- err })); err != nil {
		t.Fatal(err)
	}
	var ok inbox
	sub, err := c.Subscribe("ok:1", ok.handle)
	if err != nil {
		t.Fatal(err)
	}
	var se *SubscribeError
	select {
	case err := <-subErr:
		if !errors.As(err, &se) || se.Code != "forbidden" || se.Channel != "secret:1" {
			t.Fatalf("OnError got %v, want a forbidden *SubscribeError", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnError")
	}
	if err := <-errs; !errors.As(err, &se) {
		t.Fatalf("error handler got %v", err)
	}
	waitLive(t, sub)
	publishN(t, pub, "ok:1", 0, 1)
	ok.waitMessages(t, 1, 10*time.Second)
	if _, err := c.Subscribe("secret:1", func(Message) {}); err != nil {
		t.Fatalf("the refused subscription was not removed: %v", err)
	}
	if _, err := c.Subscribe("bad channel", func(Message) {}); !errors.Is(err, ErrInvalidChannel) {
		t.Fatalf("invalid channel: %v", err)
	}
}

// TestCloseLeavesNoGoroutines closes connected clients of both transports and a publisher that
// has idle connections: nothing of theirs may be left running.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	g := startGateway(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pub, err := NewPublisher(g.url(), WithAPIKey(testAPIKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range transports() {
		c, err := Dial(context.Background(), g.url(), WithToken(mint(t, time.Hour, []string{"*"}, nil)), WithTransport(tr))
		if err != nil {
			t.Fatal(err)
		}
		var in inbox
		sub, err := c.Subscribe("close:"+tr.String(), in.handle)
		if err != nil {
			t.Fatal(err)
		}
		waitLive(t, sub)
		publishN(t, pub, "close:"+tr.String(), 0, 3)
		in.waitMessages(t, 3, 10*time.Second)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if c.State() != Closed {
			t.Fatalf("state after Close: %v", c.State())
		}
		if _, err := c.Subscribe("x", in.handle); !errors.Is(err, ErrClosed) {
			t.Fatalf("Subscribe after Close: %v", err)
		}
		c.Close() // twice is fine
	}
	pub.Close()
}

// TestDialFails: Dial gives up when its context ends and says why the attempts failed.
func TestDialFails(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := Dial(ctx, g.url(), WithToken("not-a-token"), fastReconnect)
	var pe *ProblemError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &pe) || pe.Status != 401 || pe.Type != "invalid-token" {
		t.Fatalf("Dial with a bad token: %v; want the deadline and a 401 invalid-token problem", err)
	}
}
