package gateway

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/wsframe"
)

// wsSession is one WebSocket connection speaking protocol v1.
//
// The read side (dec, the frame handlers, rate window) runs on the worker that owns the current
// event. subMu guards subs, claims and the auth fields, which the heartbeat and cleanup also read.
type wsSession struct {
	conn

	// read side only
	dec         *wsframe.Decoder // nil between frames: see onData
	windowStart int64            // rate limiting of client frames: the window's first tick
	subMu       sync.Mutex
	frames      int32 // client frames in the window; read side only (beside subMu to save padding)
	refreshSent bool
	pingSent    bool // a ping is outstanding; guarded by subMu
	subs        []*subscription
	claims      *auth.Claims // nil until authenticated
	expires     int64        // unix seconds; 0 when the credential does not expire
}

// decoders holds the frame decoders of connections that are between frames. A connection
// takes one when bytes arrive and gives it back once they ended on a frame boundary, so an idle
// connection keeps none.
var decoders = sync.Pool{New: func() any { return new(wsframe.Decoder) }}

// ServeWebSocket upgrades GET /v1/ws and hands the connection to the epoll core.
func (g *Gateway) ServeWebSocket(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		problem.Write(w, unavailable("the gateway is shutting down; reconnect to another node"))
		return
	}
	slot, admitted := g.admit(w, r)
	if !admitted {
		return
	}
	defer func() { g.cfg.Admission.Release(slot) }() // unless the connection took it (slot = nil)
	if !g.cfg.CORS.Allowed(r.Header.Get("Origin")) {
		problem.Write(w, problem.New(http.StatusForbidden, "origin-not-allowed", "origin "+r.Header.Get("Origin")+" is not allowed"))
		return
	}
	var claims *auth.Claims
	if token := auth.FromRequest(r); token != "" {
		var err error
		if claims, err = g.auth.Verify(r.Context(), token); err != nil {
			writeAuthProblem(w, err)
			return
		}
	}
	netc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		// The upgrader has hijacked the connection and answered 400 (or 426) itself; the
		// connection is ours to close.
		if netc != nil {
			netc.Close()
		}
		return
	}
	var buffered []byte
	if n := rw.Reader.Buffered(); n > 0 {
		buffered, _ = rw.Reader.Peek(n)
		buffered = append([]byte(nil), buffered...)
	}
	s := &wsSession{}
	g.holdAdmitted(&s.conn, slot)
	if !g.adopt(&s.conn, netc, kindWS, s) {
		g.unholdAdmitted(&s.conn)
		return
	}
	slot = nil // the connection holds it; the janitor releases it
	if claims != nil {
		s.subMu.Lock()
		s.setClaims(claims)
		s.subMu.Unlock()
		s.write(s.connectedFrame(""), nil)
	} else {
		g.awaitAuth(s)
	}
	if len(buffered) > 0 {
		if err := s.onData(buffered); err != nil {
			s.close(causeFromError(err))
			return
		}
	}
	g.start(&s.conn)
}

func (s *wsSession) onData(p []byte) error {
	if s.dec == nil {
		s.dec = decoders.Get().(*wsframe.Decoder)
		s.dec.MaxMessage = s.gw.cfg.MaxFrameBytes
	}
	err := s.dec.Feed(p, s.onFrame)
	if err == nil && !s.dec.Pending() {
		decoders.Put(s.dec) // holds no bytes between frames (see Decoder)
		s.dec = nil
	}
	// After an error the decoder is dropped with the connection: it must not be fed again.
	var pe *wsframe.ProtocolError
	switch {
	case errors.Is(err, wsframe.ErrTooBig):
		return closeWith(1009, "bad_frame", "message larger than "+itoa(s.gw.cfg.MaxFrameBytes)+" bytes")
	case errors.As(err, &pe):
		return closeWith(1002, "bad_frame", pe.Reason)
	}
	return err
}

