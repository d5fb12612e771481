package brokertest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/gateway/broker"
)

// testPublishBatch: each request gets its own result or error, and one channel's messages keep
// the request order.
func testPublishBatch(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	a, b := ChannelName(t, "a"), ChannelName(t, "b")
	reqs := []broker.PublishRequest{
		{Channel: a, Data: json.RawMessage(`{"n":1}`)},
		{Channel: "not a channel", Data: json.RawMessage(`{"n":1}`)},
		{Channel: b, Event: "created", Data: json.RawMessage(`{"n":1}`)},
		{Channel: a, Data: json.RawMessage(`{"n":2}`), IdempotencyKey: "k"},
		{Channel: a, Data: json.RawMessage(`{"n":`)},
		{Channel: a, Data: json.RawMessage(`{"n":3}`)},
		{Channel: a, Data: json.RawMessage(`{"n":99}`), IdempotencyKey: "k"}, // a retry of index 3
		{Channel: a, Event: "not an event", Data: json.RawMessage(`{"n":98}`)},
	}
	bad := map[int]bool{1: true, 4: true, 7: true}
	results, errs := e.b.PublishBatch(e.ctx, reqs)
	if len(results) != len(reqs) || len(errs) != len(reqs) {
		t.Fatalf("PublishBatch of %d: %d results, %d errors", len(reqs), len(results), len(errs))
	}
	for i, err := range errs {
		if bad[i] != (err != nil) {
			t.Errorf("request %d: error %v; want an error: %v", i, err, bad[i])
		}
	}
	if t.Failed() {
		return
	}
	if !results[6].Duplicate || results[6].ID != results[3].ID {
		t.Errorf("request 6 (a retry of 3): %+v; want Duplicate with id %v", results[6], results[3].ID)
	}
	wantA := []broker.Message{
		{Channel: a, ID: results[0].ID, Data: json.RawMessage(`{"n":1}`)},
		{Channel: a, ID: results[3].ID, Data: json.RawMessage(`{"n":2}`)},
		{Channel: a, ID: results[5].ID, Data: json.RawMessage(`{"n":3}`)},
	}
	expectPage(t, "history of a", e.history(a, broker.HistoryQuery{Limit: 10}),
		broker.HistoryPage{Messages: wantA, Complete: true, LastID: results[5].ID})
	wantB := []broker.Message{{Channel: b, ID: results[2].ID, Event: "created", Data: json.RawMessage(`{"n":1}`)}}
	expectPage(t, "history of b", e.history(b, broker.HistoryQuery{Limit: 10}),
		broker.HistoryPage{Messages: wantB, Complete: true, LastID: results[2].ID})

	results, errs = e.b.PublishBatch(e.ctx, nil)
	if len(results) != 0 || len(errs) != 0 {
		t.Errorf("empty batch: %d results, %d errors; want none", len(results), len(errs))
	}
}

// testBadInput: a publish with a bad channel name, event name or body (not JSON, or not UTF-8
// inside a JSON string) fails and stores nothing.
func testBadInput(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	for _, name := range []string{"", "a b", "{tag}", "star*", "new\nline", "é", strings.Repeat("x", broker.MaxChannelLen+1)} {
		if _, err := e.b.Publish(e.ctx, broker.PublishRequest{Channel: name, Data: json.RawMessage(`{}`)}); err == nil {
			t.Errorf("Publish to channel %.40q succeeded", name)
		}
	}
	ch := ChannelName(t, "strict")
	for _, data := range []string{"", "{", "nil", `{"a":1} {"b":2}`, "'x'", "NaN", `{"a":}`, "\xff", "\"\xff\xfe\"", "{\"a\":\"\xc3\"}", "[\"\xed\xa0\x80\"]"} {
		if _, err := e.b.Publish(e.ctx, broker.PublishRequest{Channel: ch, Data: json.RawMessage(data)}); err == nil {
			t.Errorf("Publish with data %q succeeded", data)
		}
	}
	if _, err := e.b.Publish(e.ctx, broker.PublishRequest{Channel: ch}); err == nil {
		t.Errorf("Publish with nil data succeeded")
	}
	for _, event := range []string{"two words", "a/b", strings.Repeat("e", broker.MaxEventLen+1)} {
		if _, err := e.b.Publish(e.ctx, broker.PublishRequest{Channel: ch, Event: event, Data: json.RawMessage(`{}`)}); err == nil {
			t.Errorf("Publish with event %q succeeded", event)
		}
	}
	expectEmpty(t, "history after bad publishes", e.history(ch, broker.HistoryQuery{Limit: 10}), broker.GapNone)
	// The channel still works.
	res := e.publish(broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{}`)})
	expectPage(t, "history after a good publish", e.history(ch, broker.HistoryQuery{Limit: 10}), broker.HistoryPage{
		Messages: []broker.Message{{Channel: ch, ID: res.ID, Data: json.RawMessage(`{}`)}}, Complete: true, LastID: res.ID})
}

// testClosed: after Close, every call fails with broker.ErrClosed.
func testClosed(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "closed")
	e.publishN(ch, 1)
	if err := e.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	req := broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{}`)}
	_, err := e.b.Publish(e.ctx, req)
	expectClosed(t, "Publish", err)
	_, errs := e.b.PublishBatch(e.ctx, []broker.PublishRequest{req, req})
	if len(errs) != 2 {
		t.Fatalf("PublishBatch of 2 after Close: %d errors", len(errs))
	}
	for _, err := range errs {
		expectClosed(t, "PublishBatch", err)
	}
	_, err = e.b.History(e.ctx, ch, broker.HistoryQuery{Limit: 10})
	expectClosed(t, "History", err)
	expectClosed(t, "Subscribe", e.b.Subscribe(e.ctx, ch))
	expectClosed(t, "Unsubscribe", e.b.Unsubscribe(e.ctx, ch))
	expectClosed(t, "Ready", e.b.Ready(e.ctx))
}

func expectClosed(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, broker.ErrClosed) {
		t.Errorf("%s after Close: %v; want broker.ErrClosed", what, err)
	}
}

// testReady: a healthy broker is ready.
func testReady(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	if err := e.b.Ready(e.ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
}
