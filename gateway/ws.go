package gateway

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
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
	// cleaned (under subMu) says cleanup ran: the connection is closed and its subscriptions
	// released, so a subscribe still in flight must release its own rather than add it to subs.
	cleaned bool
	subs    []*subscription
	claims  *auth.Claims // nil until authenticated
	expires int64        // unix seconds; 0 when the credential does not expire
}

// decoders holds the frame decoders of connections that are between frames. A connection
// takes one when bytes arrive and gives it back once they ended on a frame boundary, so an idle
// connection keeps none.
var decoders = sync.Pool{New: func() any { return new(wsframe.Decoder) }}

// ServeWebSocket upgrades GET /v1/ws and hands the connection to the epoll core.
func (g *Gateway) ServeWebSocket(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		problem.Write(w, problem.ShuttingDown())
		return
	}
	slot, admitted := g.admit(w, r)
	if !admitted {
		return
	}
	defer func() { g.cfg.Admission.Release(slot) }() // unless the connection took it (slot = nil)
	if !g.cfg.CORS.Allowed(r.Header.Get("Origin")) {
		problem.Write(w, problem.OriginNotAllowed())
		return
	}
	var claims *auth.Claims
	// A cookie the origin may not use counts as no credential: the upgrade is accepted and
	// waits for an auth frame, which a page on another origin cannot fill with the cookie.
	if token := auth.FromRequest(r, g.cfg.CORS.CookieAllowed(r)); token != "" {
		var err error
		if claims, err = g.auth.Verify(r.Context(), token); err != nil {
			g.refuseToken(w, r, kindWS, err)
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
	if !g.adopt(&s.conn, netc, kindWS, s, slot) {
		refuseWebSocket(netc)
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

// errRateLimited closes a connection that sent more frames than the limit allows.
var errRateLimited error = closeWith(4029, "rate_limited", "too many frames: slow down and reconnect")

// onFrame handles one client frame. Every frame counts toward the frame limit (allowFrame),
// control frames included, except a subscribe that succeeds: handleSubscribe counts the ones it
// refuses.
func (s *wsSession) onFrame(op ws.OpCode, payload []byte) error {
	switch op {
	case ws.OpClose:
		return closeFromClient(payload) // ends the connection: there is nothing left to limit
	case ws.OpBinary:
		return closeWith(1003, "bad_frame", "binary frames are not supported: send JSON text frames")
	}
	if op != ws.OpText {
		return s.onControl(op, payload)
	}
	if !utf8.Valid(payload) {
		return closeWith(1007, "bad_frame", "text frame is not valid UTF-8")
	}
	f, err := parseClientFrame(payload)
	if err != nil {
		return closeWith(4000, "bad_frame", "malformed frame: "+frameProblem(err))
	}
	if f.Type != "subscribe" && !s.allowFrame() {
		return errRateLimited
	}
	return s.handle(f)
}

// onControl answers a ping and notes a pong. Both count toward the frame limit: answering
// pings costs a write each, so an unlimited stream of them would cost a worker.
func (s *wsSession) onControl(op ws.OpCode, payload []byte) error {
	if !s.allowFrame() {
		return errRateLimited
	}
	if op == ws.OpPing {
		s.write(wsframe.Frame(ws.OpPong, append([]byte(nil), payload...)), nil)
		return nil
	}
	s.subMu.Lock()
	s.pingSent = false
	s.subMu.Unlock()
	return nil
}

// closeFromClient answers the client's close frame: a valid code is echoed (no code, 1000); a
// payload of one byte, a code RFC 6455 (7.4) does not allow on the wire, or a reason that is not
// UTF-8 is a protocol error, answered with 1002.
func closeFromClient(payload []byte) error {
	if len(payload) == 0 {
		return closeWith(1000, "client_closed", "")
	}
	if len(payload) == 1 {
		return closeWith(1002, "bad_frame", "invalid close frame")
	}
	code := binary.BigEndian.Uint16(payload)
	if !validCloseCode(code) {
		return closeWith(1002, "bad_frame", "invalid close code")
	}
	if !utf8.Valid(payload[2:]) {
		return closeWith(1002, "bad_frame", "close reason is not valid UTF-8")
	}
	return closeWith(code, "client_closed", "")
}

// validCloseCode reports whether a peer may send code in a close frame: the codes RFC 6455
// defines for that (1000-1003, 1007-1011) and the ones registered since (1012-1014), and the
// ranges for libraries (3000-3999) and applications (4000-4999). 1004 is reserved, and 1005,
// 1006 and 1015 only stand for "none" or "failed" locally; everything else is unassigned.
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	}
	return code >= 3000 && code <= 4999
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
	case "subscribe":
		return s.handleSubscribe(f, s.currentClaims())
	case "unsubscribe", "publish":
	default:
		s.write(errorFrame(f.ID, "unknown-type", "unknown frame type "+quote(f.Type)), nil)
		return nil
	}
	claims := s.currentClaims()
	if claims == nil {
		s.write(errorFrame(f.ID, "unauthenticated", "send an auth frame first"), nil)
		return nil
	}
	if f.Type == "unsubscribe" {
		s.handleUnsubscribe(f)
	} else {
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
		s.gw.logRefusedToken(context.Background(), kindWS, sessionName(s.id), err)
		return authFrameClose(err)
	}
	s.subMu.Lock()
	first := s.claims == nil
	s.setClaims(claims)
	ended := s.takeForbiddenLocked(claims)
	s.subMu.Unlock()
	if first {
		s.gw.authDone(s)
	}
	// Out of the hub before anything is written: no message of those channels follows.
	for _, sub := range ended {
		s.gw.hub.remove(sub)
	}
	s.write(s.connectedFrame(f.ID), nil)
	for _, sub := range ended {
		name := sub.ch.name
		s.write(newServerFrame("error").str("code", problem.TypeForbidden).str("channel", name).
			str("message", problem.ForbiddenDetail("subscribing", name)+": the subscription ended").bytes(), nil)
	}
	return nil
}

