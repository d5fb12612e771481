package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// pollWaiter is the hub's view of a long-poll request in flight: it only needs to know that a
// channel has news, then it reads the log itself.
type pollWaiter struct {
	wake chan struct{}

	mu   sync.Mutex                         // guards lost
	lost map[*subscription]broker.GapReason // live gap notices not yet answered
}

func (p *pollWaiter) deliver(*subscription, []*delivery, *iovecs) { p.signal() }

// gap wakes the request and remembers the notice: if its next read of the log finds messages
// missing, the live notice's reason (the node lost its link) is why, not what the log says.
func (p *pollWaiter) gap(sub *subscription, reason broker.GapReason) {
	p.mu.Lock()
	if p.lost == nil {
		p.lost = make(map[*subscription]broker.GapReason)
	}
	p.lost[sub] = reason
	p.mu.Unlock()
	p.signal()
}

// takeLost returns and forgets the live gap notice of sub, GapNone when there is none.
func (p *pollWaiter) takeLost(sub *subscription) broker.GapReason {
	p.mu.Lock()
	defer p.mu.Unlock()
	reason := p.lost[sub]
	delete(p.lost, sub)
	return reason
}

func (p *pollWaiter) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// maxPollMessages is the most messages one long-poll response carries per channel; a client
// that is further behind gets the oldest ones, with more set, and polls again at once, so a long
// catch-up never skips anything.
const maxPollMessages = 1000

// pollAnswerBytes bounds one long-poll answer: its messages' data and event names add up to at
// most this many bytes, give or take one message (a channel's page holds at least one). A poll of
// many channels far behind then holds about this much per request while its answer is built and
// written, not every channel's backlog at once; the answer says more and the client polls again
// at once.
const pollAnswerBytes = 1 << 20

// pollWriteMargin is how long a long-poll answer may take to write, on top of the poll's wait:
// the write deadline of a client that does not read its answer.
const pollWriteMargin = 10 * time.Second

type pollMessage struct {
	Channel string          `json:"channel"`
	ID      string          `json:"id"`
	Event   string          `json:"event,omitempty"`
	Data    json.RawMessage `json:"data"`
}

type pollResponse struct {
	Messages  []pollMessage `json:"messages"`
	Cursor    string        `json:"cursor"`
	Recovered bool          `json:"recovered"`
	// More is true when the answer stopped short (its byte budget or a channel's page size):
	// messages after the cursor may exist already, so poll again at once.
	More bool `json:"more,omitempty"`
	// Gaps lists the channels whose history since the cursor could not be proven complete.
	Gaps []pollGap `json:"gaps,omitempty"`
}

// pollGap is one channel of a long-poll answer's gaps: the same shape as SSE's herald.gap data.
type pollGap struct {
	Channel string `json:"channel"`
	Reason  string `json:"reason"`
}

