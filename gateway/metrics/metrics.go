// Package metrics holds herald's own Prometheus series. One Metrics value is created per server
// and shared by the gateway and the API; the Go runtime's series come from the registry.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are herald's counters and gauges. All fields are safe for concurrent use.
type Metrics struct {
	// Connections counts open subscriber connections by transport ("websocket", "sse", "poll").
	Connections *prometheus.GaugeVec
	// Subscriptions counts channel subscriptions across all connections.
	Subscriptions prometheus.Gauge
	// Channels counts channels with at least one local subscriber.
	Channels prometheus.Gauge
	// Published counts messages accepted by the publish API (HTTP and WebSocket).
	Published prometheus.Counter
	// PublishErrors counts publishes that failed, by reason.
	PublishErrors *prometheus.CounterVec
	// Deliveries counts messages written (or queued) to subscribers, replays included.
	Deliveries prometheus.Counter
	// SlowConsumerDisconnects counts connections closed because their outbound queue overflowed.
	SlowConsumerDisconnects prometheus.Counter
	// Disconnects counts closed connections by reason.
	Disconnects *prometheus.CounterVec
	// Gaps counts subscriptions whose resume could not be proven complete.
	Gaps prometheus.Counter
	// Replayed counts messages sent from history on subscribe or resume.
	Replayed prometheus.Counter
}

// New creates the series and registers them with reg (nil: not registered, for tests).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_connections", Help: "Open connections held by the epoll core, by transport (http: keep-alive publisher connections).",
		}, []string{"transport"}),
		Subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_subscriptions", Help: "Channel subscriptions across all connections.",
		}),
		Channels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_channels", Help: "Channels with at least one subscriber on this node.",
		}),
		Published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_messages_published_total", Help: "Messages accepted for publishing.",
		}),
		PublishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_publish_errors_total", Help: "Publishes that failed, by reason.",
		}, []string{"reason"}),
		Deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_deliveries_total", Help: "Messages sent to subscribers, replays included.",
		}),
		SlowConsumerDisconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_slow_consumer_disconnects_total", Help: "Connections closed because their outbound queue overflowed.",
		}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_disconnects_total", Help: "Closed subscriber connections by reason.",
		}, []string{"reason"}),
		Gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_resume_gaps_total", Help: "Subscriptions whose resume could not be proven complete.",
		}),
		Replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_replayed_messages_total", Help: "Messages sent from history on subscribe or resume.",
		}),
	}
	for _, t := range []string{"websocket", "sse", "poll"} {
		m.Connections.WithLabelValues(t)
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.Subscriptions, m.Channels, m.Published, m.PublishErrors,
			m.Deliveries, m.SlowConsumerDisconnects, m.Disconnects, m.Gaps, m.Replayed)
	}
	return m
}
