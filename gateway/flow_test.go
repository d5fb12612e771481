package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

func TestWebSocketAuthFrameSinceThenLive(t *testing.T) {
	e := newEnv(t)
	first := e.publish("orders:42", `{"n":1}`)
	second := e.publish("orders:42", `{"n":2}`)
	third := e.publish("orders:42", `{"n":3}`)

	c := e.dialWS(nil)
	c.auth(e.token([]string{"orders:*"}, nil, time.Hour))
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "orders:42", "since": first.String()})
	sub := c.expect("subscribed")
	if sub["recovered"] != true || sub["id"] != float64(1) || sub["last_id"] != third.String() {
		t.Fatalf("subscribed frame %v", sub)
	}
	for _, want := range []string{second.String(), third.String()} {
		m := c.expect("message")
		if m["id"] != want || m["channel"] != "orders:42" {
			t.Fatalf("replayed %v, want id %s", m, want)
		}
	}
	live := e.publish("orders:42", `{"n":4}`)
	m := c.expect("message")
	if m["id"] != live.String() || m["data"].(map[string]any)["n"] != float64(4) {
		t.Fatalf("live %v", m)
	}
}

func TestWebSocketBearerHeaderAndPublish(t *testing.T) {
	e := newEnv(t)
	c := e.dialWS(bearer(e.token([]string{"chat:*"}, []string{"chat:*"}, time.Hour)))
	if m := c.expect("connected"); !strings.HasPrefix(m["session"].(string), "s-") || m["expires_in"].(float64) < 3500 {
		t.Fatalf("connected %v", m)
	}
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "chat:lobby"})
	c.expect("subscribed")
	c.send(map[string]any{"type": "publish", "id": 2, "channel": "chat:lobby", "event": "said", "data": map[string]any{"text": "hi"}})
	// The ack and the message may come in either order.
	got := map[string]map[string]any{}
	for range 2 {
		m := c.next()
		got[m["type"].(string)] = m
	}
	ack, msg := got["ack"], got["message"]
	if ack == nil || msg == nil || ack["message_id"] != msg["id"] || msg["event"] != "said" || ack["id"] != float64(2) {
		t.Fatalf("ack %v message %v", ack, msg)
	}
	c.send(map[string]any{"type": "ping", "id": 3})
	if m := c.expect("pong"); m["id"] != float64(3) {
		t.Fatalf("pong %v", m)
	}
	c.send(map[string]any{"type": "unsubscribe", "id": 4, "channel": "chat:lobby"})
	c.expect("unsubscribed")
	waitFor(t, 2*time.Second, func() bool { return e.gw.Subscribers("chat:lobby") == 0 }, "subscriber count drops")
}

// TestWebSocketPublishWaitsForFanOutRoom: with the node's fan-out full, a WebSocket publish
// waits for room as an HTTP one does; after FanOutWait it gets "backlogged" and nothing is
// stored, and a publish made while room comes back goes through.
func TestWebSocketPublishWaitsForFanOutRoom(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.FanOutBacklog, c.FanOutWait = 10, 300*time.Millisecond }))
	c := e.dialWS(bearer(e.token(nil, []string{"busy"}, time.Hour)))
	c.expect("connected")
	full := e.gw.hub.backlog.acquire(10) // as a fan-out that cannot keep up holds it
	c.send(map[string]any{"type": "publish", "id": 1, "channel": "busy", "data": 1, "idempotency_key": "k1"})
	if m := c.expect("error"); m["code"] != "backlogged" || m["id"] != float64(1) {
		t.Fatalf("error %v, want backlogged for id 1", m)
	}
	page, err := e.broker.History(context.Background(), "busy", broker.HistoryQuery{Limit: 10})
	if err != nil || len(page.Messages) != 0 {
		t.Fatalf("history after a backlogged publish: %v, %v; want nothing stored", page.Messages, err)
	}
	c.send(map[string]any{"type": "publish", "id": 2, "channel": "busy", "data": 1, "idempotency_key": "k1"})
	time.Sleep(100 * time.Millisecond) // the publish waits for room
	e.gw.hub.backlog.release(full)
	if m := c.expect("ack"); m["id"] != float64(2) {
		t.Fatalf("ack %v, want id 2", m)
	}
	if page, err = e.broker.History(context.Background(), "busy", broker.HistoryQuery{Limit: 10}); err != nil || len(page.Messages) != 1 {
		t.Fatalf("history: %v, %v; want the one message", page.Messages, err)
	}
}

