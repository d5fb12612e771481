package valkey

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// TestCluster runs the Valkey-specific cases against one 3-primary cluster (starting a cluster
// takes seconds, so its subtests share it; each uses its own channels).
func TestCluster(t *testing.T) {
	c := valkeytest.StartCluster(t, 3, valkeytest.AppendOnly())

	// No link outage case: a proxy in front of one seed would not cover the nodes it redirects to.
	t.Run("conformance", func(t *testing.T) { runConformance(t, c.URL(), "") })

	t.Run("publish and history on every shard", func(t *testing.T) {
		b := newTestBroker(t, Options{URL: c.URL()})
		ctx := context.Background()
		for _, ch := range channelPerShard(t, c, "h") {
			ids := []broker.ID{publish(t, b, ch, 0), publish(t, b, ch, 1)}
			_, errs := b.PublishBatch(ctx, []broker.PublishRequest{
				{Channel: ch, Data: data(2), IdempotencyKey: "k"},
				{Channel: ch, Data: data(3), IdempotencyKey: "k"},
			})
			if errs[0] != nil || errs[1] != nil {
				t.Fatal(errs)
			}
			page, err := b.History(ctx, ch, broker.HistoryQuery{Since: ids[0], Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Messages) != 2 || page.Messages[0].ID != ids[1] || !page.Complete {
				t.Fatalf("history of %s: %+v", ch, page)
			}
		}
		if err := b.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("subscriptions on every shard", func(t *testing.T) {
		rec := newRecorder(t)
		sub := newTestBroker(t, Options{URL: c.URL(), Handler: rec})
		pub := newTestBroker(t, Options{URL: c.URL()})
		ctx := context.Background()
		channels := channelPerShard(t, c, "s")
		for _, ch := range channels {
			if err := sub.Subscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 20 {
			reqs := make([]broker.PublishRequest, 0, len(channels))
			for _, ch := range channels {
				reqs = append(reqs, broker.PublishRequest{Channel: ch, Data: data(i)})
			}
			_, errs := pub.PublishBatch(ctx, reqs)
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, ch := range channels {
			got := rec.waitCount(t, ch, 20, 5*time.Second)
			for i, m := range got {
				if string(m.Data) != string(data(i)) {
					t.Fatalf("%s: delivery %d is %s", ch, i, m.Data)
				}
			}
		}
	})

	t.Run("subscription survives a shard restart", func(t *testing.T) {
		rec := newRecorder(t)
		sub := newTestBroker(t, Options{URL: c.URL(), Handler: rec})
		pub := newTestBroker(t, Options{URL: c.URL()})
		ctx := context.Background()
		channels := channelPerShard(t, c, "r")
		ch, other := channels[0], channels[1]
		for _, name := range []string{ch, other} {
			if err := sub.Subscribe(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 5 {
			publish(t, pub, ch, i)
		}
		rec.waitCount(t, ch, 5, 5*time.Second)

		node := c.NodeFor(fmt.Sprintf("herald:{%s}:log", ch))
		for i, n := range c.Nodes {
			if n == node {
				c.RestartNode(i)
			}
		}
		for i := 5; i < 10; i++ {
			publishRetrying(t, pub, ch, i, 20*time.Second)
		}
		publishRetrying(t, pub, other, 0, 20*time.Second)
		got := rec.waitCount(t, ch, 10, 20*time.Second)
		rec.waitCount(t, other, 1, 5*time.Second)
		if len(got) != 10 {
			t.Fatalf("%d deliveries, want 10", len(got))
		}
		for i, m := range got {
			if string(m.Data) != string(data(i)) {
				t.Fatalf("delivery %d is %s", i, m.Data)
			}
		}
		if rec.gapCount(ch) != 0 {
			t.Fatal("gap reported though the shard kept its append-only file")
		}
	})

	t.Run("control messages", func(t *testing.T) {
		var mu sync.Mutex
		var got []string
		fn := func(p []byte) { mu.Lock(); got = append(got, string(p)); mu.Unlock() }
		a := newTestBroker(t, Options{URL: c.URL(), OnControl: fn})
		newTestBroker(t, Options{URL: c.URL(), OnControl: fn})
		if err := a.PublishControl(context.Background(), []byte("hello")); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(got, ",") != "hello,hello" {
				return errors.New("control messages: " + strings.Join(got, ","))
			}
			return nil
		})
	})
}

// channelPerShard returns, for each of the cluster's nodes in order, a channel name starting
// with prefix whose keys live on that node.
func channelPerShard(t *testing.T, c *valkeytest.Cluster, prefix string) []string {
	t.Helper()
	out := make([]string, len(c.Nodes))
	found := 0
	for i := 0; found < len(c.Nodes) && i < 1000; i++ {
		ch := fmt.Sprintf("%sshard-%d", prefix, i)
		node := c.NodeFor(fmt.Sprintf("herald:{%s}:log", ch))
		for j, n := range c.Nodes {
			if n == node && out[j] == "" {
				out[j] = ch
				found++
			}
		}
	}
	if found < len(c.Nodes) {
		t.Fatal("no channel found for some shard")
	}
	return out
}
