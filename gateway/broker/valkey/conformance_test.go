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
	runConformance(t, srv.URL())
}

func runConformance(t *testing.T, url string) {
	brokertest.RunConfig(t, brokertest.Config{},
		func(t *testing.T, opts brokertest.Options) broker.Broker {
			b, err := New(context.Background(), Options{
				Timeout: testTimeout,
				URL:     url, Handler: opts.Handler, Retention: opts.Retention, IdempotencyWindow: opts.IdempotencyWindow,
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return b
		})
}