func TestSSELiveThenResumeExactlyTheMissed(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"orders:42"}, nil, time.Hour)
	c, resp := e.openSSE("channel=orders:42&access_token="+tok, nil)
	if c == nil {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Fatalf("%s = %q, want %q", k, got, want)
		}
	}
	waitFor(t, 2*time.Second, func() bool { return e.gw.Subscribers("orders:42") == 1 }, "subscribed")
	id := e.publish("orders:42", `{"status":"paid"}`)
	ev := c.next()
	if ch, mid, data := ev.message(t); ch != "orders:42" || mid != id.String() || data != `{"status":"paid"}` || ev.id != id.String() {
		t.Fatalf("event %+v", ev)
	}
	if c.retryMs() <= 0 {
		t.Fatal("no retry field")
	}
	last := c.lastID()
	c.close()
	var missed []string
	for i := range 3 {
		missed = append(missed, e.publish("orders:42", fmt.Sprintf(`{"n":%d}`, i)).String())
	}
	c2, _ := e.openSSE("channel=orders:42", http.Header{"Last-Event-Id": {last}, "Authorization": {"Bearer " + tok}})
	for _, want := range missed {
		ev := c2.next()
		if _, mid, _ := ev.message(t); mid != want || ev.event != "" {
			t.Fatalf("resumed event %+v, want id %s", ev, want)
		}
	}
	live := e.publish("orders:42", `{"n":"live"}`)
	if _, mid, _ := c2.next().message(t); mid != live.String() {
		t.Fatalf("live after resume %s, want %s", mid, live)
	}
}

func TestSSEGapWhenHistoryTrimmed(t *testing.T) {
	e := newEnv(t, withRetention(10, time.Hour))
	tok := e.token([]string{"*"}, nil, time.Hour)
	first := e.publish("feed", `1`)
	var ids []string
	for i := range 50 {
		ids = append(ids, e.publish("feed", fmt.Sprint(i)).String())
	}
	c, _ := e.openSSE("channel=feed", http.Header{"Last-Event-Id": {first.String()}, "Authorization": {"Bearer " + tok}})
	ev := c.next()
	if ev.event != "herald.gap" || ev.data != `{"channel":"feed","reason":"trimmed"}` {
		t.Fatalf("first event %+v, want herald.gap", ev)
	}
	for _, want := range ids[40:] {
		if _, mid, _ := c.next().message(t); mid != want {
			t.Fatalf("got %s want %s", mid, want)
		}
	}
}

func TestSSEMultiChannelCursorResumes(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	c, _ := e.openSSE("channel=a&channel=b&access_token="+tok, nil)
	waitFor(t, 2*time.Second, func() bool { return e.gw.Subscribers("b") == 1 }, "subscribed")
	e.publish("a", `"a1"`)
	e.publish("b", `"b1"`)
	c.next()
	c.next()
	cursor := c.lastID()
	if strings.Count(cursor, ",") != 1 {
		t.Fatalf("cursor %q", cursor)
	}
	c.close()
	a2 := e.publish("a", `"a2"`)
	b2 := e.publish("b", `"b2"`)
	c2, _ := e.openSSE("channel=a&channel=b&access_token="+tok, http.Header{"Last-Event-Id": {cursor}})
	got := map[string]string{}
	for range 2 {
		ch, id, _ := c2.next().message(t)
		got[ch] = id
	}
	if got["a"] != a2.String() || got["b"] != b2.String() {
		t.Fatalf("resumed %v", got)
	}
}

func TestSSEPinsCursorBeforeFirstMessage(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	before := e.publish("quiet", `0`)
	c, _ := e.openSSE("channel=quiet&access_token="+tok, nil)
	waitFor(t, 2*time.Second, func() bool { return c.lastID() != "" }, "the stream pins Last-Event-ID")
	if c.lastID() != before.String() {
		t.Fatalf("pinned %q, want %s", c.lastID(), before)
	}
}

