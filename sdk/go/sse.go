package herald

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxSSELine bounds one line of an event stream.
const maxSSELine = 4 << 20

// runSSE opens one event stream for the current channel set and reads it until it ends, the
// channel set changes, or nothing arrives for two heartbeats.
func (c *Client) runSSE(token string) (time.Time, error) {
	c.mu.Lock()
	select { // a change before this snapshot is part of it
	case <-c.changed:
	default:
	}
	subs := append([]*Subscription(nil), c.order...)
	positions := make([]string, len(subs))
	for i, sub := range subs {
		positions[i] = sub.pos
	}
	c.mu.Unlock()
	if len(subs) == 0 {
		return time.Time{}, errReopen
	}
	cursor, err := c.cursorFor(subs, positions)
	if err != nil {
		return time.Time{}, err
	}

	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	resp, err := c.openStream(ctx, subs, cursor, token)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	upAt := time.Now()
	c.connected()

	st := &sseStream{c: c, subs: subs, byName: make(map[string]*Subscription, len(subs)), hint: -1}
	for _, sub := range subs {
		st.byName[sub.channel] = sub
	}
	var dead, reopen atomic.Bool
	watchdog := time.AfterFunc(2*c.cfg.heartbeat, func() { dead.Store(true); cancel() })
	defer watchdog.Stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-c.changed:
			reopen.Store(true)
			cancel()
		case <-ctx.Done():
		}
	}()
	err = readSSE(resp.Body, func() { watchdog.Reset(2 * c.cfg.heartbeat) }, st.onEvent)
	cancel()
	wg.Wait()
	switch {
	case reopen.Load():
		return upAt, errReopen
	case dead.Load():
		return upAt, ErrDeadConnection
	case errors.Is(err, io.EOF):
		if st.hint >= 0 {
			return upAt, &reconnectHint{after: st.hint}
		}
		return upAt, errors.New("herald: sse: the server ended the stream")
	}
	return upAt, err
}

// cursorFor builds the Last-Event-ID of a stream: "" (live only) when no channel has a position,
// else one id per channel in order. A channel without a position (subscribed since the last
// stream) starts at the channel's newest id, which is what live only means.
func (c *Client) cursorFor(subs []*Subscription, positions []string) (string, error) {
	resume := false
	for _, p := range positions {
		resume = resume || p != ""
	}
	if !resume {
		return "", nil
	}
	for i, p := range positions {
		if p != "" {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.dialTimeout)
		info, err := channelInfo(ctx, c.api, subs[i].channel)
		cancel()
		if err != nil {
			return "", fmt.Errorf("herald: sse: position of %s: %w", subs[i].channel, err)
		}
		positions[i] = info.LastID
		if positions[i] == "" {
			positions[i] = "0"
		}
	}
	return strings.Join(positions, ","), nil
}

