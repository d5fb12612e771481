package gateway

import (
	"net/http"
	"sync"

	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/admission"
)

// Admission slots of WebSocket and SSE connections.
//
// Every WebSocket and SSE connection was admitted (ServeWebSocket and ServeSSE are the only
// ways in) and holds a slot from its adopt to its cleanup, where the janitor releases it. When
// addresses are not counted every slot is the node's and needs no record; when they are, the
// connection's slot (its address's) is kept in admittedConns rather than in conn, so that an
// idle connection's struct stays in the size class it was fitted to (see TestSessionSizes).
// Long-polls hold their slot in ServePoll itself.

// admittedConns maps connections to the per-address slots they hold. mu guards slots; it is
// taken on connect and in the janitor, never with another lock held.
type admittedConns struct {
	mu    sync.Mutex
	slots map[*conn]*admission.Slot
}

// admit asks Config.Admission for a slot for a new WebSocket, SSE or long-poll connection, before
// anything else is spent on it. When refused it answers the problem (503 or 429, with
// Retry-After) and returns false. An admitted slot must be released exactly once: by the
// janitor once a connection holds it (a successful adopt), else by the handler that admitted it.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request) (*admission.Slot, bool) {
	slot, refusal := g.cfg.Admission.Admit(r)
	if refusal != nil {
		g.log.Debug("connection refused", "reason", refusal.Type, "remote", r.RemoteAddr)
		problem.Write(w, refusal)
		return nil, false
	}
	return slot, true
}

// holdAdmitted records that c holds slot; adopt calls it before c can be retired.
func (g *Gateway) holdAdmitted(c *conn, slot *admission.Slot) {
	if !slot.ByAddress() {
		return
	}
	a := &g.admitted
	a.mu.Lock()
	if a.slots == nil {
		a.slots = make(map[*conn]*admission.Slot)
	}
	a.slots[c] = slot
	a.mu.Unlock()
}

// releaseAdmitted gives back the slot of a WebSocket or SSE connection; the janitor calls it
// once per retired connection.
func (g *Gateway) releaseAdmitted(c *conn) {
	if g.cfg.Admission == nil || (c.kind != kindWS && c.kind != kindSSE) {
		return // no limits; or an adopted keep-alive HTTP connection, which is not admitted
	}
	slot := g.takeAdmitted(c)
	if slot == nil {
		slot = g.cfg.Admission.NodeSlot()
	}
	g.cfg.Admission.Release(slot)
}

func (g *Gateway) takeAdmitted(c *conn) *admission.Slot {
	a := &g.admitted
	a.mu.Lock()
	defer a.mu.Unlock()
	slot := a.slots[c]
	delete(a.slots, c)
	return slot
}
