package brokertest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// testHistorySince: Since is exclusive, and a reader at the newest id is caught up.
func testHistorySince(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "since")
	msgs := e.publishN(ch, 5)
	last := lastID(msgs)
	expectPage(t, "Since zero", e.history(ch, broker.HistoryQuery{Limit: 100}),
		broker.HistoryPage{Messages: msgs, Complete: true, LastID: last})
	expectPage(t, "Since the 2nd", e.history(ch, broker.HistoryQuery{Since: msgs[1].ID, Limit: 100}),
		broker.HistoryPage{Messages: msgs[2:], Complete: true, LastID: last})
	expectPage(t, "Since the newest", e.history(ch, broker.HistoryQuery{Since: last, Limit: 100}),
		broker.HistoryPage{Complete: true, LastID: last})
}

// testHistoryPaging: Limit pages through the log oldest first, More telling whether to go on.
func testHistoryPaging(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "paging")
	msgs := e.publishN(ch, 10)
	last := lastID(msgs)
	for _, limit := range []int{3, 5, 10, 11} {
		var since broker.ID
		for start := 0; start < len(msgs); start += limit {
			end := min(start+limit, len(msgs))
			page := e.history(ch, broker.HistoryQuery{Since: since, Limit: limit})
			expectPage(t, "page", page, broker.HistoryPage{
				Messages: msgs[start:end], Complete: true, More: end < len(msgs), LastID: last})
			if t.Failed() {
				t.Fatalf("(Limit %d, page from message %d)", limit, start)
			}
			since = lastID(page.Messages)
		}
	}
}

// testHistoryNewest: Newest returns the newest Limit messages after Since and says whether
// older ones were skipped.
func testHistoryNewest(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "newest")
	msgs := e.publishN(ch, 10)
	last := lastID(msgs)
	for _, tc := range []struct {
		what  string
		since broker.ID
		limit int
		want  []broker.Message
		gap   broker.GapReason
	}{
		{"Since zero, 3 of 10", broker.ID{}, 3, msgs[7:], broker.GapReplayCap},
		{"Since zero, all 10", broker.ID{}, 20, msgs, broker.GapNone},
		{"Since the 5th, 3 of 4", msgs[5].ID, 3, msgs[7:], broker.GapReplayCap},
		{"Since the 6th, exactly 3", msgs[6].ID, 3, msgs[7:], broker.GapNone},
		{"Since the newest", last, 3, nil, broker.GapNone},
	} {
		expectPage(t, tc.what, e.history(ch, broker.HistoryQuery{Since: tc.since, Limit: tc.limit, Newest: true}),
			broker.HistoryPage{Messages: tc.want, Complete: tc.gap == broker.GapNone, Gap: tc.gap, LastID: last})
	}
}

// testHistoryLimitZero: Limit 0 tells where the log stands without reading it.
func testHistoryLimitZero(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "peek")
	msgs := e.publishN(ch, 3)
	for _, since := range []broker.ID{{}, msgs[0].ID, msgs[2].ID} {
		page := e.history(ch, broker.HistoryQuery{Since: since})
		if len(page.Messages) != 0 || !page.Complete || page.LastID != msgs[2].ID {
			t.Errorf("Since %v, Limit 0: %d messages, Complete=%v, LastID=%v; want none, true, %v",
				since, len(page.Messages), page.Complete, page.LastID, msgs[2].ID)
		}
	}
}

// testHistoryUnusedChannel: a channel that never had a message is empty and complete from the
// beginning, but cannot vouch for a position a client claims to hold in it: one from before
// the broker's epoch came from a broker that lost its data.
func testHistoryUnusedChannel(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "unused")
	expectEmpty(t, "Since zero", e.history(ch, broker.HistoryQuery{Limit: 10}), broker.GapNone)
	since := broker.ID{Ms: 1732700000000} // November 2024: long before any test broker's epoch
	expectEmpty(t, "Since an old position", e.history(ch, broker.HistoryQuery{Since: since, Limit: 10}), broker.GapBrokerReset)
	// Declaring interest creates no history.
	if err := e.b.Subscribe(e.ctx, ch); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	expectEmpty(t, "Since zero, subscribed", e.history(ch, broker.HistoryQuery{Limit: 10}), broker.GapNone)
	expectEmpty(t, "Since an old position, subscribed", e.history(ch, broker.HistoryQuery{Since: since, Limit: 10}), broker.GapBrokerReset)
}

