package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// What a client is told when something fails is decided by package problem (the same answers
// the HTTP API gives); what exactly failed goes to the log. Error text from the verifier or
// the broker never reaches a client: it may name the configuration (the issuer, the key types)
// or the message store (its address, its error replies).

// refuseToken answers a subscribe request whose credential was refused, and logs why.
func (g *Gateway) refuseToken(w http.ResponseWriter, r *http.Request, kind sinkKind, err error) {
	g.logRefusedToken(r.Context(), kind, r.RemoteAddr, err)
	problem.Write(w, problem.Auth(err))
}

// logRefusedToken logs the verifier's reason for refusing a token (it never holds the token).
// who is the client's address, or the session of an auth frame. A missing token is no news and
// is not logged.
func (g *Gateway) logRefusedToken(ctx context.Context, kind sinkKind, who string, err error) {
	if errors.Is(err, auth.ErrNoToken) {
		return
	}
	g.log.InfoContext(ctx, "token refused", "transport", kindName(kind), "client", who, "err", err)
}

// authFrameClose is the close cause for an auth frame whose token was refused: 4001 when it has
// expired, 1008 otherwise, with the generic text of problem.Auth as the reason.
func authFrameClose(err error) error {
	p := problem.Auth(err)
	if p.Type == problem.TypeTokenExpired {
		return closeWith(4001, "token_expired", p.Detail)
	}
	return closeWith(1008, "auth_failed", p.Detail)
}

// storeFailure logs why a broker call made for a client (op: "subscribe", "history") failed and
// says what the client is told: retryable when the store cannot be reached now (unavailable,
// closed, out of time), otherwise not (retrying would fail the same way). Clients never get the
// error's text: a broker's errors may carry Valkey's replies (commands, script hashes).
func (g *Gateway) storeFailure(ctx context.Context, kind sinkKind, op string, err error) (retryable bool) {
	retryable = errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded)
	level := slog.LevelWarn
	if !retryable {
		level = slog.LevelError
	}
	g.log.Log(ctx, level, "message store call failed", "transport", kindName(kind), "op", op, "err", err)
	return retryable
}

// storeProblem answers a subscribe request (SSE, long-poll) whose broker call failed: 503
// unavailable with Retry-After, or 500 internal (see storeFailure).
func (g *Gateway) storeProblem(w http.ResponseWriter, r *http.Request, kind sinkKind, op string, err error) {
	if g.storeFailure(r.Context(), kind, op, err) {
		problem.Write(w, problem.StoreUnavailable())
		return
	}
	problem.Write(w, problem.New(http.StatusInternalServerError, "internal", "the server could not complete the request"))
}
