package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
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

// storeUnavailable answers a subscribe request that the message store could not serve, and
// logs the store's error.
func (g *Gateway) storeUnavailable(w http.ResponseWriter, r *http.Request, kind sinkKind, err error) {
	g.logStoreError(r.Context(), kind, err)
	problem.Write(w, problem.StoreUnavailable())
}

// logStoreError logs a broker error met while serving a client.
func (g *Gateway) logStoreError(ctx context.Context, kind sinkKind, err error) {
	g.log.WarnContext(ctx, "message store unavailable", "transport", kindName(kind), "err", err)
}
