package brokertest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// testTrimContinuity: once the log is trimmed by size, a reader is told whether what it missed
// is still there.
func testTrimContinuity(t *testing.T, s *suite) {
	const size = 10
	e := s.start(t, Options{Retention: broker.RetentionPolicy{Default: broker.Retention{Size: size, TTL: defaultRetention.TTL}}})
	ch := ChannelName(t, "trimmed")
	n := 5 * size
	if e.cfg.ApproximateTrim {
		n = size + 3*e.cfg.TrimSlack // enough for whole-node trimming to drop something
	}
	msgs := e.publishN(ch, n)
	last := lastID(msgs)

	all := e.history(ch, broker.HistoryQuery{Limit: 2 * n})
	kept := len(all.Messages)
	if kept < size || kept > size+e.cfg.TrimSlack {
		t.Fatalf("the log keeps %d messages; want %d to %d", kept, size, size+e.cfg.TrimSlack)
	}
	retained := msgs[n-kept:] // the newest ones, as published
	expectPage(t, "Since zero after trimming", all, broker.HistoryPage{Messages: retained, Complete: false, Gap: broker.GapTrimmed, LastID: last})

	expectPage(t, "Since the first (trimmed) message", e.history(ch, broker.HistoryQuery{Since: msgs[0].ID, Limit: 2 * n}),
		broker.HistoryPage{Messages: retained, Complete: false, Gap: broker.GapTrimmed, LastID: last})
	expectPage(t, "Since a trimmed message before the last trimmed", e.history(ch, broker.HistoryQuery{Since: msgs[n-kept-2].ID, Limit: 2 * n}),
		broker.HistoryPage{Messages: retained, Complete: false, Gap: broker.GapTrimmed, LastID: last})
	// A reader that saw exactly the newest trimmed message missed nothing.
	expectPage(t, "Since the newest trimmed message", e.history(ch, broker.HistoryQuery{Since: msgs[n-kept-1].ID, Limit: 2 * n}),
		broker.HistoryPage{Messages: retained, Complete: true, LastID: last})
	for _, i := range []int{0, kept / 2, kept - 1} {
		expectPage(t, "Since a retained message", e.history(ch, broker.HistoryQuery{Since: retained[i].ID, Limit: 2 * n}),
			broker.HistoryPage{Messages: retained[i+1:], Complete: true, LastID: last})
	}
	expectPage(t, "Since after the newest", e.history(ch, broker.HistoryQuery{Since: last.Next(), Limit: 2 * n}),
		broker.HistoryPage{Complete: false, Gap: broker.GapBrokerReset, LastID: last})
}

// ttlWait bounds how long a log may outlive its TTL.
const ttlWait = 5 * time.Second

// testTTLExpiry: a log silent for its TTL is gone; a reader of it is told so, also once a new
// log has started, whose ids still come after the old ones.
func testTTLExpiry(t *testing.T, s *suite) {
	const ttl = time.Second
	e := s.start(t, Options{Retention: broker.RetentionPolicy{Default: broker.Retention{Size: 100, TTL: ttl}}})
	ch := ChannelName(t, "ttl")
	old := e.publishN(ch, 3)
	seen := old[2].ID

	var page broker.HistoryPage
	Eventually(t, ttl+ttlWait, func() bool {
		page = e.history(ch, broker.HistoryQuery{Since: seen, Limit: 10})
		return !page.Complete
	}, "the log outlived its TTL of %v: History(Since=%v) is still Complete", ttl, seen)
	expectEmpty(t, "Since the newest id of the expired log", page, broker.GapExpired)
	expectEmpty(t, "Since zero, expired", e.history(ch, broker.HistoryQuery{Limit: 10}), broker.GapNone)

	res := e.publish(broker.PublishRequest{Channel: ch, Data: json.RawMessage(`{"fresh":true}`)})
	if !seen.Less(res.ID) {
		t.Errorf("the new log's first id %v is not after the old log's %v", res.ID, seen)
	}
	fresh := []broker.Message{{Channel: ch, ID: res.ID, Data: json.RawMessage(`{"fresh":true}`)}}
	expectPage(t, "Since the old log's newest id, new log", e.history(ch, broker.HistoryQuery{Since: seen, Limit: 10}),
		broker.HistoryPage{Messages: fresh, Complete: false, Gap: broker.GapExpired, LastID: res.ID})
	expectPage(t, "Since zero, new log", e.history(ch, broker.HistoryQuery{Limit: 10}),
		broker.HistoryPage{Messages: fresh, Complete: true, LastID: res.ID})
}