// ServePoll serves GET /v1/poll: it answers as soon as any channel has messages after the
// cursor (or a gap to report), or after the timeout with none.
func (g *Gateway) ServePoll(w http.ResponseWriter, r *http.Request) {
	slot, admitted := g.admit(w, r)
	if !admitted {
		return
	}
	defer g.cfg.Admission.Release(slot)
	req := g.parseStreamRequest(w, r, kindPoll)
	if req == nil {
		return
	}
	timeout, perr := pollTimeout(r.URL.Query().Get("timeout"), g.cfg.PollTimeout, g.cfg.PollTimeoutMax)
	if perr != nil {
		problem.Write(w, perr)
		return
	}
	// A client that does not read its answer must not hold the request (and the answer's
	// memory) for longer than its wait and the time to write.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + pollWriteMargin))
	g.polls.Add(1)
	defer g.polls.Done()
	g.metrics.Connections.WithLabelValues("poll").Inc()
	defer g.metrics.Connections.WithLabelValues("poll").Dec()

	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.BrokerTimeout)
	waiter := &pollWaiter{wake: make(chan struct{}, 1)}
	subs := make([]*subscription, 0, len(req.channels))
	defer func() {
		for _, sub := range subs {
			g.hub.remove(sub)
		}
	}()
	// Register interest first: a message published after this is either in the history read
	// below or wakes the waiter.
	for i, ch := range req.channels {
		sub, err := g.hub.subscribe(ctx, ch, waiter, kindPoll)
		if err != nil {
			cancel()
			g.storeProblem(w, r, kindPoll, "subscribe", err)
			return
		}
		_ = g.hub.goLive(sub, broker.ID{})
		subs = append(subs, sub)
		if since := req.sinceOf(i); since != nil {
			sub.pos = *since
		} else {
			page, err := g.broker.History(ctx, ch, broker.HistoryQuery{})
			if err != nil {
				cancel()
				g.storeProblem(w, r, kindPoll, "history", err)
				return
			}
			sub.pos = page.LastID
		}
	}
	cancel()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		resp, err := g.collect(r.Context(), subs, waiter)
		if err != nil {
			g.storeProblem(w, r, kindPoll, "history", err)
			return
		}
		if len(resp.Messages) > 0 || len(resp.Gaps) > 0 {
			writePoll(w, resp)
			return
		}
		select {
		case <-waiter.wake:
		case <-deadline.C:
			writePoll(w, resp)
			return
		case <-g.stopping:
			writePoll(w, resp)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// collect reads every channel's messages after its position, oldest position first, and
// advances the positions, until the answer holds pollAnswerBytes. A channel whose log no longer
// holds everything after its position is listed in Gaps.
//
// Channels are read in the order of their positions rather than of the request, so that a
// channel the budget left out of one answer (it keeps its position) is among the first of the
// next: the one furthest behind goes first, and none waits behind a busy neighbour for ever.
func (g *Gateway) collect(ctx context.Context, subs []*subscription, waiter *pollWaiter) (pollResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.BrokerTimeout)
	defer cancel()
	resp := pollResponse{Messages: []pollMessage{}, Recovered: true}
	budget := pollAnswerBytes
	for _, sub := range byPosition(subs) {
		if budget <= 0 {
			resp.More = true // this channel keeps its position for the next answer
			continue
		}
		page, err := g.broker.History(ctx, sub.ch.name, broker.HistoryQuery{Since: sub.pos, Limit: maxPollMessages, MaxBytes: budget})
		if err != nil {
			return resp, err
		}
		g.collectPage(&resp, sub, page, waiter.takeLost(sub))
		budget -= pageBytes(page.Messages)
	}
	resp.Cursor = string(appendCursor(nil, subs))
	return resp, nil
}

// collectPage adds a channel's page to the answer and moves the channel's position to the last
// message included. lost is the channel's live gap notice (GapNone when there is none).
func (g *Gateway) collectPage(resp *pollResponse, sub *subscription, page broker.HistoryPage, lost broker.GapReason) {
	if !page.Complete {
		reason := page.Gap
		if lost != broker.GapNone {
			reason = lost // the log lacks them because the node's link was down meanwhile
		}
		resp.Recovered = false
		resp.Gaps = append(resp.Gaps, pollGap{Channel: sub.ch.name, Reason: reason.String()})
		g.metrics.Gaps.Inc()
	}
	for _, m := range page.Messages {
		resp.Messages = append(resp.Messages, pollMessage{Channel: m.Channel, ID: m.ID.String(), Event: m.Event, Data: m.Data})
		sub.pos = m.ID
	}
	if page.More {
		resp.More = true
	} else {
		// The answer holds everything up to LastID, so that is the position: after a gap it
		// is reported once (the next cursor starts from where the log stands, not from the
		// lost position), and a channel without messages has its epoch, as on every
		// transport.
		sub.pos = page.LastID
	}
	g.metrics.Deliveries.Add(float64(len(page.Messages)))
}

// byPosition returns the subscriptions ordered by position, oldest first (a copy: the cursor
// keeps the request's order).
func byPosition(subs []*subscription) []*subscription {
	out := slices.Clone(subs)
	slices.SortStableFunc(out, func(a, b *subscription) int { return a.pos.Compare(b.pos) })
	return out
}

func writePoll(w http.ResponseWriter, resp pollResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(resp)
}

// pollTimeout reads the timeout parameter in whole seconds.
func pollTimeout(s string, def, maxWait time.Duration) (time.Duration, *requestError) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || time.Duration(n)*time.Second > maxWait {
		return 0, badRequest("invalid-timeout", "timeout must be whole seconds from 0 to "+strconv.Itoa(int(maxWait/time.Second)))
	}
	return time.Duration(n) * time.Second, nil
}
