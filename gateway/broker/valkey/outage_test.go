package valkey

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// TestUnavailableWhilePaused: a frozen server makes publishes fail quickly with ErrUnavailable
// instead of hanging, and Ready says so; once it continues, everything works again.
func TestUnavailableWhilePaused(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL(), Timeout: DefaultTimeout}) // the default: what users get
	ctx := context.Background()
	publish(t, b, "p", 0)

	srv.Pause()
	start := time.Now()
	_, err := b.Publish(ctx, broker.PublishRequest{Channel: "p", Data: data(1), IdempotencyKey: "one"})
	took := time.Since(start)
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish to a paused server: %v, want ErrUnavailable", err)
	}
	if took > 2*DefaultTimeout {
		t.Fatalf("Publish to a paused server took %v", took)
	}
	t.Logf("publish to a paused server failed after %v: %v", took.Round(time.Millisecond), err)
	if err := b.Ready(ctx); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Ready with a paused server: %v", err)
	}
	_, errs := b.PublishBatch(ctx, []broker.PublishRequest{{Channel: "p", Data: data(2)}})
	if !errors.Is(errs[0], broker.ErrUnavailable) {
		t.Fatalf("PublishBatch to a paused server: %v", errs[0])
	}
	if _, err := b.History(ctx, "p", broker.HistoryQuery{Limit: 1}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("History from a paused server: %v", err)
	}
	srv.Resume()

	// The timed-out publish may have been applied when the server continued; retrying it with
	// the same key stores it at most once.
	var first broker.PublishResult
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		first, err = b.Publish(ctx, broker.PublishRequest{Channel: "p", Data: data(1), IdempotencyKey: "one"})
		return err
	})
	again, err := b.Publish(ctx, broker.PublishRequest{Channel: "p", Data: data(1), IdempotencyKey: "one"})
	if err != nil || !again.Duplicate || again.ID != first.ID {
		t.Fatalf("second retry: %+v, %v; want a duplicate of %v", again, err, first.ID)
	}
	// Stored: message 0, "one" exactly once, and the key-less batch message if the server ran
	// it after it continued.
	if n := srv.MustDo("XLEN", "herald:{p}:log"); n != "2" && n != "3" {
		t.Fatalf("XLEN = %s, want 2 or 3", n)
	}
}

// TestSubscribeWhileUnavailable: Subscribe cannot confirm against a frozen server and says so
// within twice the timeout; afterwards the channel works normally.
func TestSubscribeWhileUnavailable(t *testing.T) {
	srv := valkeytest.StartServer(t)
	rec := newRecorder(t)
	b := newTestBroker(t, Options{URL: srv.URL(), Handler: rec, Timeout: 500 * time.Millisecond})
	ctx := context.Background()
	srv.Pause()
	start := time.Now()
	err := b.Subscribe(ctx, "s")
	if !errors.Is(err, broker.ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("Subscribe with a paused server: %v after %v", err, time.Since(start))
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Subscribe(canceled, "s"); !errors.Is(err, context.Canceled) || errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Subscribe with a canceled context: %v", err)
	}
	srv.Resume()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error { return b.Subscribe(ctx, "s") })
	publishRetrying(t, b, "s", 0, 5*time.Second)
	rec.waitCount(t, "s", 1, 5*time.Second)
}

func TestUnavailableWhileStopped(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	publish(t, b, "p", 0)
	srv.Stop()
	start := time.Now()
	if _, err := b.Publish(ctx, broker.PublishRequest{Channel: "p", Data: data(1)}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish to a stopped server: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Publish to a stopped server took %v", took)
	}
	if err := b.Ready(ctx); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Ready with a stopped server: %v", err)
	}
	srv.Start()
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error { return b.Ready(ctx) })
}

// outageRun publishes n messages through pub with idempotency keys, retrying each until it is
// stored, while disrupt runs once the first third is published. It then checks that rec got
// exactly the stored messages, in order, once each, and that the log holds exactly n.
func outageRun(t *testing.T, srv *valkeytest.Server, n int, disrupt func()) {
	t.Helper()
	rec := newRecorder(t)
	sub := newTestBroker(t, Options{URL: srv.URL(), Handler: rec})
	pub := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "o"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(10 * time.Millisecond)
		for len(rec.got("o")) < n/3 {
			time.Sleep(5 * time.Millisecond)
		}
		disrupt()
	}()
	ids := make([]broker.ID, n)
	for i := range n {
		res := publishRetrying(t, pub, "o", i, 30*time.Second)
		if i > 0 && !ids[i-1].Less(res.ID) {
			t.Fatalf("message %d got id %v after %v", i, res.ID, ids[i-1])
		}
		ids[i] = res.ID
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	rec.waitCount(t, "o", n, 20*time.Second)
	time.Sleep(100 * time.Millisecond) // room for a duplicate to show up
	got := rec.got("o")
	if len(got) != n {
		t.Fatalf("%d deliveries for %d messages", len(got), n)
	}
	for i, m := range got {
		if m.ID != ids[i] || string(m.Data) != string(data(i)) {
			t.Fatalf("delivery %d = %v %s, want %v %s", i, m.ID, m.Data, ids[i], data(i))
		}
	}
	if xlen := srv.MustDo("XLEN", "herald:{o}:log"); xlen != strconv.Itoa(n) {
		t.Fatalf("XLEN = %s, want %d", xlen, n)
	}
	if g := rec.gapCount("o"); g != 0 {
		t.Fatalf("%d gaps reported", g)
	}
}

// TestOutagePause freezes the server for longer than the client's ping timeout: both links
// drop, publishes fail and are retried with their keys, the subscriber resubscribes and
// catches up.
func TestOutagePause(t *testing.T) {
	srv := valkeytest.StartServer(t)
	outageRun(t, srv, 300, func() {
		srv.Pause()
		time.Sleep(3 * time.Second)
		srv.Resume()
	})
}