func TestLongPollResumeAndWait(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	first := e.publish("jobs", `1`)
	second := e.publish("jobs", `2`)
	resp := e.poll(t, "channel=jobs&since="+first.String()+"&access_token="+tok)
	if len(resp.Messages) != 1 || resp.Messages[0].ID != second.String() || !resp.Recovered || resp.Cursor != second.String() {
		t.Fatalf("poll %+v", resp)
	}
	// Nothing new: the request waits until a message comes.
	done := make(chan pollResponse)
	go func() { done <- e.poll(t, "channel=jobs&since="+resp.Cursor+"&access_token="+tok) }()
	waitFor(t, 2*time.Second, func() bool { return e.gw.hub.lookup("jobs") != nil }, "poll waiting")
	third := e.publish("jobs", `3`)
	got := <-done
	if len(got.Messages) != 1 || got.Messages[0].ID != third.String() {
		t.Fatalf("woken poll %+v", got)
	}
	// Timeout with nothing: empty list, same cursor.
	empty := e.poll(t, "channel=jobs&timeout=0&since="+got.Cursor+"&access_token="+tok)
	if len(empty.Messages) != 0 || empty.Cursor != third.String() {
		t.Fatalf("empty poll %+v", empty)
	}
}

func TestLongPollGap(t *testing.T) {
	e := newEnv(t, withRetention(10, time.Hour))
	tok := e.token([]string{"*"}, nil, time.Hour)
	first := e.publish("feed", `0`)
	for i := range 50 {
		e.publish("feed", fmt.Sprint(i))
	}
	resp := e.poll(t, "channel=feed&since="+first.String()+"&access_token="+tok)
	if resp.Recovered || len(resp.Gaps) != 1 || len(resp.Messages) != 10 {
		t.Fatalf("poll %+v", resp)
	}
	if g := resp.Gaps[0]; g.Channel != "feed" || g.Reason != "trimmed" {
		t.Fatalf("gap %+v, want feed trimmed", g)
	}
}

func (e *testEnv) poll(t *testing.T, query string) pollResponse {
	resp, err := http.Get("http://" + e.addr + "/v1/poll?" + query)
	if err != nil {
		t.Error(err)
		return pollResponse{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Errorf("poll status %d: %s", resp.StatusCode, body)
		return pollResponse{}
	}
	var out pollResponse
	if err := json.Unmarshal(body, &out); err != nil {
		t.Errorf("poll body %q: %v", body, err)
	}
	return out
}

// TestBrokerGapReachesLiveSubscribers: when the broker reports that messages were lost on their
// way to this node (a Valkey outage outlasting the history), live subscribers are told in order.
func TestBrokerGapReachesLiveSubscribers(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	c := e.dialWS(bearer(tok))
	c.expect("connected")
	c.send(map[string]any{"type": "subscribe", "channel": "lossy"})
	c.expect("subscribed")
	sse, _ := e.openSSE("channel=lossy&access_token="+tok, nil)
	waitFor(t, 2*time.Second, func() bool { return e.gw.Subscribers("lossy") == 2 }, "both subscribed")
	before := e.publish("lossy", `1`)
	// Both are live once they have a message published after they subscribed.
	if m := c.expect("message"); m["id"] != before.String() {
		t.Fatalf("%v", m)
	}
	if _, id, _ := sse.next().message(t); id != before.String() {
		t.Fatalf("sse first %s", id)
	}
	e.gw.Gap("lossy", broker.GapLinkLost)
	after := e.publish("lossy", `2`)
	if m := c.expect("gap"); m["channel"] != "lossy" || m["reason"] != "link_lost" {
		t.Fatalf("%v", m)
	}
	if m := c.expect("message"); m["id"] != after.String() {
		t.Fatalf("%v", m)
	}
	if ev := sse.next(); ev.event != "herald.gap" || ev.data != `{"channel":"lossy","reason":"link_lost"}` {
		t.Fatalf("sse gap %+v", ev)
	}
	if _, id, _ := sse.next().message(t); id != after.String() {
		t.Fatalf("sse after %s", id)
	}
}

// TestSSELargeReplayBeforeStart: a replay bigger than the socket buffer is written while the
// stream starts, before the connection is registered with epoll; the rest is queued and flushed.
// TestSSELargeReplayBeforeStart resumes a stream whose replay (12 MB) is far larger than the
// queue bound and than loopback socket buffers: the replay is not a slow consumer, and every
// message arrives in order.
func TestSSELargeReplayBeforeStart(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes = 64 << 10 }))
	tok := e.token([]string{"*"}, nil, time.Hour)
	ids := e.publishBulk("bulk")
	c, _ := e.openSSE("channel=bulk&since=0&access_token="+tok, nil)
	for _, want := range ids {
		if _, id, _ := c.next().message(t); id != want {
			t.Fatalf("got %s want %s", id, want)
		}
	}
	live := e.publish("bulk", `{"live":true}`).String()
	if _, id, _ := c.next().message(t); id != live {
		t.Fatalf("got %s, want the live message %s", id, live)
	}
}

