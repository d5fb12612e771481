package valkey

import (
	"context"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

func TestHistoryPaging(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	var ids []broker.ID
	for i := range 10 {
		ids = append(ids, publish(t, b, "c", i))
	}

	tests := []struct {
		name           string
		q              broker.HistoryQuery
		first, n       int // expected messages: ids[first : first+n]
		complete, more bool
	}{
		{"all", broker.HistoryQuery{Limit: 100}, 0, 10, true, false},
		{"first page", broker.HistoryQuery{Limit: 4}, 0, 4, true, true},
		{"exact fit", broker.HistoryQuery{Limit: 10}, 0, 10, true, false},
		{"after an id", broker.HistoryQuery{Since: ids[3], Limit: 4}, 4, 4, true, true},
		{"last page", broker.HistoryQuery{Since: ids[7], Limit: 4}, 8, 2, true, false},
		{"at the end", broker.HistoryQuery{Since: ids[9], Limit: 4}, 10, 0, true, false},
		{"no limit", broker.HistoryQuery{Since: ids[3]}, 4, 0, true, false},
		{"newest skips", broker.HistoryQuery{Since: ids[1], Limit: 3, Newest: true}, 7, 3, false, false},
		{"newest fits", broker.HistoryQuery{Since: ids[6], Limit: 3, Newest: true}, 7, 3, true, false},
		{"newest from zero", broker.HistoryQuery{Limit: 20, Newest: true}, 0, 10, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := b.History(ctx, "c", tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Messages) != tt.n || page.Complete != tt.complete || page.More != tt.more || page.LastID != ids[9] {
				t.Fatalf("got %d messages, complete %v, more %v, last %v", len(page.Messages), page.Complete, page.More, page.LastID)
			}
			for i, m := range page.Messages {
				if m.ID != ids[tt.first+i] {
					t.Fatalf("message %d is %v, want %v", i, m.ID, ids[tt.first+i])
				}
			}
		})
	}
}

