package herald

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// maxWSMessage bounds one server message (the gateway's messages are at most its
// --max-message-bytes plus a small envelope).
const maxWSMessage = 4 << 20

// wsSession is one WebSocket connection of a Client.
//
// The run goroutine (the Client's) reads and handles frames; the writer goroutine owns every
// write to conn. Other goroutines hand frames to the writer through out, never blocking: a
// session whose queue is full is closed and replaced (its subscriptions resume).
type wsSession struct {
	c      *Client
	conn   net.Conn
	br     *bufio.Reader // reads conn, starting with the bytes that arrived with the handshake
	pooled bool          // br belongs to the dialer's pool
	out    chan []byte   // compiled, masked frames for the writer
	ctx    context.Context
	cancel context.CancelFunc // ends the session's goroutines
	wg     sync.WaitGroup     // the writer and token refreshes

	nextID     atomic.Int64
	refreshing atomic.Bool // a refresh goroutine runs; it alone uses token
	token      string      // the credential the connection is authenticated with

	// guarded by c.mu
	pending map[int64]*Subscription // subscribe frame id -> its subscription

	upAt time.Time // read side only: when the connected frame arrived
}

// clientFrame is any frame the client sends.
type clientFrame struct {
	Type    string  `json:"type"`
	ID      int64   `json:"id,omitempty"`
	Token   string  `json:"token,omitempty"`
	Channel string  `json:"channel,omitempty"`
	Since   *string `json:"since,omitempty"`
}

// serverFrame is any frame the server sends; fields a type does not use are empty. id is a
// number answering a client frame, or a message's id string.
type serverFrame struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id"`
	Channel   string          `json:"channel"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Recovered *bool           `json:"recovered"`
	LastID    string          `json:"last_id"`
	Reason    GapReason       `json:"reason"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
}

// runWS dials, then serves the connection until it ends.
func (c *Client) runWS(token string) (time.Time, error) {
	h := http.Header{"User-Agent": {c.cfg.userAgent}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	var refused *ProblemError
	d := ws.Dialer{
		Timeout: c.cfg.dialTimeout,
		Header:  ws.HandshakeHeaderHTTP(h),
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			refused = handshakeProblem(status, resp)
		},
	}
	conn, br, _, err := d.Dial(c.ctx, c.wsURL)
	if err != nil {
		if refused != nil {
			return time.Time{}, refused
		}
		return time.Time{}, fmt.Errorf("herald: websocket: %w", err)
	}
	s := &wsSession{c: c, conn: conn, br: br, pooled: br != nil, token: token,
		out: make(chan []byte, 1024), pending: make(map[int64]*Subscription)}
	if s.br == nil {
		s.br = bufio.NewReaderSize(conn, 4096)
	}
	s.ctx, s.cancel = context.WithCancel(c.ctx)
	return s.run()
}

// handshakeProblem reads the problem document of a refused upgrade.
func handshakeProblem(status int, resp io.Reader) *ProblemError {
	r, err := http.ReadResponse(bufio.NewReader(io.LimitReader(resp, 64<<10)), nil)
	if err != nil {
		return &ProblemError{Status: status, Title: http.StatusText(status)}
	}
	defer r.Body.Close()
	return problemFromResponse(r)
}

func (s *wsSession) run() (time.Time, error) {
	s.wg.Add(1)
	go s.writeLoop()
	defer s.end()

	s.c.mu.Lock()
	s.c.sess = s
	for _, sub := range s.c.order {
		s.subscribe(sub)
	}
	s.c.mu.Unlock()

	for {
		p, err := s.readMessage()
		if err != nil {
			return s.upAt, err
		}
		if err := s.handle(p); err != nil {
			return s.upAt, err
		}
	}
}

// end detaches the session from the Client and stops its goroutines.
func (s *wsSession) end() {
	s.c.mu.Lock()
	if s.c.sess == s {
		s.c.sess = nil
	}
	for _, sub := range s.c.order {
		sub.active = false
	}
	s.c.mu.Unlock()
	s.cancel()
	s.conn.Close()
	s.wg.Wait()
	if s.pooled {
		ws.PutReader(s.br)
	}
}

// subscribe sends sub's subscribe frame, resuming from its position. c.mu must be held.
func (s *wsSession) subscribe(sub *Subscription) {
	id := s.nextID.Add(1)
	s.pending[id] = sub
	f := clientFrame{Type: "subscribe", ID: id, Channel: sub.channel}
	if sub.pos != "" {
		since := sub.pos
		f.Since = &since
	}
	s.send(f)
}

// unsubscribe sends sub's unsubscribe frame. c.mu must be held.
func (s *wsSession) unsubscribe(sub *Subscription) {
	for id, p := range s.pending {
		if p == sub {
			delete(s.pending, id)
		}
	}
	s.send(clientFrame{Type: "unsubscribe", ID: s.nextID.Add(1), Channel: sub.channel})
}

// send queues a frame for the writer without blocking.
func (s *wsSession) send(f clientFrame) {
	payload, _ := json.Marshal(f) // cannot fail: strings and numbers only
	frame := ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame(payload)))
	s.queue(frame)
}

func (s *wsSession) queue(frame []byte) {
	select {
	case s.out <- frame:
	default:
		s.conn.Close() // the writer cannot keep up: start over on a new connection
	}
}

