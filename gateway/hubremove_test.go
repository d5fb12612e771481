package gateway

import (
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/herald-gateway/herald/gateway/broker"
)

// TestRemoveTwiceReleasesOnce: a subscription removed a second time (say by a cleanup racing a
// failed join) must not count down the subscriptions again nor give back the channel's
// reference a second time, which would end the node's interest while another subscriber still
// holds the channel.
func TestRemoveTwiceReleasesOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var subs [2]*subscription
	for i := range subs {
		sub, err := e.gw.hub.subscribe(ctx, "twice", &stallSink{release: make(chan struct{})}, kindWS)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.gw.hub.goLive(sub, broker.ID{}); err != nil {
			t.Fatal(err)
		}
		subs[i] = sub
	}
	e.gw.hub.remove(subs[0])
	e.gw.hub.remove(subs[0])
	if n := e.gw.Subscribers("twice"); n != 1 {
		t.Fatalf("%d subscribers after removing one of two twice; want 1", n)
	}
	var m dto.Metric
	if err := e.metrics.Subscriptions.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetGauge().GetValue(); n != 1 {
		t.Fatalf("herald_subscriptions %v; want 1", n)
	}
	if cs := e.gw.hub.lookup("twice"); cs == nil {
		t.Fatal("the channel was released while a subscriber holds it")
	}
	e.gw.hub.remove(subs[1])
	if cs := e.gw.hub.lookup("twice"); cs != nil {
		t.Fatal("the channel outlived its last subscriber")
	}
}