// Close causes of the WebSocket protocol.
func closeWith(code uint16, metric, reason string) error {
	return &causeError{closeCause{code: code, reason: reason, metric: metric}}
}

func (s *wsSession) onFrame(op ws.OpCode, payload []byte) error {
	switch op {
	case ws.OpPing:
		s.write(wsframe.Frame(ws.OpPong, append([]byte(nil), payload...)), nil)
		return nil
	case ws.OpPong:
		s.subMu.Lock()
		s.pingSent = false
		s.subMu.Unlock()
		return nil
	case ws.OpClose:
		code := uint16(1000)
		if len(payload) >= 2 {
			code = binary.BigEndian.Uint16(payload)
		}
		return closeWith(code, "client_closed", "")
	case ws.OpBinary:
		return closeWith(1003, "bad_frame", "binary frames are not supported: send JSON text frames")
	}
	if !utf8.Valid(payload) {
		return closeWith(1007, "bad_frame", "text frame is not valid UTF-8")
	}
	f, err := parseClientFrame(payload)
	if err != nil {
		return closeWith(4000, "bad_frame", "malformed frame: "+jsonProblem(err))
	}
	if !s.freeFrame(f) && !s.allowFrame() {
		return closeWith(4029, "rate_limited", "too many frames: slow down and reconnect")
	}
	return s.handle(f)
}

// freeFrame reports whether f is exempt from the frame limit: a subscribe while the connection
// has room for another channel. Subscribing is bounded by the channel cap anyway, and a client
// that resumes 128 channels at once must not be closed for it.
func (s *wsSession) freeFrame(f clientFrame) bool {
	if f.Type != "subscribe" {
		return false
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	return len(s.subs) < s.gw.cfg.MaxChannelsPerConn
}

// allowFrame counts a client frame against the window limit.
func (s *wsSession) allowFrame() bool {
	now := s.gw.wheel.now()
	window := int64(s.gw.cfg.FrameRateWindow / s.gw.wheel.step)
	if now-s.windowStart >= max(window, 1) {
		s.windowStart, s.frames = now, 0
	}
	if int(s.frames) <= s.gw.cfg.FrameRateLimit {
		s.frames++ // stops counting past the limit, so it cannot overflow
	}
	return int(s.frames) <= s.gw.cfg.FrameRateLimit
}

func (s *wsSession) handle(f clientFrame) error {
	switch f.Type {
	case "auth":
		return s.handleAuth(f)
	case "ping":
		s.write(newServerFrame("pong").id(f.ID).bytes(), nil)
		return nil
	case "subscribe", "unsubscribe", "publish":
	default:
		s.write(errorFrame(f.ID, "unknown-type", "unknown frame type "+quote(f.Type)), nil)
		return nil
	}
	claims := s.currentClaims()
	if claims == nil {
		s.write(errorFrame(f.ID, "unauthenticated", "send an auth frame first"), nil)
		return nil
	}
	switch f.Type {
	case "subscribe":
		s.handleSubscribe(f, claims)
	case "unsubscribe":
		s.handleUnsubscribe(f)
	default:
		s.handlePublish(f, claims)
	}
	return nil
}

func (s *wsSession) handleAuth(f clientFrame) error {
	var claims *auth.Claims
	var err error
	// Verifying may fetch a key set over the network.
	s.gw.poller.Blocking(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		claims, err = s.gw.auth.Verify(ctx, f.Token)
	})
	if err != nil {
		if errors.Is(err, auth.ErrExpired) {
			return closeWith(4001, "token_expired", "token expired")
		}
		return closeWith(1008, "auth_failed", "authentication failed: "+authMessage(err))
	}
	s.subMu.Lock()
	first := s.claims == nil
	s.setClaims(claims)
	s.subMu.Unlock()
	if first {
		s.gw.authDone(s)
	}
	s.write(s.connectedFrame(f.ID), nil)
	return nil
}

