package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// sseSession is one Server-Sent Events stream. Its subscriptions are fixed when it starts.
// Every write happens under the connection's write lock together with the update of the
// subscription's position, so the cursor each event carries is exactly what was delivered.
type sseSession struct {
	conn
	subs    []*subscription
	expires int64 // unix seconds; 0 when the credential does not expire
}

// ServeSSE serves GET /v1/sse: it subscribes, answers the response headers on the hijacked
// connection, writes the replay and hands the connection to the epoll core.
func (g *Gateway) ServeSSE(w http.ResponseWriter, r *http.Request) {
	// A refusal before the stream starts must be readable by a page on another origin, so
	// that a bad token does not look like a network failure to the browser.
	g.cfg.CORS.SetHeaders(w.Header(), r)
	slot, admitted := g.admit(w, r)
	if !admitted {
		return
	}
	defer func() { g.cfg.Admission.Release(slot) }() // unless the connection took it (slot = nil)
	req := g.parseStreamRequest(w, r, kindSSE)
	if req == nil {
		return
	}
	s := &sseSession{}
	if !req.claims.Expiry.IsZero() {
		s.expires = req.claims.Expiry.Unix()
	}
	// Subscribe before the stream starts, so a broker failure is still a plain 503. The
	// subscriptions buffer live messages until the replay is written.
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.BrokerTimeout)
	defer cancel()
	// Until adopt made the session the core's, nothing retires it: every way out before that
	// releases its subscriptions here (cleanup needs the adopted connection).
	release := func() {
		for _, sub := range s.subs {
			g.hub.remove(sub)
		}
	}
	var (
		jobs []*replayJob
		kept int
	)
	for i, ch := range req.channels {
		since := req.sinceOf(i)
		sub, page, err := g.join(ctx, ch, s, kindSSE, since)
		if err != nil {
			release()
			g.storeProblem(w, r, kindSSE, "subscribe", err)
			return
		}
		s.subs = append(s.subs, sub)
		// The position is where the replay starts, and the replay moves it on.
		sub.pos = page.Start
		j := &replayJob{sub: sub, from: page.Start, fresh: true}
		if since != nil && !page.Complete {
			j.gap = page.Gap
		}
		if size := pageBytes(page.Messages); kept+size <= replayKeepBytes || size == 0 {
			kept += size
			j.first = &page
		}
		if since == nil {
			jobs = append([]*replayJob{j}, jobs...) // live-only channels go live first
		} else {
			jobs = append(jobs, j)
		}
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		release()
		problem.Write(w, problem.New(http.StatusInternalServerError, "internal", "streaming is not supported by this server"))
		return
	}
	netc, _, err := hj.Hijack()
	if err != nil {
		release()
		return
	}
	if !g.adopt(&s.conn, netc, kindSSE, s, slot) {
		release()
		g.refuseSSE(netc, r)
		return
	}
	slot = nil // the connection holds it; the janitor releases it
	s.write(g.sseHeader(r), nil)
	// The replays are paged as the client reads (see replay.go); the last one done pins the
	// cursor (replaysDone).
	s.startReplays(jobs...)
	g.start(&s.conn)
}

// pageBytes is the size of msgs as a page's MaxBytes counts it.
func pageBytes(msgs []broker.Message) int {
	n := 0
	for _, m := range msgs {
		n += broker.MessageBytes(m)
	}
	return n
}