// TestWebSocketLargeReplayThenLive resumes over WebSocket with a replay far larger than the
// queue bound and than loopback socket buffers: the whole replay arrives, then live messages,
// and nobody is disconnected as a slow consumer.
func TestWebSocketLargeReplayThenLive(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes = 64 << 10 }))
	first := e.publish("bulk", `{"first":true}`)
	ids := e.publishBulk("bulk")
	c := e.dialWS(nil)
	c.auth(e.token([]string{"bulk"}, nil, time.Hour))
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "bulk", "since": first.String()})
	if sub := c.expect("subscribed"); sub["recovered"] != true {
		t.Fatalf("subscribed frame %v", sub)
	}
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for _, want := range ids {
		if m := c.expect("message"); m["id"] != want {
			t.Fatalf("replayed %v, want id %s", m["id"], want)
		}
	}
	live := e.publish("bulk", `{"live":true}`)
	if m := c.expect("message"); m["id"] != live.String() {
		t.Fatalf("live %v, want id %s", m["id"], live)
	}
	if n := counterValue(t, e.metrics.SlowConsumerDisconnects); n != 0 {
		t.Fatalf("%v slow-consumer disconnects", n)
	}
}

// TestSSECursorWithLiveOnlyChannel: an empty cursor element starts that channel live while the
// others resume (a client adding a channel to a resuming stream).
func TestSSECursorWithLiveOnlyChannel(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	a1 := e.publish("a", `1`)
	a2 := e.publish("a", `2`)
	e.publish("b", `"old"`)
	c, _ := e.openSSE("channel=a&channel=b&access_token="+tok, http.Header{"Last-Event-Id": {a1.String() + ","}})
	if _, id, _ := c.next().message(t); id != a2.String() {
		t.Fatalf("resumed a: %s", id)
	}
	b2 := e.publish("b", `"new"`)
	ch, id, _ := c.next().message(t)
	if ch != "b" || id != b2.String() {
		t.Fatalf("got %s %s, want b's live message", ch, id)
	}
}

// TestGapReportedOnce: after a gap, the position a client is handed (the SSE cursor, the poll
// cursor) starts from where the log stands, so echoing it back does not report the gap again.
func TestGapReportedOnce(t *testing.T) {
	e := newEnv(t, withRetention(10, time.Hour))
	tok := e.token([]string{"*"}, nil, time.Hour)
	stale := broker.ID{Ms: 1} // a position from a log that is gone
	resp := e.poll(t, "channel=gone&timeout=0&since="+stale.String()+"&access_token="+tok)
	if resp.Recovered || len(resp.Gaps) != 1 {
		t.Fatalf("first poll %+v", resp)
	}
	again := e.poll(t, "channel=gone&timeout=0&since="+resp.Cursor+"&access_token="+tok)
	if !again.Recovered || len(again.Gaps) != 0 {
		t.Fatalf("second poll with the returned cursor %+v: the gap was reported again", again)
	}
	c, _ := e.openSSE("channel=gone&access_token="+tok, http.Header{"Last-Event-Id": {stale.String()}})
	if ev := c.next(); ev.event != "herald.gap" {
		t.Fatalf("first SSE event %+v", ev)
	}
	waitFor(t, 2*time.Second, func() bool { return c.lastID() != "" }, "the cursor is pinned")
	cursor := c.lastID()
	c.close()
	id := e.publish("gone", `1`)
	c2, _ := e.openSSE("channel=gone&access_token="+tok, http.Header{"Last-Event-Id": {cursor}})
	if ev := c2.next(); ev.event != "" {
		t.Fatalf("reconnect with the pinned cursor got %+v first; want the message", ev)
	} else if _, got, _ := ev.message(t); got != id.String() {
		t.Fatalf("got %s want %s", got, id)
	}
}

