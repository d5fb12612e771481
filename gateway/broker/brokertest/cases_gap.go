package brokertest

import (
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// testLiveGap: a node whose link to the store is cut while more is published than the channel
// retains tells its Handler of the gap (GapLinkLost), before the first message delivered after
// it, and then delivers what the log still has and goes on live: no silent hole. A broker
// without a link delivers every message, whatever the retention, and never reports a gap.
func testLiveGap(t *testing.T, s *suite) {
	const size = 10
	opts := Options{Retention: broker.RetentionPolicy{Default: broker.Retention{Size: size, TTL: defaultRetention.TTL}}}
	e := s.start(t, opts)
	ch := ChannelName(t, "livegap")
	if s.cfg.LinkOutage == nil {
		subscribe(t, e.b, ch)
		msgs := e.publishN(ch, 3*size)
		expectMessages(t, "deliveries", e.rec.Wait(t, ch, len(msgs), 5*time.Second), msgs)
		if gaps := e.rec.Gaps(ch); len(gaps) != 0 {
			t.Errorf("gaps %+v reported by a broker without a link", gaps)
		}
		e.rec.Check(t)
		return
	}

	rec := &Recorder{}
	opts.Handler, opts.IdempotencyWindow = rec, defaultWindow
	node, cut := s.cfg.LinkOutage(t, opts)
	t.Cleanup(func() { _ = node.Close() })
	subscribe(t, node, ch)
	before := e.publishN(ch, 3)
	rec.Wait(t, ch, len(before), 5*time.Second)

	restore := cut()
	during := e.publishN(ch, 3*size) // the oldest 2*size are trimmed before the node can read them
	restore()
	after := e.publishN(ch, 2)
	got := rec.WaitID(t, ch, lastID(after), 10*time.Second)
	rec.Check(t)

	gaps := rec.Gaps(ch)
	if len(gaps) != 1 || gaps[0].Reason != broker.GapLinkLost || gaps[0].Before != len(before) {
		t.Fatalf("gaps %+v; want one, link_lost, after the %d messages delivered before the cut", gaps, len(before))
	}
	// After the gap: what the log still held when the node read it (at least the newest size
	// messages), then the rest, each once and in order.
	rest := append(append([]broker.Message(nil), during...), after...)
	k := len(got) - len(before)
	if k < size || k > len(rest) {
		t.Fatalf("%d deliveries %s; want the %d before the cut and the newest %d or more of %s",
			len(got), idList(got), len(before), size, idList(rest))
	}
	expectMessages(t, "deliveries", got, append(append([]broker.Message(nil), before...), rest[len(rest)-k:]...))
}

// subscribe declares b's interest in channel and fails the case on an error.
func subscribe(t *testing.T, b broker.Broker, channel string) {
	t.Helper()
	if err := b.Subscribe(t.Context(), channel); err != nil {
		t.Fatalf("Subscribe(%s): %v", channel, err)
	}
}