// setClaims installs a (new) credential; subMu must be held.
func (s *wsSession) setClaims(c *auth.Claims) {
	s.claims = c
	s.expires = 0
	if !c.Expiry.IsZero() {
		s.expires = c.Expiry.Unix()
	}
	s.refreshSent = false
}

func (s *wsSession) currentClaims() *auth.Claims {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	return s.claims
}

func (s *wsSession) connectedFrame(id json.Number) []byte {
	f := newServerFrame("connected").id(id).str("session", sessionName(s.id))
	s.subMu.Lock()
	exp := s.expires
	s.subMu.Unlock()
	if exp != 0 {
		f.num("expires_in", max(0, exp-time.Now().Unix()))
	}
	return f.bytes()
}

func (s *wsSession) handleSubscribe(f clientFrame, claims *auth.Claims) {
	if !broker.ValidChannel(f.Channel) {
		s.write(errorFrame(f.ID, "invalid-channel", "invalid channel name "+quote(f.Channel)), nil)
		return
	}
	if !claims.CanSubscribe(f.Channel) {
		s.write(errorFrame(f.ID, "forbidden", "token does not allow channel "+f.Channel), nil)
		return
	}
	var since *broker.ID
	if f.Since != nil {
		id, err := broker.ParseID(*f.Since)
		if err != nil {
			s.write(errorFrame(f.ID, "invalid-since", "since must be a message id such as 1732700000000-0"), nil)
			return
		}
		since = &id
	}
	s.subMu.Lock()
	dup, full := s.find(f.Channel) != nil, len(s.subs) >= s.gw.cfg.MaxChannelsPerConn
	s.subMu.Unlock()
	if dup {
		s.write(errorFrame(f.ID, "already-subscribed", "already subscribed to "+f.Channel), nil)
		return
	}
	if full {
		s.write(errorFrame(f.ID, "too-many-channels", "a connection may subscribe to at most "+itoa(s.gw.cfg.MaxChannelsPerConn)+" channels"), nil)
		return
	}
	var (
		sub  *subscription
		page broker.HistoryPage
		err  error
	)
	s.gw.poller.Blocking(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.gw.cfg.BrokerTimeout)
		defer cancel()
		sub, page, err = s.gw.join(ctx, f.Channel, s, kindWS, since)
	})
	if err != nil {
		s.write(errorFrame(f.ID, "unavailable", "cannot subscribe now: "+err.Error()+"; retry later"), nil)
		return
	}
	s.subMu.Lock()
	s.subs = append(s.subs, sub)
	s.subMu.Unlock()

	frame := newServerFrame("subscribed").id(f.ID).str("channel", f.Channel).boolean("recovered", page.Complete)
	frame.msgID("last_id", page.LastID)
	// The answer and the replay go out in one buffer and one write: thousands of clients
	// resuming at once would otherwise cost a system call per missed message each.
	out := frame.bytes()
	through := since
	for _, m := range page.Messages {
		out = appendWSMessage(out, m)
		through = &m.ID
	}
	s.wmu.Lock()
	s.writeReplayLocked(out)
	s.wmu.Unlock()
	s.gw.replayed(len(page.Messages))
	if through == nil || through.Less(page.LastID) {
		through = &page.LastID
	}
	if err := s.gw.hub.goLive(sub, *through); err != nil {
		s.close(causeSlow)
	}
}

// find returns the subscription to channel; subMu must be held.
func (s *wsSession) find(channel string) *subscription {
	for _, sub := range s.subs {
		if sub.ch.name == channel {
			return sub
		}
	}
	return nil
}

func (s *wsSession) handleUnsubscribe(f clientFrame) {
	s.subMu.Lock()
	sub := s.find(f.Channel)
	if sub != nil {
		for i, x := range s.subs {
			if x == sub {
				s.subs = append(s.subs[:i], s.subs[i+1:]...)
				break
			}
		}
	}
	s.subMu.Unlock()
	if sub == nil {
		s.write(errorFrame(f.ID, "not-subscribed", "not subscribed to "+quote(f.Channel)), nil)
		return
	}
	s.gw.hub.remove(sub)
	s.write(newServerFrame("unsubscribed").id(f.ID).str("channel", f.Channel).bytes(), nil)
}