// testHistoryEpoch: the LastID of an empty channel (the epoch) is a position a client can
// resume from exactly: nothing is missed when messages come later, and trimming shows.
func testHistoryEpoch(t *testing.T, s *suite) {
	e := s.start(t, Options{Retention: broker.RetentionPolicy{Default: broker.Retention{Size: 3, TTL: time.Hour}}})
	ch := ChannelName(t, "epoch")
	empty := e.history(ch, broker.HistoryQuery{Limit: 10})
	epoch := empty.LastID
	expectEmpty(t, "an unused channel", empty, broker.GapNone)
	expectEmpty(t, "Since the epoch, still empty", e.history(ch, broker.HistoryQuery{Since: epoch, Limit: 10}), broker.GapNone)
	if other := e.history(ChannelName(t, "epoch-other"), broker.HistoryQuery{}); other.LastID != epoch {
		t.Errorf("two unused channels report epochs %v and %v", epoch, other.LastID)
	}
	msgs := e.publishN(ch, 2)
	if !epoch.Less(msgs[0].ID) {
		t.Errorf("the first id %v is not above the epoch %v", msgs[0].ID, epoch)
	}
	expectPage(t, "Since the epoch, two published", e.history(ch, broker.HistoryQuery{Since: epoch, Limit: 10}),
		broker.HistoryPage{Messages: msgs, Complete: true, LastID: msgs[1].ID})
	if e.cfg.ApproximateTrim {
		return // how much is trimmed is up to the broker
	}
	more := e.publishN(ch, 3) // five published, three kept: the first two were trimmed
	page := e.history(ch, broker.HistoryQuery{Since: epoch, Limit: 10})
	if page.Complete || page.Gap != broker.GapTrimmed {
		t.Errorf("Since the epoch after trimming: Complete=%v Gap=%q; want a gap, trimmed", page.Complete, page.Gap)
	}
	if page.LastID != more[2].ID {
		t.Errorf("LastID %v, want %v", page.LastID, more[2].ID)
	}
}

// testHistorySinceBeforeLog: a position older than the log's first message (say, from a broker
// that restarted without its data, or a log that expired) cannot be proven continuous, even
// though nothing was trimmed from this log. One from before the broker's epoch is from a broker
// that lost its data.
func testHistorySinceBeforeLog(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "restarted")
	msgs := e.publishN(ch, 3)
	since := broker.ID{Ms: 1732700000000, Seq: 4} // long before any test broker's epoch
	expectPage(t, "Since before the first message", e.history(ch, broker.HistoryQuery{Since: since, Limit: 10}),
		broker.HistoryPage{Messages: msgs, Complete: false, Gap: broker.GapBrokerReset, LastID: lastID(msgs)})
	expectPage(t, "Since the first message", e.history(ch, broker.HistoryQuery{Since: msgs[0].ID, Limit: 10}),
		broker.HistoryPage{Messages: msgs[1:], Complete: true, LastID: lastID(msgs)})
}

// testHistorySinceAfterLast: a position beyond the newest id did not come from this log.
func testHistorySinceAfterLast(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "future")
	msgs := e.publishN(ch, 3)
	last := lastID(msgs)
	// Up to the largest id, which has no successor (Valkey refuses it as an exclusive bound),
	// and ids that share a part with it.
	max64 := broker.MaxID.Ms
	for _, since := range []broker.ID{last.Next(), {Ms: last.Ms + 60_000}, broker.MaxID, {Ms: max64}, {Ms: max64, Seq: max64 - 1}} {
		for _, newest := range []bool{false, true} {
			expectPage(t, "Since "+since.String(), e.history(ch, broker.HistoryQuery{Since: since, Limit: 10, Newest: newest}),
				broker.HistoryPage{Complete: false, Gap: broker.GapBrokerReset, LastID: last})
		}
	}
	// A sequence part at its largest: the next id is the next millisecond's first. The position
	// is below the log's first message, so the page is a gap (expired or broker_reset, depending
	// on where the broker's epoch lies).
	page := e.history(ch, broker.HistoryQuery{Since: broker.ID{Ms: msgs[0].ID.Ms - 1, Seq: max64}, Limit: 10})
	expectMessages(t, "Since the millisecond before with the largest sequence", page.Messages, msgs)
	if page.Complete || page.Gap == broker.GapNone || page.LastID != last {
		t.Errorf("Since the millisecond before with the largest sequence: Complete=%v Gap=%q LastID=%v; want a gap and LastID %v",
			page.Complete, page.Gap, page.LastID, last)
	}
	// On a channel without a log too.
	empty := ChannelName(t, "future-empty")
	page = e.history(empty, broker.HistoryQuery{Since: broker.MaxID, Limit: 10, Newest: true})
	if len(page.Messages) != 0 || page.Complete || page.Gap == broker.GapNone {
		t.Errorf("Since the largest id on an unused channel: %+v; want an empty, incomplete page", page)
	}
}