// sseHeader is the response head and the stream's first field.
func (g *Gateway) sseHeader(r *http.Request) []byte {
	h := http.Header{}
	g.cfg.CORS.SetHeaders(h, r)
	b := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n")
	for k, vs := range h {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\nretry: "...)
	b = strconv.AppendInt(b, g.cfg.SSERetry.Milliseconds(), 10)
	return append(b, "\n\n"...)
}

// replaying implements replayWriter: an SSE stream's subscriptions last as long as it does.
func (s *sseSession) replaying(*subscription) bool { return true }

// writePage implements replayWriter: the page goes out in one write, each event carrying the
// stream's cursor after it.
func (s *sseSession) writePage(j *replayJob, lead []byte, gap broker.GapReason, msgs []broker.Message) bool {
	out := lead
	if gap != broker.GapNone {
		out = appendGapEvent(out, j.sub.ch.name, gap)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, m := range msgs {
		j.sub.pos, j.from = m.ID, m.ID
		out = append(appendCursor(append(out, "id: "...), s.subs), '\n')
		out = appendSSEBody(out, m)
	}
	return s.writeReplayLocked(out)
}

// caughtUp implements replayWriter: the replay ended at through (a complete one held everything
// up to it), so that is the position, also for a channel without messages: its epoch, as on
// every transport, rather than the client's "0".
func (s *sseSession) caughtUp(j *replayJob, through broker.ID) {
	s.wmu.Lock()
	j.sub.pos = through
	s.wmu.Unlock()
}

// replaysDone implements replayWriter: an id-only event pins Last-Event-ID, even before the
// first message.
func (s *sseSession) replaysDone() {
	s.wmu.Lock()
	s.writeLocked(s.cursorEvent(), nil)
	s.wmu.Unlock()
}

// appendGapEvent appends the herald.gap event of channel (a valid name: nothing to escape).
func appendGapEvent(b []byte, channel string, reason broker.GapReason) []byte {
	b = append(b, "event: herald.gap\ndata: {\"channel\":\""...)
	b = append(b, channel...)
	b = append(b, "\",\"reason\":\""...)
	b = append(b, reason.String()...)
	return append(b, "\"}\n\n"...)
}

// deliver implements sink.
func (s *sseSession) deliver(sub *subscription, ds []*delivery, v *iovecs) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if len(s.subs) == 1 {
		for _, d := range ds {
			v.add(d.sse)
		}
	} else {
		// Each event's id is the stream's cursor just after it.
		for _, d := range ds {
			sub.pos = d.msg.ID
			v.add(append(appendCursor([]byte("id: "), s.subs), '\n'))
			v.add(d.sseBody)
		}
	}
	sub.pos = ds[len(ds)-1].msg.ID
	s.writevLocked(v)
	v.reset()
}

// gap implements sink.
func (s *sseSession) gap(sub *subscription, reason broker.GapReason) {
	s.write(appendGapEvent(nil, sub.ch.name, reason), nil)
}

// cursorEvent is an event with only an id field: EventSource records the id without
// dispatching anything. wmu must be held.
func (s *sseSession) cursorEvent() []byte {
	return append(appendCursor([]byte("id: "), s.subs), '\n', '\n')
}

func (s *sseSession) onData(p []byte) error { return nil } // clients send nothing; ignore it

func (s *sseSession) closeFrame(c closeCause) []byte {
	switch c.metric {
	case "shutdown":
		// The reconnect hint: EventSource waits the retry field's time before reconnecting; the
		// event says why, for clients that want to tell it from the stream's initial retry.
		ms := strconv.FormatInt(c.retryAfter.Milliseconds(), 10)
		return []byte("event: herald.shutdown\ndata: {\"reconnect_after_ms\":" + ms + "}\n\nretry: " + ms + "\n\n")
	case "token_expired":
		return []byte("event: herald.token-expired\ndata: {\"message\":\"token expired: reconnect with a fresh token\"}\n\n")
	}
	return nil
}

var ssePing = []byte(": ping\n\n")

func (s *sseSession) heartbeat(now int64) {
	if s.expires != 0 && time.Now().Unix() >= s.expires {
		s.closeGracefully(closeCause{code: 4001, reason: "token expired", metric: "token_expired"})
		return
	}
	s.write(ssePing, nil)
}

func (s *sseSession) cleanup() {
	// s.subs is never changed after the stream started, so reading it here is safe even if the
	// request goroutine is still finishing the replay.
	for _, sub := range s.subs {
		s.gw.hub.remove(sub)
	}
}