func (s *wsSession) handlePublish(f clientFrame, claims *auth.Claims) {
	req := broker.PublishRequest{Channel: f.Channel, Event: f.Event, Data: f.Data, IdempotencyKey: f.IdempotencyKey}
	if code, msg := s.gw.checkPublish(req, claims); code != "" {
		s.write(errorFrame(f.ID, code, msg), nil)
		return
	}
	var (
		res        broker.PublishResult
		err        error
		backlogged bool
	)
	s.gw.poller.Blocking(func() {
		// As the HTTP API does: at saturation the publisher waits for the fan-out, then is told
		// to retry, rather than its messages piling up behind the node's delivery.
		if backlogged = !s.gw.AwaitFanOutRoom(context.Background(), s.gw.cfg.FanOutWait); backlogged {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.gw.cfg.BrokerTimeout)
		defer cancel()
		res, err = s.gw.broker.Publish(ctx, req)
	})
	if backlogged {
		s.gw.metrics.PublishErrors.WithLabelValues("backlogged").Inc()
		s.write(errorFrame(f.ID, "backlogged", "this node cannot deliver messages as fast as they are published; retry (with the same idempotency_key) shortly"), nil)
		return
	}
	if err != nil {
		s.gw.metrics.PublishErrors.WithLabelValues("broker").Inc()
		s.write(errorFrame(f.ID, "unavailable", "publish failed; retry with the same idempotency_key"), nil)
		return
	}
	if !res.Duplicate {
		s.gw.metrics.Published.Inc()
	}
	s.write(newServerFrame("ack").id(f.ID).msgID("message_id", res.ID).bytes(), nil)
}

// deliver implements sink.
func (s *wsSession) deliver(sub *subscription, ds []*delivery, v *iovecs) {
	for _, d := range ds {
		v.add(d.ws)
	}
	s.wmu.Lock()
	s.writevLocked(v)
	s.wmu.Unlock()
	v.reset()
}

// gap implements sink: {"type":"gap","channel":...} tells the client to refetch its state.
func (s *wsSession) gap(sub *subscription) {
	s.write(newServerFrame("gap").str("channel", sub.ch.name).bytes(), nil)
}

func (s *wsSession) closeFrame(c closeCause) []byte {
	if c.code == 0 {
		return nil
	}
	return wsframe.CloseFrame(ws.StatusCode(c.code), c.reason)
}

func (s *wsSession) heartbeat(now int64) {
	s.subMu.Lock()
	dead := s.pingSent && now-s.lastSeen.Load() >= int64(len(s.gw.wheel.slots))
	s.pingSent = true
	exp, warned := s.expires, s.refreshSent
	s.subMu.Unlock()
	if dead {
		s.close(closeCause{code: 1001, reason: "no pong", metric: "dead_peer"})
		return
	}
	if exp != 0 {
		left := exp - time.Now().Unix()
		switch {
		case left <= 0:
			s.close(closeCause{code: 4001, reason: "token expired", metric: "token_expired"})
			return
		case !warned && left <= int64(s.gw.cfg.RefreshBefore/time.Second):
			s.subMu.Lock()
			s.refreshSent = true
			s.subMu.Unlock()
			s.write(newServerFrame("refresh").num("expires_in", left).bytes(), nil)
		}
	}
	s.write(pingFrame, nil)
}

var pingFrame = wsframe.Frame(ws.OpPing, nil)

func (s *wsSession) cleanup() {
	s.subMu.Lock()
	subs := s.subs
	s.subs = nil
	s.subMu.Unlock()
	for _, sub := range subs {
		s.gw.hub.remove(sub)
	}
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return string(appendJSONString(nil, s))
}

func jsonProblem(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}
