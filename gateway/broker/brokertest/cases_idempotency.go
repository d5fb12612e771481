package brokertest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// testIdempotentRetry: a retry with the same key returns the first id and stores nothing, even
// when its body differs.
func testIdempotentRetry(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "idem")
	first := e.publish(broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{"try":1}`), IdempotencyKey: "order-42-paid"})
	if first.Duplicate {
		t.Fatalf("first publish reported Duplicate")
	}
	for try := 2; try <= 3; try++ {
		again := e.publish(broker.PublishRequest{Channel: ch, Data: fmt.Appendf(nil, `{"try":%d}`, try), IdempotencyKey: "order-42-paid"})
		if !again.Duplicate || again.ID != first.ID {
			t.Errorf("retry %d: %+v; want Duplicate with id %v", try, again, first.ID)
		}
	}
	// Without a key, or with another key, messages are stored as usual.
	plain := e.publish(broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{"try":"plain"}`)})
	other := e.publish(broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{"try":"other"}`), IdempotencyKey: "order-43-paid"})
	if plain.Duplicate || other.Duplicate {
		t.Errorf("publishes without the key reported Duplicate: %+v %+v", plain, other)
	}
	want := []broker.Message{
		{Channel: ch, ID: first.ID, Data: json.RawMessage(`{"try":1}`)},
		{Channel: ch, ID: plain.ID, Data: json.RawMessage(`{"try":"plain"}`)},
		{Channel: ch, ID: other.ID, Data: json.RawMessage(`{"try":"other"}`)},
	}
	expectPage(t, "history", e.history(ch, broker.HistoryQuery{Limit: 10}),
		broker.HistoryPage{Messages: want, Complete: true, LastID: other.ID})
}

// testIdempotencyPerChannel: a key is scoped to its channel.
func testIdempotencyPerChannel(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	a, b := ChannelName(t, "a"), ChannelName(t, "b")
	ra := e.publish(broker.PublishRequest{Channel: a, Data: json.RawMessage(`1`), IdempotencyKey: "k"})
	rb := e.publish(broker.PublishRequest{Channel: b, Data: json.RawMessage(`2`), IdempotencyKey: "k"})
	if ra.Duplicate || rb.Duplicate {
		t.Fatalf("same key on two channels: %+v, %+v; want neither Duplicate", ra, rb)
	}
	expectPage(t, "history of b", e.history(b, broker.HistoryQuery{Limit: 10}), broker.HistoryPage{
		Messages: []broker.Message{{Channel: b, ID: rb.ID, Data: json.RawMessage(`2`)}}, Complete: true, LastID: rb.ID})
}

// testIdempotencyConcurrent: concurrent publishes with one key store exactly one message and
// all answer its id.
func testIdempotencyConcurrent(t *testing.T, s *suite) {
	const racers = 16
	e := s.start(t, Options{})
	ch := ChannelName(t, "race")
	results := make([]broker.PublishResult, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			res, err := e.b.Publish(e.ctx, broker.PublishRequest{Channel: ch, Data: fmt.Appendf(nil, `{"racer":%d}`, i), IdempotencyKey: "once"})
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	fresh := 0
	for i, r := range results {
		if !r.Duplicate {
			fresh++
		}
		if r.ID != results[0].ID {
			t.Errorf("racer %d got id %v, racer 0 got %v", i, r.ID, results[0].ID)
		}
	}
	if fresh != 1 {
		t.Errorf("%d publishes were not Duplicate; want exactly 1", fresh)
	}
	page := e.history(ch, broker.HistoryQuery{Limit: 100})
	if len(page.Messages) != 1 || page.Messages[0].ID != results[0].ID {
		t.Errorf("history holds %s; want the one message %v", idList(page.Messages), results[0].ID)
	}
}

// testIdempotencyWindow: a key is forgotten once the window has passed; the next publish with it
// is stored as a new message.
func testIdempotencyWindow(t *testing.T, s *suite) {
	const window = time.Second
	e := s.start(t, Options{IdempotencyWindow: window})
	ch := ChannelName(t, "window")
	req := broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{}`), IdempotencyKey: "short-lived"}
	first := e.publish(req)
	if again := e.publish(req); !again.Duplicate || again.ID != first.ID {
		t.Fatalf("immediate retry: %+v; want Duplicate with id %v", again, first.ID)
	}
	var later broker.PublishResult
	Eventually(t, window+5*time.Second, func() bool {
		later = e.publish(req)
		if later.Duplicate && later.ID != first.ID {
			t.Fatalf("retry answered id %v; want %v", later.ID, first.ID)
		}
		return !later.Duplicate
	}, "the key is still remembered")
	if !first.ID.Less(later.ID) {
		t.Errorf("new message after the window got id %v, not after %v", later.ID, first.ID)
	}
	page := e.history(ch, broker.HistoryQuery{Limit: 10})
	if len(page.Messages) != 2 || page.Messages[0].ID != first.ID || page.Messages[1].ID != later.ID {
		t.Errorf("history holds %s; want [%v %v]", idList(page.Messages), first.ID, later.ID)
	}
}