// testHistoryMaxBytes: MaxBytes cuts a forward page by size (at least one message), says More,
// and paging on from the cut returns every message once, in order.
func testHistoryMaxBytes(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "bytes")
	msgs := make([]broker.Message, 40)
	for k := range msgs {
		data := fmt.Appendf(nil, `{"k":%d,"pad":"%s"}`, k, strings.Repeat("x", 80+k%5))
		event := ""
		if k%3 == 0 {
			event = "tick"
		}
		res := e.publish(broker.PublishRequest{Channel: ch, Event: event, Data: data})
		msgs[k] = broker.Message{Channel: ch, ID: res.ID, Event: event, Data: data}
	}
	last := lastID(msgs)
	for _, maxBytes := range []int{1, 100, 350, 1000, 1 << 20} {
		var (
			since broker.ID
			got   []broker.Message
		)
		for range len(msgs) + 1 {
			page := e.history(ch, broker.HistoryQuery{Since: since, Limit: 100, MaxBytes: maxBytes})
			size := 0
			for _, m := range page.Messages {
				size += broker.MessageBytes(m)
			}
			if len(page.Messages) == 0 || (len(page.Messages) > 1 && size > maxBytes) {
				t.Fatalf("MaxBytes %d from %v: %d messages of %d bytes; want at least one, within the bound", maxBytes, since, len(page.Messages), size)
			}
			got = append(got, page.Messages...)
			if !page.Complete || page.LastID != last || page.More != (len(got) < len(msgs)) {
				t.Fatalf("MaxBytes %d after %d messages: Complete=%v More=%v LastID=%v", maxBytes, len(got), page.Complete, page.More, page.LastID)
			}
			if !page.More {
				break
			}
			since = lastID(page.Messages)
		}
		expectMessages(t, fmt.Sprintf("MaxBytes %d, all pages", maxBytes), got, msgs)
	}
	// Limit still bounds the page when the bytes would allow more, across any chunking.
	expectPage(t, "Limit 39 under a large MaxBytes", e.history(ch, broker.HistoryQuery{Limit: 39, MaxBytes: 1 << 20}),
		broker.HistoryPage{Messages: msgs[:39], Complete: true, More: true, LastID: last})
	expectPage(t, "Limit 40 under a large MaxBytes", e.history(ch, broker.HistoryQuery{Limit: 40, MaxBytes: 1 << 20}),
		broker.HistoryPage{Messages: msgs, Complete: true, LastID: last})
}

// testHistoryStartOnly: StartOnly says where the newest Limit messages begin without reading
// them, with the gap Newest would report.
func testHistoryStartOnly(t *testing.T, s *suite) {
	e := s.start(t, Options{})
	ch := ChannelName(t, "start")
	msgs := e.publishN(ch, 10)
	last := lastID(msgs)
	for _, tc := range []struct {
		what  string
		since broker.ID
		limit int
		start broker.ID
		gap   broker.GapReason
	}{
		{"Since zero, 3 of 10", broker.ID{}, 3, msgs[6].ID, broker.GapReplayCap},
		{"Since zero, all 10", broker.ID{}, 10, broker.ID{}, broker.GapNone},
		{"Since the 5th, 3 of 4", msgs[5].ID, 3, msgs[6].ID, broker.GapReplayCap},
		{"Since the 6th, exactly 3", msgs[6].ID, 3, msgs[6].ID, broker.GapNone},
		{"Since the newest", last, 3, last, broker.GapNone},
	} {
		page := e.history(ch, broker.HistoryQuery{Since: tc.since, Limit: tc.limit, Newest: true, StartOnly: true})
		if page.Start != tc.start || page.Gap != tc.gap || page.Complete != (tc.gap == broker.GapNone) ||
			len(page.Messages) != 0 || page.LastID != last {
			t.Errorf("%s: Start=%v Gap=%q Complete=%v %d messages LastID=%v; want Start=%v Gap=%q, no messages, LastID=%v",
				tc.what, page.Start, page.Gap, page.Complete, len(page.Messages), page.LastID, tc.start, tc.gap, last)
		}
	}
}
