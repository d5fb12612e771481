package valkey

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

func TestPublishStoresInOrder(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()

	var ids []broker.ID
	for i := range 5 {
		res, err := b.Publish(ctx, broker.PublishRequest{Channel: "orders:42", Event: "status", Data: data(i)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Duplicate {
			t.Fatalf("publish %d reported a duplicate", i)
		}
		if len(ids) > 0 && !ids[len(ids)-1].Less(res.ID) {
			t.Fatalf("id %v after %v", res.ID, ids[len(ids)-1])
		}
		ids = append(ids, res.ID)
	}
	if n := srv.MustDo("XLEN", "herald:{orders:42}:log"); n != "5" {
		t.Fatalf("XLEN = %s, want 5", n)
	}
	page, err := b.History(ctx, "orders:42", broker.HistoryQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 5 || !page.Complete || page.More || page.LastID != ids[4] {
		t.Fatalf("page = %+v", page)
	}
	for i, m := range page.Messages {
		if m.ID != ids[i] || m.Channel != "orders:42" || m.Event != "status" || string(m.Data) != string(data(i)) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
}

func TestPublishIdempotency(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL(), IdempotencyWindow: 300 * time.Millisecond})
	ctx := context.Background()
	req := broker.PublishRequest{Channel: "a", Data: json.RawMessage(`1`), IdempotencyKey: "key-1"}

	first, err := b.Publish(ctx, req)
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %+v, %v", first, err)
	}
	again, err := b.Publish(ctx, req)
	if err != nil || !again.Duplicate || again.ID != first.ID {
		t.Fatalf("repeated publish: %+v, %v; want duplicate of %v", again, err, first.ID)
	}
	other, err := b.Publish(ctx, broker.PublishRequest{Channel: "b", Data: json.RawMessage(`1`), IdempotencyKey: "key-1"})
	if err != nil || other.Duplicate {
		t.Fatalf("same key on another channel: %+v, %v", other, err)
	}
	if n := srv.MustDo("XLEN", "herald:{a}:log"); n != "1" {
		t.Fatalf("XLEN = %s, want 1", n)
	}
	// After the window the key is forgotten.
	checkFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		if srv.MustDo("EXISTS", "herald:{a}:idem:key-1") != "0" {
			return errors.New("idempotency key still stored")
		}
		return nil
	})
	late, err := b.Publish(ctx, req)
	if err != nil || late.Duplicate {
		t.Fatalf("publish after the window: %+v, %v", late, err)
	}
}

func TestPublishBatch(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()

	reqs := []broker.PublishRequest{
		{Channel: "x", Data: data(0), IdempotencyKey: "k"},
		{Channel: "y", Data: data(1)},
		{Channel: "x", Data: data(2)},
		{Channel: "bad channel", Data: data(3)},
		{Channel: "x", Data: data(4), IdempotencyKey: "k"}, // duplicate of the first
		{Channel: "y", Data: data(5), Event: "e"},
	}
	results, errs := b.PublishBatch(ctx, reqs)
	if len(results) != len(reqs) || len(errs) != len(reqs) {
		t.Fatalf("got %d results and %d errors for %d requests", len(results), len(errs), len(reqs))
	}
	for i, err := range errs {
		if (err != nil) != (i == 3) {
			t.Fatalf("request %d: error %v", i, err)
		}
	}
	if !results[4].Duplicate || results[4].ID != results[0].ID {
		t.Fatalf("repeated key in a batch: %+v, first %+v", results[4], results[0])
	}
	if !results[0].ID.Less(results[2].ID) || !results[1].ID.Less(results[5].ID) {
		t.Fatalf("batch not stored in request order: %+v", results)
	}
	page, err := b.History(ctx, "x", broker.HistoryQuery{Limit: 10})
	if err != nil || len(page.Messages) != 2 || string(page.Messages[1].Data) != string(data(2)) {
		t.Fatalf("history of x: %+v, %v", page, err)
	}
	if _, errs := b.PublishBatch(ctx, nil); len(errs) != 0 {
		t.Fatalf("empty batch: %v", errs)
	}
}

func TestPublishRejectsBadInput(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	for _, req := range []broker.PublishRequest{
		{Channel: "", Data: data(0)},
		{Channel: "a{b}", Data: data(0)},
		{Channel: "a", Event: "bad\nevent", Data: data(0)},
		{Channel: "a"},
	} {
		if _, err := b.Publish(ctx, req); err == nil || errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("Publish(%+v) = %v, want a validation error", req, err)
		}
	}
}

// TestScriptReloadedAfterRestart: a server restarted without its script cache gets the script
// again through the EVAL fallback, for Publish and for PublishBatch.
func TestScriptReloadedAfterRestart(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	publish(t, b, "a", 0)
	srv.MustDo("SCRIPT", "FLUSH")
	publish(t, b, "a", 1)
	srv.MustDo("SCRIPT", "FLUSH")
	_, errs := b.PublishBatch(ctx, []broker.PublishRequest{{Channel: "a", Data: data(2)}, {Channel: "b", Data: data(3)}})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	srv.MustDo("SCRIPT", "FLUSH")
	if _, err := b.History(ctx, "a", broker.HistoryQuery{Limit: 1}); err != nil {
		t.Fatal(err)
	}
}

// TestRoundTripsPerPublish measures (and logs) how many times the client writes to the
// connection per Publish: each write is one request flight, so this is the round trips.
func TestRoundTripsPerPublish(t *testing.T) {
	srv := valkeytest.StartServer(t)
	var counter writeCounter
	b := newTestBroker(t, Options{URL: srv.URL(), dial: counter.dial})
	publish(t, b, "warm", 0) // connection set-up is not part of a publish
	const n = 200
	before := counter.writes.Load()
	for i := range n {
		publish(t, b, "rt", i)
	}
	perPublish := float64(counter.writes.Load()-before) / n
	t.Logf("round trips per publish: %.2f (%d sequential publishes)", perPublish, n)

	before = counter.writes.Load()
	reqs := make([]broker.PublishRequest, 50)
	for i := range reqs {
		reqs[i] = broker.PublishRequest{Channel: "batch:" + strconv.Itoa(i%10), Data: data(i)}
	}
	b.PublishBatch(context.Background(), reqs)
	t.Logf("round trips per PublishBatch of 50 messages to 10 channels: %d", counter.writes.Load()-before)
}
