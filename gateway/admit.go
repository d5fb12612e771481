package gateway

import (
	"net/http"

	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/admission"
)

// admit asks Config.Admission for a slot for a new WebSocket, SSE or long-poll connection, before
// anything else is spent on it. When refused it answers the problem (503 or 429, with
// Retry-After) and returns false. An admitted slot must be released exactly once: by the
// janitor once a connection holds it (conn.slot), else by the handler that admitted it.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request) (*admission.Slot, bool) {
	slot, refusal := g.cfg.Admission.Admit(r)
	if refusal != nil {
		g.log.Debug("connection refused", "reason", refusal.Type, "remote", r.RemoteAddr)
		problem.Write(w, refusal)
		return nil, false
	}
	return slot, true
}