// TestRunLongerThanRetention stores 12 messages in one script call on a channel that keeps 5:
// the script trims once at its end, and the log must be the same as if it had trimmed after
// each message: the last 5, continuous from the last trimmed one.
func TestRunLongerThanRetention(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL(), Retention: broker.RetentionPolicy{
		Default: broker.Retention{Size: 5, TTL: time.Hour},
	}})
	ctx := context.Background()
	first := publish(t, b, "r", 0)
	reqs := make([]broker.PublishRequest, 12)
	for i := range reqs {
		reqs[i] = broker.PublishRequest{Channel: "r", Data: data(i + 1)}
	}
	results, errs := b.PublishBatch(ctx, reqs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	page, err := b.History(ctx, "r", broker.HistoryQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 5 || page.Complete {
		t.Fatalf("history from zero: %d messages, complete %v; want the last 5, not complete", len(page.Messages), page.Complete)
	}
	for i, m := range page.Messages {
		if want := results[7+i].ID; m.ID != want || string(m.Data) != string(data(8+i)) {
			t.Fatalf("history[%d] = %v %s, want %v %s", i, m.ID, m.Data, want, data(8+i))
		}
	}
	for _, c := range []struct {
		since    broker.ID
		complete bool
	}{{first, false}, {results[5].ID, false}, {results[6].ID, true}, {results[11].ID, true}} {
		page, err := b.History(ctx, "r", broker.HistoryQuery{Since: c.since, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if page.Complete != c.complete {
			t.Fatalf("since %v: complete %v, want %v", c.since, page.Complete, c.complete)
		}
	}
}

// TestHistoryContinuityAfterTrim trims a log of 350 messages to 50 and checks Complete at and
// around the trim point.
func TestHistoryContinuityAfterTrim(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL(), Retention: broker.RetentionPolicy{
		Default: broker.Retention{Size: 50, TTL: time.Hour},
	}})
	ctx := context.Background()
	var ids []broker.ID
	for i := range 350 {
		ids = append(ids, publish(t, b, "t", i))
	}
	page, err := b.History(ctx, "t", broker.HistoryQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if page.Complete {
		t.Fatal("history from zero is complete after trimming")
	}
	kept := len(page.Messages)
	if kept != 50 {
		t.Fatalf("%d messages kept for MAXLEN 50", kept)
	}
	cut := len(ids) - kept // ids[cut] is the first retained message
	if page.Messages[0].ID != ids[cut] {
		t.Fatalf("first retained %v, want %v", page.Messages[0].ID, ids[cut])
	}
	cases := []struct {
		name     string
		since    broker.ID
		complete bool
	}{
		{"last trimmed", ids[cut-1], true},
		{"before the last trimmed", ids[cut-2], false},
		{"between last trimmed and first kept", ids[cut-1].Next(), ids[cut-1].Next() == ids[cut]},
		{"first kept", ids[cut], true},
		{"middle", ids[cut+10], true},
		{"last", ids[len(ids)-1], true},
		{"after the last", ids[len(ids)-1].Next(), false},
		{"long before", broker.ID{Ms: 1}, false},
	}
	for _, c := range cases {
		page, err := b.History(ctx, "t", broker.HistoryQuery{Since: c.since, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if page.Complete != c.complete {
			t.Errorf("%s (%v): complete = %v, want %v", c.name, c.since, page.Complete, c.complete)
		}
	}
}

func TestHistoryMissingAndExpiredChannel(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL(), Retention: broker.RetentionPolicy{
		Default: broker.Retention{Size: 100, TTL: time.Hour},
		Rules:   []broker.RetentionRule{{Prefix: "short:", Retention: broker.Retention{Size: 100, TTL: 200 * time.Millisecond}}},
	}})
	ctx := context.Background()

	page, err := b.History(ctx, "never", broker.HistoryQuery{Limit: 10})
	if err != nil || !page.Complete || len(page.Messages) != 0 || page.LastID.IsZero() {
		t.Fatalf("never-used channel from zero: %+v, %v; want empty, complete, the epoch as LastID", page, err)
	}
	page, err = b.History(ctx, "never", broker.HistoryQuery{Since: broker.ID{Ms: 5}, Limit: 10})
	if err != nil || page.Complete {
		t.Fatalf("never-used channel after an id: %+v, %v", page, err)
	}

	id := publish(t, b, "short:x", 0)
	if ttl := srv.MustDo("PTTL", "herald:{short:x}:log"); ttl == "-1" || ttl == "-2" {
		t.Fatalf("PTTL = %s: the rule's TTL was not applied", ttl)
	}
	checkFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		page, err := b.History(ctx, "short:x", broker.HistoryQuery{Since: id, Limit: 10})
		if err != nil {
			return err
		}
		if page.Complete {
			return errStillThere
		}
		return nil
	})
	page, err = b.History(ctx, "short:x", broker.HistoryQuery{Limit: 10})
	if err != nil || !page.Complete || len(page.Messages) != 0 {
		t.Fatalf("expired channel from zero: %+v, %v", page, err)
	}
	// A new incarnation: a position from the old one is a gap, though it is before the new
	// first id.
	publish(t, b, "short:x", 1)
	page, err = b.History(ctx, "short:x", broker.HistoryQuery{Since: id, Limit: 10})
	if err != nil || page.Complete || len(page.Messages) != 1 {
		t.Fatalf("position from the expired log: %+v, %v", page, err)
	}
}

var errStillThere = errorString("log still there")

type errorString string

func (e errorString) Error() string { return string(e) }

// TestEpochMovesWhenValkeyLosesItsData: a client that saw a channel empty (its position is the
// epoch) and then missed messages lost with Valkey's data is told of the gap.
func TestEpochMovesWhenValkeyLosesItsData(t *testing.T) {
	srv := valkeytest.StartServer(t)
	b := newTestBroker(t, Options{URL: srv.URL()})
	ctx := context.Background()
	page, err := b.History(ctx, "e", broker.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	position := page.LastID
	publish(t, b, "e", 1)
	if page, err = b.History(ctx, "e", broker.HistoryQuery{Since: position, Limit: 10}); err != nil || !page.Complete || len(page.Messages) != 1 {
		t.Fatalf("Since the epoch before the loss: %+v, %v; want the message, complete", page, err)
	}
	srv.MustDo("FLUSHALL")
	time.Sleep(2 * time.Millisecond) // the new epoch is a later millisecond
	publish(t, b, "e", 2)
	if page, err = b.History(ctx, "e", broker.HistoryQuery{Since: position, Limit: 10}); err != nil || page.Complete {
		t.Fatalf("Since the old epoch after the loss: %+v, %v; want a gap", page, err)
	}
	srv.MustDo("FLUSHALL")
	if page, err = b.History(ctx, "e", broker.HistoryQuery{Since: position, Limit: 10}); err != nil || page.Complete || page.LastID == position {
		t.Fatalf("Since the old epoch, channel empty again: %+v, %v; want a gap and a new epoch", page, err)
	}
}
