package brokertest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// deliveryTimeout bounds how long a delivery may take to reach the Handler: generous, since a
// Valkey broker relays through pub/sub.
const deliveryTimeout = 10 * time.Second

// oddBodies are JSON values a broker must store and deliver byte for byte, spacing included.
var oddBodies = []string{
	`{"text":"hi"}`,
	` { "a" : [1, 2.50, -0, 1e3, "x\u00e9\n", "é✓"],  "b" : null } `,
	`"just a string"`,
	`12345678901234567890123`,
	`null`,
	`[]`,
	`true`,
	`{"nested":{"deep":{"deeper":[{"k":"v"}]}},"unicode":"\ud83d\ude00"}`,
}

// testDelivery: after Subscribe, the Handler gets every message of the channel once, in id
// order, with channel, event and data intact.
func testDelivery(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "live")
	if err := e.b.Subscribe(e.ctx, ch); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	var want []broker.Message
	for i, body := range oddBodies {
		event := ""
		if i%2 == 1 {
			event = "status.changed"
		}
		res := e.publish(broker.PublishRequest{Channel: ch, Event: event, Data: json.RawMessage(body)})
		want = append(want, broker.Message{Channel: ch, ID: res.ID, Event: event, Data: json.RawMessage(body)})
	}
	got := e.rec.Wait(t, ch, len(want), deliveryTimeout)
	expectMessages(t, "delivered", got, want)
	// The log holds the same bytes.
	expectPage(t, "history", e.history(ch, broker.HistoryQuery{Limit: 100}),
		broker.HistoryPage{Messages: want, Complete: true, LastID: lastID(want)})
	e.rec.Check(t)
}

// testDeliveryConcurrent: publishers racing on several channels; each channel's deliveries are
// exactly its published messages, in id order, one delivery at a time.
func testDeliveryConcurrent(t *testing.T, s *suite) {
	const channels, writers, each = 4, 4, 50
	e := s.start(t, Options{})
	names := make([]string, channels)
	for c := range names {
		names[c] = ChannelName(t, fmt.Sprint("c", c))
		if err := e.b.Subscribe(e.ctx, names[c]); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	var mu sync.Mutex
	published := make(map[string][]broker.ID)
	var wg sync.WaitGroup
	for c := range channels {
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					res, err := e.b.Publish(e.ctx, broker.PublishRequest{
						Channel: names[c], Data: fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)})
					if err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					mu.Lock()
					published[names[c]] = append(published[names[c]], res.ID)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, ch := range names {
		want := published[ch]
		slices.SortFunc(want, broker.ID.Compare)
		got := e.rec.Wait(t, ch, len(want), deliveryTimeout)
		gotIDs := make([]broker.ID, len(got))
		for i, m := range got {
			gotIDs[i] = m.ID
		}
		if !slices.Equal(gotIDs, want) {
			t.Errorf("%s: delivered %d messages %s, want the %d published in id order", ch, len(got), idList(got), len(want))
		}
	}
	e.rec.Check(t)
}

// testSubscribeCounted: interest lasts until every Subscribe was matched by an Unsubscribe, and
// can be declared again afterwards.
func testSubscribeCounted(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "counted")
	for range 2 {
		if err := e.b.Subscribe(e.ctx, ch); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	if err := e.b.Unsubscribe(e.ctx, ch); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	first := e.publish(broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{"n":1}`)})
	e.rec.WaitID(t, ch, first.ID, deliveryTimeout)

	// The last Unsubscribe ends the interest: what is published now may or may not arrive.
	if err := e.b.Unsubscribe(e.ctx, ch); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	e.publish(broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{"n":2}`)})

	if err := e.b.Subscribe(e.ctx, ch); err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	third := e.publish(broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{"n":3}`)})
	got := e.rec.WaitID(t, ch, third.ID, deliveryTimeout)
	if got[0].ID != first.ID || got[len(got)-1].ID != third.ID {
		t.Errorf("delivered %s; want %v first and %v last", idList(got), first.ID, third.ID)
	}
	e.rec.Check(t)
}
