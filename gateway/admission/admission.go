// Package admission decides whether a new subscriber connection (WebSocket, SSE or long-poll)
// may start: a node-wide connection limit, a limit per client address and a connect rate per
// client address. It also wraps the server's listener so that running out of descriptors makes
// accept back off instead of spinning (see Listener), and limits the publish rate of each
// credential (PublishLimiter), with the same bounded bucket table as the connect rate.
//
// Invariants:
//   - Every Slot that Admit returns is released exactly once (Release), by whoever holds the
//     connection when it ends; a refused request holds nothing.
//   - Memory does not grow with the number of distinct addresses beyond a fixed cap: the rate
//     table holds at most Config.RateTable addresses, and the per-address counts hold only
//     addresses with a connection open (at most Config.MaxConnections of them). The publish
//     limiter's table holds at most PublishConfig.Table credentials.
//   - Refusals carry a generic text; which limit refused is in the problem's type and the
//     refusals metric.
package admission

import (
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gateway/herald/api/problem"
)

// Config sets the limits. Zero fields switch a limit off, except where brackets give a default.
type Config struct {
	// MaxConnections is the most subscriber connections on the node (0: no limit).
	MaxConnections int
	// MaxPerAddr is the most subscriber connections of one client address (0: no limit).
	MaxPerAddr int
	// RatePerAddr is the new connections per second one client address may open (0: no limit).
	RatePerAddr float64
	// BurstPerAddr is how many connections an address may open at once before RatePerAddr
	// applies [twice the rate, at least 10].
	BurstPerAddr int
	// RateTable is the most addresses whose rate is tracked at a time [65536].
	RateTable int
	// TrustedProxies are the peers whose X-Forwarded-For / Forwarded headers name the client.
	TrustedProxies []netip.Prefix
	// Metrics receive the counts (nil: unregistered series).
	Metrics *Metrics
	// Now is the clock [time.Now]; tests set it.
	Now func() time.Time
}

// DefaultRateTable is Config.RateTable's default: about 5 MiB at most.
const DefaultRateTable = 65536

// Refusal types, the "type" of the problem document a refused request gets.
const (
	TypeNodeFull     = "over-capacity"        // 503: the node holds its most connections
	TypeAddrFull     = "too-many-connections" // 429: the address holds its share
	TypeAddrRate     = "connect-rate-limited" // 429: the address connects too fast
	reasonNodeFull   = "node_full"
	reasonAddrFull   = "address_connections"
	reasonAddrRate   = "address_rate"
	retryNodeFullMin = 2 * time.Second
	retryAddrFullMin = 5 * time.Second
)

// Controller admits subscriber connections. A nil *Controller admits everything.
//
// total is changed with atomics; mu guards perAddr. The rate table has its own lock.
type Controller struct {
	cfg     Config
	total   atomic.Int64
	buckets *bucketTable[netip.Addr] // nil when the rate is not limited
	m       *Metrics

	mu      sync.Mutex
	perAddr map[netip.Addr]*Slot // addresses with connections; only when MaxPerAddr > 0
}

// Slot is an admitted connection's hold on the limits. Connections of one address share one
// Slot when addresses are counted, so a connection keeps only a pointer.
type Slot struct {
	key netip.Addr
	n   int32 // connections holding it; under Controller.mu
}

// nodeSlot is the Slot of every connection when addresses are not counted.
var nodeSlot = &Slot{}

// ByAddress reports whether s counts toward an address's share. Slots that do not are all the
// same: a holder may forget it and release NodeSlot instead.
func (s *Slot) ByAddress() bool { return s != nil && s != nodeSlot }

// NodeSlot is the slot Admit returns when addresses are not counted (nil: a nil Controller,
// which admits everything and holds nothing).
func (c *Controller) NodeSlot() *Slot {
	if c == nil {
		return nil
	}
	return nodeSlot
}

// New makes a Controller.
func New(cfg Config) *Controller {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RateTable <= 0 {
		cfg.RateTable = DefaultRateTable
	}
	if cfg.BurstPerAddr <= 0 {
		cfg.BurstPerAddr = DefaultBurst(cfg.RatePerAddr)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	c := &Controller{cfg: cfg, m: cfg.Metrics, perAddr: make(map[netip.Addr]*Slot)}
	if cfg.RatePerAddr > 0 {
		c.buckets = newBucketTable[netip.Addr](cfg.RatePerAddr, cfg.BurstPerAddr, cfg.RateTable)
	}
	c.m.observe(c)
	return c
}

// Admit decides on a new subscriber connection. It returns the Slot to release when the
// connection ends, or the problem to answer instead (and then holds nothing). The checks run
// cheapest-to-undo first: the rate, the address's share, the node.
func (c *Controller) Admit(r *http.Request) (*Slot, *problem.Details) {
	if c == nil {
		return nil, nil
	}
	key := Key(ClientAddr(r, c.cfg.TrustedProxies))
	if c.buckets != nil && key.IsValid() {
		if ok, wait := c.buckets.take(key, c.cfg.Now()); !ok {
			return nil, c.refuse(reasonAddrRate, http.StatusTooManyRequests, TypeAddrRate,
				"too many new connections from this address: retry later", max(wait, time.Second))
		}
	}
	slot := nodeSlot
	if c.cfg.MaxPerAddr > 0 && key.IsValid() {
		if slot = c.holdAddr(key); slot == nil {
			return nil, c.refuse(reasonAddrFull, http.StatusTooManyRequests, TypeAddrFull,
				"too many connections from this address: close one or retry later", jitter(retryAddrFullMin))
		}
	}
	if n := c.total.Add(1); c.cfg.MaxConnections > 0 && n > int64(c.cfg.MaxConnections) {
		c.total.Add(-1)
		c.dropAddr(slot)
		return nil, c.refuse(reasonNodeFull, http.StatusServiceUnavailable, TypeNodeFull,
			"this node is at its connection limit: retry later or on another node", jitter(retryNodeFullMin))
	}
	c.m.Admitted.Inc()
	return slot, nil
}

// Release gives back what Admit took. Call it exactly once per admitted connection; a nil Slot
// (nothing admitted) is ignored.
func (c *Controller) Release(s *Slot) {
	if c == nil || s == nil {
		return
	}
	c.total.Add(-1)
	c.m.Admitted.Dec()
	c.dropAddr(s)
}

// Connections is the number of admitted connections.
func (c *Controller) Connections() int { return int(c.total.Load()) }

// holdAddr counts one more connection of key, or returns nil when key holds its share.
func (c *Controller) holdAddr(key netip.Addr) *Slot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.perAddr[key]
	if s == nil {
		s = &Slot{key: key}
		c.perAddr[key] = s
	}
	if int(s.n) >= c.cfg.MaxPerAddr {
		return nil
	}
	s.n++
	return s
}

// dropAddr counts one connection of s's address less.
func (c *Controller) dropAddr(s *Slot) {
	if s == nodeSlot {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.n--; s.n <= 0 {
		delete(c.perAddr, s.key)
	}
}

// addrsHeld is the number of addresses with connections counted.
func (c *Controller) addrsHeld() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.perAddr)
}

func (c *Controller) refuse(reason string, status int, typ, detail string, retry time.Duration) *problem.Details {
	c.m.Refusals.WithLabelValues(reason).Inc()
	p := problem.New(status, typ, detail)
	p.RetryAfter = retry
	return p
}

// jitter spreads retries over [d, 2d): clients refused together must not all come back together.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)))
}