// TestOutageRestart restarts a server that keeps an append-only file in the middle of a run.
func TestOutageRestart(t *testing.T) {
	srv := valkeytest.StartServer(t, valkeytest.AppendOnly())
	outageRun(t, srv, 300, func() {
		srv.Stop()
		time.Sleep(300 * time.Millisecond)
		srv.Start()
	})
}

// TestPartitionCatchUp cuts one node's link while another node keeps publishing: after the
// link comes back, the node reads what it missed from the log, then continues live.
func TestPartitionCatchUp(t *testing.T) {
	srv := valkeytest.StartServer(t)
	px := startProxy(t, srv.Addr())
	rec := newRecorder(t)
	sub := newTestBroker(t, Options{URL: px.URL(), Handler: rec})
	pub := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	var ids []broker.ID
	for i := range 10 {
		ids = append(ids, publish(t, pub, "p", i))
	}
	rec.waitCount(t, "p", 10, 5*time.Second)
	px.Cut()
	for i := 10; i < 60; i++ {
		ids = append(ids, publish(t, pub, "p", i))
	}
	px.Restore()
	rec.waitCount(t, "p", 60, 10*time.Second)
	for i := 60; i < 70; i++ {
		ids = append(ids, publish(t, pub, "p", i))
	}
	rec.waitCount(t, "p", 70, 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	got := rec.got("p")
	if len(got) != 70 {
		t.Fatalf("%d deliveries, want 70", len(got))
	}
	for i, m := range got {
		if m.ID != ids[i] {
			t.Fatalf("delivery %d = %v, want %v", i, m.ID, ids[i])
		}
	}
	if rec.gapCount("p") != 0 {
		t.Fatal("gap reported though the log held everything")
	}
}

// TestPartitionGap: while one node is cut off, more is published than the channel retains.
// The node tells its Handler of the gap (link_lost), then delivers what the log still has and continues live.
func TestPartitionGap(t *testing.T) {
	srv := valkeytest.StartServer(t, valkeytest.Args("--stream-node-max-entries", "10"))
	px := startProxy(t, srv.Addr())
	rec := newRecorder(t)
	retention := broker.RetentionPolicy{Default: broker.Retention{Size: 20, TTL: time.Hour}}
	sub := newTestBroker(t, Options{URL: px.URL(), Handler: rec, Retention: retention})
	pub := newTestBroker(t, Options{URL: srv.URL(), Retention: retention})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	publish(t, pub, "g", 0)
	rec.waitCount(t, "g", 1, 5*time.Second)
	px.Cut()
	var last broker.ID
	for i := 1; i <= 200; i++ {
		last = publish(t, pub, "g", i)
	}
	px.Restore()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		got := rec.got("g")
		if len(got) == 0 || got[len(got)-1].ID != last {
			return errors.New("the newest message has not arrived")
		}
		return nil
	})
	if rec.gapCount("g") != 1 {
		t.Fatalf("%d gaps reported, want 1", rec.gapCount("g"))
	}
	got := rec.got("g")
	if n := len(got); n < 21 || n > 50 {
		t.Fatalf("%d deliveries: want the first and the retained 20-30", n)
	}
	next := publish(t, pub, "g", 201)
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		got := rec.got("g")
		if got[len(got)-1].ID != next {
			return errors.New("live delivery did not resume")
		}
		return nil
	})
}

// TestLogLostDuringPartition: while a node is cut off, its channel's log is lost (here
// deleted, as by a restart without persistence) and a new one starts. The node cannot prove
// it missed nothing, so it reports a gap, then delivers the new log.
func TestLogLostDuringPartition(t *testing.T) {
	srv := valkeytest.StartServer(t)
	px := startProxy(t, srv.Addr())
	rec := newRecorder(t)
	sub := newTestBroker(t, Options{URL: px.URL(), Handler: rec})
	pub := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "lost"); err != nil {
		t.Fatal(err)
	}
	publish(t, pub, "lost", 0)
	rec.waitCount(t, "lost", 1, 5*time.Second)
	px.Cut()
	publish(t, pub, "lost", 1) // never delivered: lost with the log
	srv.MustDo("DEL", "herald:{lost}:log")
	fresh := publish(t, pub, "lost", 2)
	px.Restore()
	got := rec.waitCount(t, "lost", 2, 10*time.Second)
	if got[1].ID != fresh || rec.gapCount("lost") != 1 {
		t.Fatalf("deliveries %v, %d gaps; want the new log's message after one gap", got, rec.gapCount("lost"))
	}
}

// TestLogExpiresWhileSubscribed: a subscribed channel goes quiet until its log expires; the
// next message starts a new log. The link never broke, so nothing was missed: no gap.
func TestLogExpiresWhileSubscribed(t *testing.T) {
	srv := valkeytest.StartServer(t)
	rec := newRecorder(t)
	retention := broker.RetentionPolicy{Default: broker.Retention{Size: 100, TTL: 100 * time.Millisecond}}
	b := newTestBroker(t, Options{URL: srv.URL(), Handler: rec, Retention: retention})
	ctx := context.Background()
	if err := b.Subscribe(ctx, "quiet"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "quiet", 0)
	rec.waitCount(t, "quiet", 1, 5*time.Second)
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if srv.MustDo("EXISTS", "herald:{quiet}:log") != "0" {
			return errStillThere
		}
		return nil
	})
	publish(t, b, "quiet", 1)
	rec.waitCount(t, "quiet", 2, 5*time.Second)
	if g := rec.gapCount("quiet"); g != 0 {
		t.Fatalf("%d gaps reported for a log that expired while the link was up", g)
	}
}
