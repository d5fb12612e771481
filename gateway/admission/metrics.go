package admission

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the admission series. All fields are safe for concurrent use.
type Metrics struct {
	// Admitted is the number of subscriber connections holding a slot.
	Admitted prometheus.Gauge
	// Limit is the node-wide connection limit (0: none).
	Limit prometheus.Gauge
	// LimitPerAddr is the per-address connection limit (0: none).
	LimitPerAddr prometheus.Gauge
	// Refusals counts refused connections by reason: node_full, address_connections,
	// address_rate.
	Refusals *prometheus.CounterVec
	// AcceptErrors counts failed accepts (out of descriptors or memory) that made the listener
	// back off.
	AcceptErrors prometheus.Counter
}

// NewMetrics creates the series and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Admitted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_admitted_connections", Help: "Subscriber connections (WebSocket, SSE, long-poll) holding an admission slot.",
		}),
		Limit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_connection_limit", Help: "Most subscriber connections this node admits (0: no limit).",
		}),
		LimitPerAddr: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_connection_limit_per_address", Help: "Most subscriber connections one client address may hold (0: no limit).",
		}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_connection_refusals_total", Help: "Subscriber connections refused before they started, by reason.",
		}, []string{"reason"}),
		AcceptErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_accept_errors_total", Help: "Accepts that failed for want of descriptors or memory; the listener backed off after each.",
		}),
	}
	for _, r := range []string{reasonNodeFull, reasonAddrFull, reasonAddrRate} {
		m.Refusals.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Admitted, m.Limit, m.LimitPerAddr, m.Refusals, m.AcceptErrors)
	}
	return m
}

// observe records c's limits.
func (m *Metrics) observe(c *Controller) {
	m.Limit.Set(float64(c.cfg.MaxConnections))
	m.LimitPerAddr.Set(float64(c.cfg.MaxPerAddr))
}