// openStream sends the stream request and checks the answer's status.
func (c *Client) openStream(ctx context.Context, subs []*Subscription, cursor, token string) (*http.Response, error) {
	q := url.Values{}
	for _, sub := range subs {
		q.Add("channel", sub.channel)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint(c.base, q, "v1", "sse"), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", c.cfg.userAgent)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if cursor != "" {
		req.Header.Set("Last-Event-ID", cursor)
	}
	rctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(c.cfg.dialTimeout, cancel)
	req = req.WithContext(rctx)
	resp, err := c.http.Do(req)
	if !timer.Stop() && err != nil {
		cancel()
		return nil, fmt.Errorf("herald: sse: no answer within %v: %w", c.cfg.dialTimeout, err)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("herald: sse: %w", err)
	}
	// rctx stays alive with the body; ctx (its parent) ends the stream.
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		return nil, problemFromResponse(resp)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// sseStream routes one stream's events to its subscriptions.
type sseStream struct {
	c      *Client
	subs   []*Subscription // in the order of the channel parameters
	byName map[string]*Subscription
	blocks int           // events read
	hint   time.Duration // a retry field after the first event: the server's reconnect hint; -1 none
}

// current returns the stream's subscription to channel if it is still the Client's. c.mu must
// be held.
func (st *sseStream) current(channel string) *Subscription {
	sub := st.byName[channel]
	if sub == nil || st.c.subs[channel] != sub {
		return nil
	}
	return sub
}

func (st *sseStream) onEvent(ev sseEvent) error {
	st.blocks++
	if st.blocks > 1 && ev.retry >= 0 { // the first event's retry is the stream's default
		st.hint = ev.retry
	}
	switch ev.event {
	case "herald.token-expired":
		return ErrTokenExpired
	case "herald.gap":
		var g struct {
			Channel string    `json:"channel"`
			Reason  GapReason `json:"reason"`
		}
		if json.Unmarshal([]byte(ev.data), &g) == nil {
			st.c.mu.Lock()
			if sub := st.current(g.Channel); sub != nil {
				sub.push(event{kind: evGap, reason: g.Reason})
			}
			st.c.mu.Unlock()
		}
		return nil
	}
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	if ev.data != "" {
		var m struct {
			Channel string          `json:"channel"`
			ID      string          `json:"id"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
			return fmt.Errorf("herald: sse: malformed event data: %w", err)
		}
		if sub := st.current(m.Channel); sub != nil {
			sub.pos = m.ID
			sub.push(event{kind: evMessage, msg: Message{Channel: m.Channel, ID: m.ID, Event: ev.event, Data: m.Data}})
		}
	}
	if ev.hasID {
		// The cursor: every channel's position, in parameter order.
		parts := strings.Split(ev.id, ",")
		if len(parts) == len(st.subs) {
			for i, sub := range st.subs {
				if st.current(sub.channel) == sub {
					sub.pos = parts[i]
				}
			}
		}
	}
	return nil
}

// sseEvent is one event of a stream: the fields of a block of lines ended by an empty line.
type sseEvent struct {
	id    string
	hasID bool
	event string
	data  string
	retry time.Duration // -1: none
}

// readSSE parses an event stream as EventSource does (fields id, event, data and retry; comment
// lines; LF, CRLF or CR line ends) and calls fn for each block that set a field. onRead is called
// whenever bytes arrive. It returns fn's error, or the read error that ended the stream.
func readSSE(r io.Reader, onRead func(), fn func(sseEvent) error) error {
	lr := &lineReader{r: r, onRead: onRead}
	ev := sseEvent{retry: -1}
	var data strings.Builder
	set, lines := false, 0
	for {
		line, err := lr.next()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			if set {
				ev.data = data.String()
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev, set, lines = sseEvent{retry: -1}, false, 0
			data.Reset()
			continue
		}
		if line[0] == ':' {
			continue // comment: a keep-alive
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.id, ev.hasID, set = string(value), true, true
			}
		case "event":
			ev.event, set = string(value), true
		case "data":
			if lines > 0 {
				data.WriteByte('\n')
			}
			data.Write(value)
			set, lines = true, lines+1
		case "retry":
			if ms, err := strconv.ParseUint(string(value), 10, 32); err == nil {
				ev.retry, set = time.Duration(ms)*time.Millisecond, true
			}
		}
	}
}

// lineReader splits a stream into lines ended by LF, CRLF or CR.
type lineReader struct {
	r      io.Reader
	onRead func()
	buf    []byte // unread bytes
	start  int
	skipLF bool // the last line ended with CR: a following LF belongs to it
	chunk  [8192]byte
}

func (l *lineReader) next() ([]byte, error) {
	for {
		rest := l.buf[l.start:]
		if l.skipLF && len(rest) > 0 {
			l.skipLF = false
			if rest[0] == '\n' {
				l.start++
				continue
			}
		}
		if i := bytes.IndexAny(rest, "\r\n"); i >= 0 {
			line := rest[:i]
			l.start += i + 1
			l.skipLF = rest[i] == '\r'
			return line, nil
		}
		if len(rest) > maxSSELine {
			return nil, fmt.Errorf("herald: sse: line longer than %d bytes", maxSSELine)
		}
		// Keep the partial line, read more.
		l.buf = append(l.buf[:0], rest...)
		l.start = 0
		n, err := l.r.Read(l.chunk[:])
		if n > 0 {
			if l.onRead != nil {
				l.onRead()
			}
			l.buf = append(l.buf, l.chunk[:n]...)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
}
