package valkey

import (
	"context"
	"testing"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/brokertest"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// TestConformance runs the shared broker suite against a standalone server; TestCluster runs it
// against a cluster. Trimming is exact, so the suite's exact-size checks apply.
func TestConformance(t *testing.T) {
	srv := valkeytest.StartServer(t)
	runConformance(t, srv.URL(), srv.Addr())
}

func runConformance(t *testing.T, url string, addr string) {
	newBroker := func(t *testing.T, url string, opts brokertest.Options) broker.Broker {
		b, err := New(context.Background(), Options{
			Timeout: testTimeout,
			URL:     url, Handler: opts.Handler, Retention: opts.Retention, IdempotencyWindow: opts.IdempotencyWindow,
		})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b
	}
	cfg := brokertest.Config{}
	if addr != "" {
		// A node behind a proxy the case cuts: a partition between it and Valkey.
		cfg.LinkOutage = func(t *testing.T, opts brokertest.Options) (broker.Broker, func() func()) {
			px := startProxy(t, addr)
			return newBroker(t, px.URL(), opts), func() func() {
				px.Cut()
				return px.Restore
			}
		}
	}
	brokertest.RunConfig(t, cfg, func(t *testing.T, opts brokertest.Options) broker.Broker {
		return newBroker(t, url, opts)
	})
}
