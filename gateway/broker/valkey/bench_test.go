package valkey

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

var benchData = json.RawMessage(`{"order":42,"status":"shipped","items":[{"sku":"A-1","qty":2}],"note":"left at the door"}`)

func BenchmarkPublish(b *testing.B) {
	srv := valkeytest.StartServer(b)
	br := newTestBroker(b, Options{URL: srv.URL()})
	ctx := context.Background()
	req := broker.PublishRequest{Channel: "bench", Event: "status", Data: benchData}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishIdempotent(b *testing.B) {
	srv := valkeytest.StartServer(b)
	br := newTestBroker(b, Options{URL: srv.URL()})
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		req := broker.PublishRequest{Channel: "bench", Data: benchData, IdempotencyKey: strconv.Itoa(i)}
		if _, err := br.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel: 8 publishers per CPU share connections through valkey-go's
// automatic pipelining.
func BenchmarkPublishParallel(b *testing.B) {
	srv := valkeytest.StartServer(b)
	br := newTestBroker(b, Options{URL: srv.URL()})
	ctx := context.Background()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := broker.PublishRequest{Channel: "bench", Data: benchData}
		for pb.Next() {
			if _, err := br.Publish(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPublishBatch10 publishes 10 messages to 5 channels per call.
func BenchmarkPublishBatch10(b *testing.B) {
	srv := valkeytest.StartServer(b)
	br := newTestBroker(b, Options{URL: srv.URL()})
	ctx := context.Background()
	reqs := make([]broker.PublishRequest, 10)
	for i := range reqs {
		reqs[i] = broker.PublishRequest{Channel: "bench:" + strconv.Itoa(i%5), Data: benchData}
	}
	b.ReportAllocs()
	for b.Loop() {
		_, errs := br.PublishBatch(ctx, reqs)
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkHistory100(b *testing.B) {
	srv := valkeytest.StartServer(b)
	br := newTestBroker(b, Options{URL: srv.URL()})
	ctx := context.Background()
	for range 1000 {
		if _, err := br.Publish(ctx, broker.PublishRequest{Channel: "bench", Data: benchData}); err != nil {
			b.Fatal(err)
		}
	}
	page, err := br.History(ctx, "bench", broker.HistoryQuery{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	since := page.Messages[0].ID
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.History(ctx, "bench", broker.HistoryQuery{Since: since, Limit: 100}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishToDelivery measures a publish on one broker until another broker's Handler
// got it over pub/sub.
func BenchmarkPublishToDelivery(b *testing.B) {
	srv := valkeytest.StartServer(b)
	got := make(chan struct{}, 1)
	sub := newTestBroker(b, Options{URL: srv.URL(), Handler: handlerFunc(func(broker.Message) { got <- struct{}{} })})
	pub := newTestBroker(b, Options{URL: srv.URL()})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	req := broker.PublishRequest{Channel: "bench", Data: benchData}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pub.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}

type handlerFunc func(broker.Message)

func (f handlerFunc) Deliver(m broker.Message) { f(m) }

func (handlerFunc) Gap(string, broker.GapReason) {}
