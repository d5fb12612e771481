package memory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/brokertest"
	"github.com/herald-gateway/herald/gateway/broker/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, opts brokertest.Options) broker.Broker {
		return memory.New(memory.Options{
			Handler:           opts.Handler,
			Retention:         opts.Retention,
			IdempotencyWindow: opts.IdempotencyWindow,
		})
	})
}

// clock is a settable time source for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.UnixMilli(1_732_700_000_000)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newBroker starts a broker that is closed when the test ends.
func newBroker(t *testing.T, opts memory.Options) *memory.Broker {
	t.Helper()
	b := memory.New(opts)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func publish(t *testing.T, b *memory.Broker, req broker.PublishRequest) broker.PublishResult {
	t.Helper()
	if req.Data == nil {
		req.Data = json.RawMessage(`{}`)
	}
	res, err := b.Publish(t.Context(), req)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return res
}

func history(t *testing.T, b *memory.Broker, ch string, q broker.HistoryQuery) broker.HistoryPage {
	t.Helper()
	page, err := b.History(t.Context(), ch, q)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	return page
}

func ids(msgs []broker.Message) []broker.ID {
	out := make([]broker.ID, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// TestExactTrim: the memory broker keeps exactly Retention.Size messages, per the longest
// matching rule.
func TestExactTrim(t *testing.T) {
	b := newBroker(t, memory.Options{Retention: broker.RetentionPolicy{
		Rules: []broker.RetentionRule{{Prefix: "small:", Retention: broker.Retention{Size: 10}}},
	}})
	var published []broker.ID
	for i := range 25 {
		published = append(published, publish(t, b, broker.PublishRequest{Channel: "small:x", Data: fmt.Appendf(nil, "%d", i)}).ID)
		publish(t, b, broker.PublishRequest{Channel: "big:x"})
	}
	page := history(t, b, "small:x", broker.HistoryQuery{Limit: 100})
	if got := ids(page.Messages); fmt.Sprint(got) != fmt.Sprint(published[15:]) || page.Complete {
		t.Errorf("small:x keeps %v (Complete=%v); want exactly %v, incomplete", got, page.Complete, published[15:])
	}
	if page := history(t, b, "small:x", broker.HistoryQuery{Since: published[14], Limit: 100}); !page.Complete || len(page.Messages) != 10 {
		t.Errorf("Since the last trimmed: Complete=%v, %d messages; want true, 10", page.Complete, len(page.Messages))
	}
	if page := history(t, b, "small:x", broker.HistoryQuery{Since: published[13], Limit: 100}); page.Complete {
		t.Errorf("Since a message before the last trimmed: Complete; want incomplete")
	}
	// A rule with a zero TTL takes the default's: the log does not expire at once.
	if page := history(t, b, "big:x", broker.HistoryQuery{Limit: 100}); len(page.Messages) != 25 || !page.Complete {
		t.Errorf("big:x (default retention) keeps %d messages, Complete=%v; want 25, true", len(page.Messages), page.Complete)
	}
}

// TestDefaultRetention: a zero Size, in the default or in a rule, means 1000 messages.
func TestDefaultRetention(t *testing.T) {
	b := newBroker(t, memory.Options{Retention: broker.RetentionPolicy{
		Rules: []broker.RetentionRule{{Prefix: "ttl-only:", Retention: broker.Retention{TTL: time.Hour}}},
	}})
	for _, ch := range []string{"c", "ttl-only:c"} {
		for range broker.DefaultRetention.Size + 1 {
			publish(t, b, broker.PublishRequest{Channel: ch})
		}
		page := history(t, b, ch, broker.HistoryQuery{Limit: 5000})
		if len(page.Messages) != broker.DefaultRetention.Size || page.Complete {
			t.Errorf("%s: kept %d, Complete=%v; want %d, false", ch, len(page.Messages), page.Complete, broker.DefaultRetention.Size)
		}
	}
}

// TestClockBackwards: ids keep increasing when the clock stalls or steps back.
func TestClockBackwards(t *testing.T) {
	clk := newClock()
	b := newBroker(t, memory.Options{Now: clk.Now})
	const ms = 1_732_700_000_000
	steps := []struct {
		move time.Duration
		want broker.ID
	}{
		{0, broker.ID{Ms: ms}},
		{0, broker.ID{Ms: ms, Seq: 1}},                      // same millisecond
		{-time.Second, broker.ID{Ms: ms, Seq: 2}},           // clock stepped back
		{time.Second, broker.ID{Ms: ms, Seq: 3}},            // back where it was
		{time.Millisecond, broker.ID{Ms: ms + 1}},           // moved on: sequence restarts
		{-time.Hour, broker.ID{Ms: ms + 1, Seq: 1}},         // far back
		{time.Hour + time.Second, broker.ID{Ms: ms + 1001}}, // past it again
	}
	for i, s := range steps {
		clk.Add(s.move)
		if got := publish(t, b, broker.PublishRequest{Channel: "c"}).ID; got != s.want {
			t.Errorf("step %d: id %v, want %v", i, got, s.want)
		}
	}
}

// TestTTLFakeClock: a log expires exactly TTL after its last publish; reads do not keep it alive.
func TestTTLFakeClock(t *testing.T) {
	clk := newClock()
	b := newBroker(t, memory.Options{Now: clk.Now, Retention: broker.RetentionPolicy{Default: broker.Retention{Size: 5, TTL: time.Minute}}})
	first := publish(t, b, broker.PublishRequest{Channel: "c"}).ID
	clk.Add(30 * time.Second)
	last := publish(t, b, broker.PublishRequest{Channel: "c"}).ID
	clk.Add(time.Minute - time.Millisecond)
	if page := history(t, b, "c", broker.HistoryQuery{Since: first, Limit: 10}); !page.Complete || len(page.Messages) != 1 {
		t.Fatalf("just before the TTL: Complete=%v, %d messages; want true, 1", page.Complete, len(page.Messages))
	}
	clk.Add(time.Millisecond)
	if page := history(t, b, "c", broker.HistoryQuery{Since: last, Limit: 10}); page.Complete || len(page.Messages) != 0 || !page.LastID.Less(first) {
		t.Fatalf("at the TTL: %+v; want an empty, incomplete page", page)
	}
	// The clock steps back: the new log's ids still come after the old log's.
	clk.Add(-time.Hour)
	fresh := publish(t, b, broker.PublishRequest{Channel: "c"}).ID
	if !last.Less(fresh) {
		t.Errorf("new log's id %v is not after the old log's %v", fresh, last)
	}
}

// TestIdempotencyFakeClock: a key is remembered for exactly the window.
func TestIdempotencyFakeClock(t *testing.T) {
	clk := newClock()
	b := newBroker(t, memory.Options{Now: clk.Now, IdempotencyWindow: time.Minute})
	req := broker.PublishRequest{Channel: "c", IdempotencyKey: "k"}
	first := publish(t, b, req)
	clk.Add(time.Minute - time.Millisecond)
	if r := publish(t, b, req); !r.Duplicate || r.ID != first.ID {
		t.Fatalf("inside the window: %+v; want Duplicate of %v", r, first.ID)
	}
	clk.Add(time.Millisecond)
	second := publish(t, b, req)
	if second.Duplicate {
		t.Fatalf("after the window: Duplicate; want a new message")
	}
	// The key now refers to the new message, for a new window.
	clk.Add(time.Minute - time.Millisecond)
	if r := publish(t, b, req); !r.Duplicate || r.ID != second.ID {
		t.Fatalf("inside the second window: %+v; want Duplicate of %v", r, second.ID)
	}
}

// TestDataIsCopied: callers may reuse their buffer once Publish returns.
func TestDataIsCopied(t *testing.T) {
	b := newBroker(t, memory.Options{})
	buf := []byte(`{"v":1}`)
	publish(t, b, broker.PublishRequest{Channel: "c", Data: buf})
	copy(buf, `{"v":2}`)
	if got := history(t, b, "c", broker.HistoryQuery{Limit: 1}).Messages[0].Data; string(got) != `{"v":1}` {
		t.Errorf("stored body changed with the caller's buffer: %s", got)
	}
}

// TestDeliveryNeedsInterest: the memory broker delivers exactly while there is interest.
func TestDeliveryNeedsInterest(t *testing.T) {
	rec := &brokertest.Recorder{}
	b := newBroker(t, memory.Options{Handler: rec})
	ctx := t.Context()
	publish(t, b, broker.PublishRequest{Channel: "c"}) // before any interest
	// More Unsubscribe calls than Subscribe calls must not leave a debt.
	for range 2 {
		if err := b.Unsubscribe(ctx, "c"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	during := publish(t, b, broker.PublishRequest{Channel: "c"}).ID
	if err := b.Unsubscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, broker.PublishRequest{Channel: "c"}) // after
	publish(t, b, broker.PublishRequest{Channel: "other"})
	// Delivery is synchronous in Publish: no waiting needed.
	if got := ids(rec.Messages("c")); len(got) != 1 || got[0] != during {
		t.Errorf("delivered %v; want only %v", got, during)
	}
	if got := rec.Messages("other"); len(got) != 0 {
		t.Errorf("delivered %d messages of a channel without interest", len(got))
	}
	rec.Check(t)
}

// TestNilHandler: without a Handler, interest is allowed and nothing is delivered.
func TestNilHandler(t *testing.T) {
	b := newBroker(t, memory.Options{})
	if err := b.Subscribe(t.Context(), "c"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, broker.PublishRequest{Channel: "c"})
}

// TestInvalidChannelEverywhere: every call that takes a channel name checks it.
func TestInvalidChannelEverywhere(t *testing.T) {
	b := newBroker(t, memory.Options{})
	ctx := t.Context()
	if _, err := b.History(ctx, "a b", broker.HistoryQuery{}); err == nil {
		t.Error("History accepted an invalid channel name")
	}
	if err := b.Subscribe(ctx, "a b"); err == nil {
		t.Error("Subscribe accepted an invalid channel name")
	}
	if err := b.Unsubscribe(ctx, "a b"); err == nil {
		t.Error("Unsubscribe accepted an invalid channel name")
	}
}

// TestCanceledContext: a canceled call fails with the context's error and stores nothing.
func TestCanceledContext(t *testing.T) {
	b := newBroker(t, memory.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Publish(ctx, broker.PublishRequest{Channel: "c", Data: json.RawMessage(`{}`)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish: %v; want context.Canceled", err)
	}
	if page := history(t, b, "c", broker.HistoryQuery{Limit: 10}); len(page.Messages) != 0 {
		t.Errorf("a canceled publish was stored")
	}
}

// TestCloseTwice: Close may be called again.
func TestCloseTwice(t *testing.T) {
	b := memory.New(memory.Options{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func ExampleNew() {
	ctx := context.Background()
	b := memory.New(memory.Options{
		// A fixed clock makes the ids below predictable; a server leaves Now nil.
		Now: func() time.Time { return time.UnixMilli(1_732_700_000_000) },
	})
	defer b.Close()

	for _, text := range []string{"hello", "world"} {
		res, _ := b.Publish(ctx, broker.PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(`{"text":"` + text + `"}`)})
		fmt.Println("stored", res.ID)
	}
	since, _ := broker.ParseID("1732700000000-0")
	page, _ := b.History(ctx, "chat:lobby", broker.HistoryQuery{Since: since, Limit: 10})
	for _, m := range page.Messages {
		fmt.Println(m.ID, string(m.Data))
	}
	fmt.Println("complete:", page.Complete)
	// Output:
	// stored 1732700000000-0
	// stored 1732700000000-1
	// 1732700000000-1 {"text":"world"}
	// complete: true
}

// TestRestartLosesTheEpoch: a client that saw a channel empty, then missed messages lost in a
// restart of the process, is told of the gap: the new broker's epoch is later than the old one.
func TestRestartLosesTheEpoch(t *testing.T) {
	clk := newClock()
	before := newBroker(t, memory.Options{Now: clk.Now})
	position := history(t, before, "c", broker.HistoryQuery{}).LastID
	publish(t, before, broker.PublishRequest{Channel: "c"}) // lost with the process
	clk.Add(time.Second)
	after := newBroker(t, memory.Options{Now: clk.Now})
	if page := history(t, after, "c", broker.HistoryQuery{Since: position, Limit: 10}); page.Complete || page.Gap != broker.GapBrokerReset {
		t.Fatalf("after a restart, Since the old epoch: %+v; want a gap, broker_reset", page)
	}
	publish(t, after, broker.PublishRequest{Channel: "c"})
	if page := history(t, after, "c", broker.HistoryQuery{Since: position, Limit: 10}); page.Complete || page.Gap != broker.GapBrokerReset || len(page.Messages) != 1 {
		t.Fatalf("after a restart and a publish, Since the old epoch: %+v; want one message and a gap", page)
	}
}