// TestSubscribingEveryAllowedChannelAtOnce: the frame limit does not stop a client resuming as
// many channels as a connection may hold.
func TestSubscribingEveryAllowedChannelAtOnce(t *testing.T) {
	e := newEnv(t)
	c := e.dialWS(bearer(e.token([]string{"*"}, nil, time.Hour)))
	c.expect("connected")
	for i := range 128 {
		frame, _ := wsTextFrame(fmt.Sprintf(`{"type":"subscribe","id":%d,"channel":"many:%d","since":"0"}`, i, i))
		c.conn.Write(frame)
	}
	for range 128 {
		c.expect("subscribed")
	}
	c.send(map[string]any{"type": "ping", "id": 1})
	c.expect("pong")
}

// TestQueuedMessagesArriveInOrderAfterAStall: a subscriber that stops reading makes the gateway
// queue what its socket does not take; once it reads again, the queue goes out (gathered into
// few writes) and every message arrives once, in order.
func TestQueuedMessagesArriveInOrderAfterAStall(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes = 64 << 20 }), withRetention(100000, time.Hour))
	c := e.dialWS(nil)
	c.auth(e.token([]string{"stall"}, nil, time.Hour))
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "stall"})
	c.expect("subscribed")

	// The client reads nothing while 10,000 messages of about 1 KB (10 MB, more than loopback
	// socket buffers hold, less than the queue bound set above) are published.
	const n = 10000
	pad := strings.Repeat("x", 1000)
	var ids []string
	for i := range n {
		ids = append(ids, e.publish("stall", fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad)).String())
	}
	waitFor(t, 5*time.Second, func() bool {
		queued := 0
		e.gw.wheel.each(func(c *conn) {
			c.wmu.Lock()
			queued = max(queued, len(c.queue))
			c.wmu.Unlock()
		})
		return queued > 100
	}, "the gateway queues messages for the stalled subscriber")
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i, want := range ids {
		m := c.expect("message")
		if m["id"] != want || m["data"].(map[string]any)["i"] != float64(i) {
			t.Fatalf("message %d: %v, want id %s", i, m, want)
		}
	}
}

// TestReplayToAClientThatReadsNothingIsPaged: a client that resumes 12 MB and reads nothing is
// no longer a slow consumer (the replay is paged as it reads), even with ReplayQueueBytes below
// the replay's size; the gateway holds about a page for it.
func TestReplayToAClientThatReadsNothingIsPaged(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes, c.ReplayQueueBytes = 64<<10, 1<<20 }))
	e.publishBulk("bulk")
	e.resumeWithoutReading("bulk")
	waitFor(t, 5*time.Second, func() bool { return e.maxQueued() > 0 }, "the replay queues")
	e.watchQueued(300*time.Millisecond, pagedReplayBound+(2<<20), "a 12 MB resume")
	if n := counterValue(t, e.metrics.SlowConsumerDisconnects); n != 0 || e.gw.Subscribers("bulk") != 1 {
		t.Fatalf("%v slow-consumer disconnects, %d subscribers; want the client kept", n, e.gw.Subscribers("bulk"))
	}
}

// publishBulk publishes 200 messages of 60 KB to channel (12 MB: more than loopback socket
// buffers hold) and returns their ids.
func (e *testEnv) publishBulk(channel string) []string {
	e.t.Helper()
	big := `"` + strings.Repeat("y", 60000) + `"`
	ids := make([]string, 200)
	for i := range ids {
		ids[i] = e.publish(channel, big).String()
	}
	return ids
}

// resumeWithoutReading subscribes a WebSocket client to channel from its start and never reads
// (nor answers pings).
func (e *testEnv) resumeWithoutReading(channel string) *wsClient {
	e.t.Helper()
	c := e.dialWS(nil)
	c.autoPong = false
	c.auth(e.token([]string{channel}, nil, time.Hour))
	c.send(map[string]any{"type": "subscribe", "id": 1, "channel": channel, "since": "0"})
	return c
}

// counterValue reads a Prometheus counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
