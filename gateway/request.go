package gateway

import (
	"net/http"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// requestError is a refused subscribe request, answered as problem+json before any stream starts.
type requestError = problem.Details

func badRequest(code, detail string) *requestError {
	return problem.New(http.StatusBadRequest, code, detail)
}

// streamRequest is a parsed SSE or long-poll request.
type streamRequest struct {
	channels []string
	since    []*broker.ID // nil, or a nil element: live only
	claims   *auth.Claims
}

// parseStreamRequest checks what SSE and long-poll share: the channels, the credential and its
// permissions, and the resume cursor (the Last-Event-ID header first, then the since parameter).
// It writes the problem itself and returns nil when the request is refused. kind is kindSSE or
// kindPoll.
func (g *Gateway) parseStreamRequest(w http.ResponseWriter, r *http.Request, kind sinkKind) *streamRequest {
	if g.draining.Load() {
		problem.Write(w, problem.ShuttingDown())
		return nil
	}
	q := r.URL.Query()
	channels, perr := requestChannels(q["channel"], g.cfg.MaxChannelsPerConn)
	if perr != nil {
		problem.Write(w, perr)
		return nil
	}
	if !g.cfg.CORS.Allowed(r.Header.Get("Origin")) {
		problem.Write(w, problem.OriginNotAllowed())
		return nil
	}
	claims, err := g.auth.Verify(r.Context(), auth.FromRequest(r, g.cfg.CORS.CookieAllowed(r)))
	if err != nil {
		g.refuseToken(w, r, kind, err)
		return nil
	}
	for _, ch := range channels {
		if !claims.CanSubscribe(ch) {
			problem.Write(w, problem.Forbidden("subscribing", ch))
			return nil
		}
	}
	req := &streamRequest{channels: channels, claims: claims}
	cursor, source := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if cursor == "" {
		cursor, source = q.Get("since"), "since"
	}
	if cursor != "" {
		if req.since, err = parseCursor(cursor, len(channels)); err != nil {
			problem.Write(w, badRequest("invalid-cursor", source+" must be a message id, or with several channels one id (or nothing, for live only) per channel joined by commas in the order of the channel parameters"))
			return nil
		}
	}
	return req
}

// sinceOf returns the resume position of the i-th channel, or nil for live only.
func (r *streamRequest) sinceOf(i int) *broker.ID {
	if r.since == nil {
		return nil
	}
	return r.since[i]
}
