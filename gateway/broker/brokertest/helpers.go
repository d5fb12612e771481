package brokertest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// runID makes channel names unique per test process, so that runs against a shared store never
// see each other's channels.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// ChannelName returns a valid channel name unique to this test process and test (derived from
// t.Name()), ending in suffix. suffix must be made of valid channel bytes.
func ChannelName(t testing.TB, suffix string) string {
	name := []byte(t.Name())
	for i, c := range name {
		if !broker.ValidChannel(string(c)) {
			name[i] = '_'
		}
	}
	if len(name) > 160 {
		name = name[len(name)-160:]
	}
	ch := "bt." + runID + "." + string(name) + "." + suffix
	if !broker.ValidChannel(ch) {
		t.Fatalf("ChannelName: %q is not a valid channel name", ch)
	}
	return ch
}

// pollEvery is how often Eventually checks its condition.
const pollEvery = 20 * time.Millisecond

// Eventually calls cond until it returns true, and fails t (with the message made from format
// and args) if that has not happened within timeout. Use it instead of sleeping.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(pollEvery)
	}
}

// publish stores req and fails the case on an error.
func (e *env) publish(req broker.PublishRequest) broker.PublishResult {
	e.t.Helper()
	res, err := e.b.Publish(e.ctx, req)
	if err != nil {
		e.t.Fatalf("Publish(%s): %v", req.Channel, err)
	}
	return res
}

// publishN publishes n messages {"i":<k>} to channel and returns them as stored.
func (e *env) publishN(channel string, n int) []broker.Message {
	e.t.Helper()
	msgs := make([]broker.Message, n)
	for k := range msgs {
		data := fmt.Appendf(nil, `{"i":%d}`, k)
		res := e.publish(broker.PublishRequest{Channel: channel, Data: data})
		if k > 0 && !msgs[k-1].ID.Less(res.ID) {
			e.t.Fatalf("publish %d got id %v, not after the previous %v", k, res.ID, msgs[k-1].ID)
		}
		msgs[k] = broker.Message{Channel: channel, ID: res.ID, Data: data}
	}
	return msgs
}

// history reads a page and fails the case on an error.
func (e *env) history(channel string, q broker.HistoryQuery) broker.HistoryPage {
	e.t.Helper()
	page, err := e.b.History(e.ctx, channel, q)
	if err != nil {
		e.t.Fatalf("History(%s, %+v): %v", channel, q, err)
	}
	return page
}

// expectPage fails the case unless got equals want field by field (message bodies byte by byte).
func expectPage(t testing.TB, what string, got, want broker.HistoryPage) {
	t.Helper()
	if got.Complete != want.Complete || got.Gap != want.Gap || got.More != want.More || got.LastID != want.LastID {
		t.Errorf("%s: Complete=%v Gap=%q More=%v LastID=%v; want Complete=%v Gap=%q More=%v LastID=%v",
			what, got.Complete, got.Gap, got.More, got.LastID, want.Complete, want.Gap, want.More, want.LastID)
	}
	expectMessages(t, what, got.Messages, want.Messages)
}

// expectEmpty fails the case unless got holds no message, is complete or not as gap says (with
// that reason), and carries the broker's epoch as LastID (a non-zero id: see
// broker.HistoryPage.LastID).
func expectEmpty(t testing.TB, what string, got broker.HistoryPage, gap broker.GapReason) {
	t.Helper()
	complete := gap == broker.GapNone
	if len(got.Messages) != 0 || got.More || got.Complete != complete || got.Gap != gap || got.LastID.IsZero() {
		t.Errorf("%s: %d messages, More=%v, Complete=%v, Gap=%q, LastID=%v; want none, false, %v, %q, the broker's (non-zero) epoch",
			what, len(got.Messages), got.More, got.Complete, got.Gap, got.LastID, complete, gap)
	}
}

// expectMessages fails the case unless got and want hold the same messages in the same order.
func expectMessages(t testing.TB, what string, got, want []broker.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d messages %s; want %d %s", what, len(got), idList(got), len(want), idList(want))
		return
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Channel != w.Channel || g.ID != w.ID || g.Event != w.Event || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: message %d is {%s %v %q %s}; want {%s %v %q %s}",
				what, i, g.Channel, g.ID, g.Event, g.Data, w.Channel, w.ID, w.Event, w.Data)
			return
		}
	}
}

// idList formats the ids of msgs, abridged when long.
func idList(msgs []broker.Message) string {
	var parts []string
	for i := 0; i < len(msgs); i++ {
		if len(msgs) > 6 && i == 3 {
			parts = append(parts, fmt.Sprintf("(%d more)", len(msgs)-6))
			i = len(msgs) - 3
		}
		parts = append(parts, msgs[i].ID.String())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// lastID returns the id of the newest of msgs, or zero.
func lastID(msgs []broker.Message) broker.ID {
	if len(msgs) == 0 {
		return broker.ID{}
	}
	return msgs[len(msgs)-1].ID
}