// takeForbiddenLocked takes out of subs, and returns, the subscriptions that c does not allow:
// a token that replaces another keeps only the channels it grants itself. subMu must be held.
func (s *wsSession) takeForbiddenLocked(c *auth.Claims) []*subscription {
	var ended []*subscription
	kept := s.subs[:0]
	for _, sub := range s.subs {
		if c.CanSubscribe(sub.ch.name) {
			kept = append(kept, sub)
		} else {
			ended = append(ended, sub)
		}
	}
	clear(s.subs[len(kept):])
	s.subs = kept
	return ended
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

// handleSubscribe joins a channel, writes the answer and the replay, and turns the subscription
// live. A subscribe it refuses counts toward the frame limit (see refuse); one that succeeds does
// not: the channel cap bounds those, and a client resuming all its channels at once must not be
// closed for it.
func (s *wsSession) handleSubscribe(f clientFrame, claims *auth.Claims) error {
	since, code, msg := s.checkSubscribe(f, claims)
	if code != "" {
		return s.refuse(f.ID, code, msg)
	}
	if s.isClosed() {
		// Closed (a write found the socket reset, say) while frames it had sent were still
		// being handled: a join now would only be undone by cleanup.
		return errSessionClosed
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
		if s.gw.storeFailure(context.Background(), kindWS, "subscribe", err) {
			return s.refuse(f.ID, problem.TypeUnavailable, problem.DetailStoreUnavailable)
		}
		return s.refuse(f.ID, "internal", "the server could not complete the subscribe")
	}
	if !s.addSub(sub) {
		s.gw.hub.remove(sub) // cleanup ran during the join: this one is ours to release
		return errSessionClosed
	}

	frame := newServerFrame("subscribed").id(f.ID).str("channel", f.Channel).boolean("recovered", page.Complete)
	if !page.Complete {
		frame.str("reason", page.Gap.String())
	}
	frame.msgID("last_id", page.LastID)
	// The answer and the first page go out in one write: thousands of clients resuming at once
	// would otherwise cost a system call per missed message each.
	j := &replayJob{sub: sub, from: page.Start, first: &page, fresh: true, lead: frame.bytes()}
	s.wmu.Lock()
	if s.replay != nil {
		// Another replay is paged on this connection (or its page is queued): this one waits
		// its turn, and reads its first page again then rather than holding it meanwhile.
		s.writeLocked(j.lead, nil)
		j.lead = nil
		if len(page.Messages) > 0 {
			j.first = nil
		}
	}
	s.wmu.Unlock()
	s.startReplays(j)
	return nil
}

// replaying implements replayWriter: a replay stops once its subscription ended (unsubscribe, a
// token that no longer allows it, the connection's cleanup).
func (s *wsSession) replaying(sub *subscription) bool {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	return !s.cleaned && s.find(sub.ch.name) == sub
}

// writePage implements replayWriter.
func (s *wsSession) writePage(j *replayJob, lead []byte, gap broker.GapReason, msgs []broker.Message) bool {
	out := lead
	if gap != broker.GapNone {
		out = append(out, s.gapFrame(j.sub, gap)...)
	}
	for _, m := range msgs {
		out = appendWSMessage(out, m)
		j.from = m.ID
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeReplayLocked(out)
}

// caughtUp implements replayWriter: the position is the replay's own (through).
func (s *wsSession) caughtUp(*replayJob, broker.ID) {}

// replaysDone implements replayWriter.
func (s *wsSession) replaysDone() {}

// checkSubscribe validates a subscribe before any broker work: it returns where the
// subscription starts (nil: live only), or the error code and message that refuse it.
func (s *wsSession) checkSubscribe(f clientFrame, claims *auth.Claims) (since *broker.ID, code, msg string) {
	switch {
	case claims == nil:
		return nil, "unauthenticated", "send an auth frame first"
	case !broker.ValidChannel(f.Channel):
		return nil, "invalid-channel", "invalid channel name " + quote(f.Channel)
	case !claims.CanSubscribe(f.Channel):
		return nil, problem.TypeForbidden, problem.ForbiddenDetail("subscribing", f.Channel)
	}
	if f.Since != nil {
		id, err := broker.ParseID(*f.Since)
		if err != nil {
			return nil, "invalid-since", "since must be a message id such as 1732700000000-0"
		}
		since = &id
	}
	s.subMu.Lock()
	dup, full := s.find(f.Channel) != nil, len(s.subs) >= s.gw.cfg.MaxChannelsPerConn
	s.subMu.Unlock()
	switch {
	case dup:
		return nil, "already-subscribed", "already subscribed to " + f.Channel
	case full:
		return nil, "too-many-channels", "a connection may subscribe to at most " + itoa(s.gw.cfg.MaxChannelsPerConn) + " channels"
	}
	return since, "", ""
}

// refuse answers a subscribe with an error frame, counting the frame toward the limit: refused
// subscribes cost little each but are not bounded by the channel cap, so a client must not be
// able to send them without end. Past the limit the connection is closed instead.
func (s *wsSession) refuse(id json.Number, code, msg string) error {
	if !s.allowFrame() {
		return errRateLimited
	}
	s.write(errorFrame(id, code, msg), nil)
	return nil
}

// errSessionClosed stops the handling of a closed connection's remaining frames. Its cause is
// never sent: the connection is closed already.
var errSessionClosed error = &causeError{causeIO}

// addSub adds sub to the session's subscriptions and reports true, or reports false once
// cleanup ran: then nothing would ever release it, and the caller must.
func (s *wsSession) addSub(sub *subscription) bool {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.cleaned {
		return false
	}
	s.subs = append(s.subs, sub)
	return true
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
	if p := s.gw.cfg.PublishLimiter.Take(claims.Identity(), 1); p != nil {
		s.gw.metrics.PublishErrors.WithLabelValues("rate_limited").Inc()
		s.write(rateLimitedFrame(f.ID, p.RetryAfter), nil)
		return
	}
	req.IdempotencyKey = claims.IdempotencyKey(req.IdempotencyKey) // the credential's own
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

// gap implements sink: {"type":"gap","channel":...,"reason":...} tells the client to refetch
// its state.
func (s *wsSession) gap(sub *subscription, reason broker.GapReason) {
	s.write(s.gapFrame(sub, reason), nil)
}

func (s *wsSession) gapFrame(sub *subscription, reason broker.GapReason) []byte {
	return newServerFrame("gap").str("channel", sub.ch.name).str("reason", reason.String()).bytes()
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

// cleanup releases the subscriptions of the closed connection. A subscribe in flight meanwhile
// sees cleaned and releases its own (see addSub).
func (s *wsSession) cleanup() {
	s.subMu.Lock()
	subs := s.subs
	s.subs = nil
	s.cleaned = true
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

// frameProblem says what is wrong with a frame that parseClientFrame refused, in the protocol's
// terms: encoding/json's own messages name Go types and struct fields, which are no business of
// the client's.
func frameProblem(err error) string {
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, errBadFrameID):
		return err.Error()
	case errors.As(err, &te) && te.Field != "":
		return "field " + quote(te.Field) + " has the wrong type"
	}
	return "not a JSON object"
}
