package brokertest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// clockSlack is how far an id's milliseconds may be from this process's clock: the store's
// clock (a Valkey server) may differ a little.
const clockSlack = 5 * time.Second

// testPublishIDs: ids are strictly increasing per channel and read as the wall-clock
// millisecond they were stored at.
func testPublishIDs(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "ids")
	before := time.Now()
	msgs := e.publishN(ch, 20) // checks that each id is after the previous one
	after := time.Now()
	for _, m := range msgs {
		ms := time.UnixMilli(int64(m.ID.Ms))
		if ms.Before(before.Add(-clockSlack)) || ms.After(after.Add(clockSlack)) {
			t.Errorf("id %v is %v; want close to the publish time %v", m.ID, ms, before)
		}
		if back, err := broker.ParseID(m.ID.String()); err != nil || back != m.ID {
			t.Errorf("id %v does not survive a round trip through its text: %v, %v", m.ID, back, err)
		}
	}
	if msgs[0].ID.IsZero() {
		t.Errorf("the first id is the zero id")
	}
	// Another channel has its own log: its ids are not constrained by ch's, only increasing too.
	e.publishN(ChannelName(t, "other"), 3)
}

// testConcurrentPublishers: publishers racing on one channel get distinct, increasing ids, and
// the log holds every message in id order.
func testConcurrentPublishers(t *testing.T, s *suite) {
	const writers, each = 8, 200
	e := s.start(t, Options{Retention: broker.RetentionPolicy{
		Default: broker.Retention{Size: 4 * writers * each, TTL: defaultRetention.TTL},
	}})
	ch := ChannelName(t, "race")
	ids := make([][]broker.ID, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				res, err := e.b.Publish(e.ctx, broker.PublishRequest{Channel: ch, Data: fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)})
				if err != nil {
					t.Errorf("writer %d publish %d: %v", w, i, err)
					return
				}
				if n := len(ids[w]); n > 0 && !ids[w][n-1].Less(res.ID) {
					t.Errorf("writer %d: id %v after %v", w, res.ID, ids[w][n-1])
				}
				ids[w] = append(ids[w], res.ID)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	data := make(map[broker.ID]string, writers*each)
	var newest broker.ID
	for w := range ids {
		for i, id := range ids[w] {
			if _, dup := data[id]; dup {
				t.Fatalf("id %v was returned twice", id)
			}
			data[id] = fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
			if newest.Less(id) {
				newest = id
			}
		}
	}
	page := e.history(ch, broker.HistoryQuery{Limit: 2 * writers * each})
	if len(page.Messages) != writers*each || !page.Complete || page.More || page.LastID != newest {
		t.Fatalf("history: %d messages, Complete=%v More=%v LastID=%v; want %d, true, false, %v",
			len(page.Messages), page.Complete, page.More, page.LastID, writers*each, newest)
	}
	for i, m := range page.Messages {
		if i > 0 && !page.Messages[i-1].ID.Less(m.ID) {
			t.Fatalf("history: %v follows %v", m.ID, page.Messages[i-1].ID)
		}
		if want, ok := data[m.ID]; !ok || string(m.Data) != want {
			t.Fatalf("history: message %v holds %s; want %q (published: %v)", m.ID, m.Data, want, ok)
		}
	}
}