// writeLoop writes queued frames and a ping every heartbeat; when the Client closes it says
// goodbye with a close frame.
func (s *wsSession) writeLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.c.cfg.heartbeat)
	defer t.Stop()
	for {
		var frame []byte
		select {
		case frame = <-s.out:
		case <-t.C:
			payload, _ := json.Marshal(clientFrame{Type: "ping", ID: s.nextID.Add(1)})
			frame = ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame(payload)))
		case <-s.ctx.Done():
			if s.c.ctx.Err() != nil { // closing, not a session ending on its own
				body := ws.NewCloseFrameBody(ws.StatusNormalClosure, "")
				s.write(ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewCloseFrame(body))), time.Second)
			}
			s.conn.Close()
			return
		}
		if !s.write(frame, s.c.cfg.dialTimeout) {
			s.conn.Close()
			return
		}
	}
}

func (s *wsSession) write(frame []byte, timeout time.Duration) bool {
	_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := s.conn.Write(frame)
	return err == nil
}

// readMessage returns the next text message, answering pings on the way. A close frame ends
// it with a *CloseError; nothing received for two heartbeats ends it with ErrDeadConnection.
func (s *wsSession) readMessage() ([]byte, error) {
	var msg []byte
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(2 * s.c.cfg.heartbeat))
		h, err := ws.ReadHeader(s.br)
		if err != nil {
			return nil, s.readError(err)
		}
		if h.Length > maxWSMessage || int64(len(msg))+h.Length > maxWSMessage {
			return nil, fmt.Errorf("herald: websocket: server message over %d bytes", maxWSMessage)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(s.br, p); err != nil {
			return nil, s.readError(err)
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			s.queue(ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewPongFrame(p))))
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			if code == 0 {
				code = ws.StatusNoStatusRcvd
			}
			return nil, &CloseError{Code: int(code), Reason: reason}
		case ws.OpBinary:
			return nil, errors.New("herald: websocket: unexpected binary message")
		}
		msg = append(msg, p...)
		if h.Fin {
			return msg, nil
		}
	}
}

func (s *wsSession) readError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && s.c.ctx.Err() == nil {
		return ErrDeadConnection
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("herald: websocket: connection closed without a close frame: %w", err)
	}
	return fmt.Errorf("herald: websocket: %w", err)
}

// handle acts on one server frame. An error ends the session.
func (s *wsSession) handle(p []byte) error {
	var f serverFrame
	if err := json.Unmarshal(p, &f); err != nil {
		return fmt.Errorf("herald: websocket: malformed server frame: %w", err)
	}
	switch f.Type {
	case "connected":
		if s.upAt.IsZero() {
			s.upAt = time.Now()
			s.c.connected()
		}
	case "subscribed":
		s.onSubscribed(f)
	case "message":
		s.onMessage(f)
	case "gap":
		s.c.mu.Lock()
		if sub := s.c.subs[f.Channel]; sub != nil && sub.active {
			sub.push(event{kind: evGap, reason: f.Reason})
		}
		s.c.mu.Unlock()
	case "error":
		return s.onError(f)
	case "refresh":
		s.refresh()
	}
	// pong, ack, unsubscribed and frame types added later need nothing.
	return nil
}

func frameID(raw json.RawMessage) int64 {
	n, _ := strconv.ParseInt(string(raw), 10, 64)
	return n
}

func (s *wsSession) onSubscribed(f serverFrame) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	id := frameID(f.ID)
	sub := s.pending[id]
	delete(s.pending, id)
	if sub == nil || s.c.subs[sub.channel] != sub {
		return // unsubscribed meanwhile
	}
	sub.active = true
	gap := f.Recovered != nil && !*f.Recovered
	if sub.pos == "" || gap {
		// Live only: last_id is the position to resume from. After a gap the replay (if any)
		// follows and moves the position on; without one, last_id is where the log is now.
		sub.pos = f.LastID
	}
	if gap {
		sub.push(event{kind: evGap, reason: f.Reason})
	}
}

func (s *wsSession) onMessage(f serverFrame) {
	var id string
	if err := json.Unmarshal(f.ID, &id); err != nil {
		return
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	sub := s.c.subs[f.Channel]
	if sub == nil || !sub.active {
		return // not (or no longer) subscribed
	}
	sub.pos = id
	sub.push(event{kind: evMessage, msg: Message{Channel: f.Channel, ID: id, Event: f.Event, Data: f.Data}})
}

// onError handles an error frame. A refused subscribe is final for codes a retry cannot fix;
// for the others (unavailable: the store is down) the session ends and the reconnect retries.
func (s *wsSession) onError(f serverFrame) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	id := frameID(f.ID)
	sub := s.pending[id]
	if sub == nil {
		return nil // an answer to an unsubscribe or ping of no consequence
	}
	delete(s.pending, id)
	err := &SubscribeError{Channel: sub.channel, Code: f.Code, Message: f.Message}
	switch f.Code {
	case "unavailable", "unauthenticated":
		return err
	}
	if s.c.subs[sub.channel] == sub {
		s.c.removeLocked(sub)
		sub.push(event{kind: evRefused, err: err})
	}
	return nil
}

// refresh answers the server's refresh frame: a fresh token from the token function, sent in an
// auth frame. A failure is reported; the server then closes with 4001 when the token expires,
// and the reconnect asks the token function again.
func (s *wsSession) refresh() {
	if s.c.cfg.token == nil || s.refreshing.Swap(true) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(s.ctx, s.c.cfg.dialTimeout)
		defer cancel()
		tok, err := s.c.cfg.token(ctx)
		switch {
		case err != nil && s.ctx.Err() == nil:
			s.c.reportError(fmt.Errorf("herald: token refresh: %w", err))
		case err == nil && tok == s.token:
			// A fixed credential: sending it again would only make the server ask again. The
			// connection ends with 4001 at expiry and the reconnect tries the token function.
			s.c.reportError(errors.New("herald: token refresh: the token function returned the token in use"))
		case err == nil:
			s.token = tok
			s.send(clientFrame{Type: "auth", ID: s.nextID.Add(1), Token: tok})
		}
	}()
}
