package valkey

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

func TestSubscribeDeliversAcrossNodes(t *testing.T) {
	srv := valkeytest.StartServer(t)
	rec := newRecorder(t)
	sub := newTestBroker(t, Options{URL: srv.URL(), Handler: rec})
	pub := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()

	publish(t, pub, "room", -1) // before Subscribe: not delivered
	if err := sub.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	var want []broker.ID
	for i := range 100 {
		want = append(want, publish(t, pub, "room", i))
	}
	got := rec.waitCount(t, "room", 100, 5*time.Second)
	for i, m := range got {
		if m.ID != want[i] || string(m.Data) != string(data(i)) {
			t.Fatalf("delivery %d = %+v, want id %v", i, m, want[i])
		}
	}
	publish(t, pub, "other", 0) // no interest: not delivered
	time.Sleep(50 * time.Millisecond)
	if len(rec.got("other")) != 0 || len(rec.got("room")) != 100 {
		t.Fatalf("unexpected deliveries: other %d, room %d", len(rec.got("other")), len(rec.got("room")))
	}
}

func TestSubscribeIsCounted(t *testing.T) {
	srv := valkeytest.StartServer(t)
	rec := newRecorder(t)
	b := newTestBroker(t, Options{URL: srv.URL(), Handler: rec})
	ctx := context.Background()

	for range 2 {
		if err := b.Subscribe(ctx, "c"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Unsubscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "c", 0)
	rec.waitCount(t, "c", 1, 5*time.Second)

	if err := b.Unsubscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	waitShardSubscribers(t, srv, "herald:{c}:live", 0)
	publish(t, b, "c", 1)
	time.Sleep(50 * time.Millisecond)
	if n := len(rec.got("c")); n != 1 {
		t.Fatalf("%d deliveries after the last Unsubscribe, want 1", n)
	}
	// 1 -> 0 -> 1 ends subscribed.
	if err := b.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "c", 2)
	rec.waitCount(t, "c", 2, 5*time.Second)
	if err := b.Unsubscribe(ctx, "nobody"); err != nil {
		t.Fatalf("Unsubscribe of a channel without interest: %v", err)
	}
}

// TestSubscribeConcurrentTransitions races Subscribe and Unsubscribe on one channel; whatever
// the interleaving, the count decides the end state.
func TestSubscribeConcurrentTransitions(t *testing.T) {
	srv := valkeytest.StartServer(t)
	rec := newRecorder(t)
	b := newTestBroker(t, Options{URL: srv.URL(), Handler: rec})
	ctx := context.Background()

	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if err := b.Subscribe(ctx, "race"); err != nil {
					t.Error(err)
					return
				}
				if err := b.Unsubscribe(ctx, "race"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitShardSubscribers(t, srv, "herald:{race}:live", 0)

	if err := b.Subscribe(ctx, "race"); err != nil {
		t.Fatal(err)
	}
	waitShardSubscribers(t, srv, "herald:{race}:live", 1)
	publish(t, b, "race", 0)
	rec.waitCount(t, "race", 1, 5*time.Second)
}

// waitShardSubscribers waits until the server counts n subscribers of a shard channel.
func waitShardSubscribers(t *testing.T, srv *valkeytest.Server, channel string, n int) {
	t.Helper()
	want := channel + "\n" + string(rune('0'+n))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		out := srv.MustDo("PUBSUB", "SHARDNUMSUB", channel)
		if out != want {
			return errors.New("PUBSUB SHARDNUMSUB = " + strings.ReplaceAll(out, "\n", " ") + ", want " + strings.ReplaceAll(want, "\n", " "))
		}
		return nil
	})
}

func TestControlMessages(t *testing.T) {
	srv := valkeytest.StartServer(t)
	var mu sync.Mutex
	got := map[string][]string{}
	onControl := func(name string) func([]byte) {
		return func(p []byte) {
			mu.Lock()
			got[name] = append(got[name], string(p))
			mu.Unlock()
		}
	}
	a := newTestBroker(t, Options{URL: srv.URL(), OnControl: onControl("a")})
	newTestBroker(t, Options{URL: srv.URL(), OnControl: onControl("b")})
	other := newTestBroker(t, Options{URL: srv.URL(), KeyPrefix: "other", OnControl: onControl("other")})

	ctx := context.Background()
	for _, p := range []string{"kick:s-1", "reload"} {
		if err := a.PublishControl(ctx, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, name := range []string{"a", "b"} {
			if strings.Join(got[name], ",") != "kick:s-1,reload" {
				return errors.New(name + " got " + strings.Join(got[name], ","))
			}
		}
		return nil
	})
	if err := other.PublishControl(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got["other"]) != 1 {
			return errors.New("other prefix did not get its own message")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got["a"]) != 2 || len(got["b"]) != 2 || len(got["other"]) != 1 {
		t.Fatalf("control messages crossed key prefixes: %v", got)
	}
}

func TestClosedBroker(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	if err := b.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Publish(ctx, broker.PublishRequest{Channel: "c", Data: data(0)}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	if _, err := b.History(ctx, "c", broker.HistoryQuery{}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("History after Close: %v", err)
	}
	if err := b.Subscribe(ctx, "c"); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if err := b.Ready(ctx); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Ready after Close: %v", err)
	}
	_, errs := b.PublishBatch(ctx, []broker.PublishRequest{{Channel: "c", Data: data(0)}})
	if !errors.Is(errs[0], broker.ErrClosed) {
		t.Errorf("PublishBatch after Close: %v", errs[0])
	}
}
