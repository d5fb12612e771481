package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// writeAuthProblem answers a subscribe request whose credential was refused.
func writeAuthProblem(w http.ResponseWriter, err error) {
	code := "invalid-token"
	switch {
	case errors.Is(err, auth.ErrNoToken):
		code = "unauthorized"
	case errors.Is(err, auth.ErrExpired):
		code = "token-expired"
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	problem.Write(w, problem.New(http.StatusUnauthorized, code, authMessage(err)))
}

// authMessage is what a client is told about a refused credential. The auth package's errors
// describe the problem without the token itself, so they are safe to return.
func authMessage(err error) string {
	if errors.Is(err, auth.ErrNoToken) {
		return "a token is required: Authorization: Bearer <token>, access_token or the herald_token cookie"
	}
	return err.Error()
}

// brokerFailure logs why a subscriber's broker call (what: "subscribe", "history") failed and
// says what the client is told: retryable when the store cannot be reached now (unavailable,
// closed, out of time), otherwise not (retrying would fail the same way). Clients never get the
// error's text: a broker's errors may carry Valkey's replies (commands, script hashes).
func (g *Gateway) brokerFailure(what string, err error) (retryable bool) {
	retryable = errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded)
	if retryable {
		g.log.Warn("broker call failed", "op", what, "err", err)
	} else {
		g.log.Error("broker call failed", "op", what, "err", err)
	}
	return retryable
}

// brokerProblem is the answer of a subscribe request (SSE, long-poll) whose broker call failed:
// 503 unavailable with Retry-After, or 500 internal (see brokerFailure).
func (g *Gateway) brokerProblem(what string, err error) *problem.Details {
	if g.brokerFailure(what, err) {
		return unavailable("the message store is unavailable; retry shortly")
	}
	return problem.New(http.StatusInternalServerError, "internal", "the server could not complete the request")
}
