package memory_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/memory"
)

// body is a typical small message.
var body = json.RawMessage(`{"order":42,"status":"paid","amount":{"value":"19.99","currency":"EUR"},"at":"2024-11-27T10:00:00Z"}`)

type discard struct{}

func (discard) Deliver(broker.Message) {}

func (discard) Gap(string, broker.GapReason) {}

// BenchmarkPublish: one publisher, one channel whose log is full (every publish trims).
func BenchmarkPublish(b *testing.B) {
	br := memory.New(memory.Options{})
	defer br.Close()
	ctx := context.Background()
	req := broker.PublishRequest{Channel: "orders:42", Data: body}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishSubscribed: as BenchmarkPublish, with delivery to a Handler.
func BenchmarkPublishSubscribed(b *testing.B) {
	br := memory.New(memory.Options{Handler: discard{}})
	defer br.Close()
	ctx := context.Background()
	if err := br.Subscribe(ctx, "orders:42"); err != nil {
		b.Fatal(err)
	}
	req := broker.PublishRequest{Channel: "orders:42", Event: "status", Data: body}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishIdempotent: every publish carries a new idempotency key (made by the
// benchmark: one of the allocations is its own).
func BenchmarkPublishIdempotent(b *testing.B) {
	br := memory.New(memory.Options{})
	defer br.Close()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req := broker.PublishRequest{Channel: "orders:42", Data: body, IdempotencyKey: "key-" + strconv.Itoa(i)}
		if _, err := br.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPublishRetry: every publish is a retry of a remembered key.
func BenchmarkPublishRetry(b *testing.B) {
	br := memory.New(memory.Options{})
	defer br.Close()
	ctx := context.Background()
	req := broker.PublishRequest{Channel: "orders:42", Data: body, IdempotencyKey: "order-42-paid"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel: publishers on all cores, each to its own channel.
func BenchmarkPublishParallel(b *testing.B) {
	br := memory.New(memory.Options{})
	defer br.Close()
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := broker.PublishRequest{Channel: "orders:" + strconv.FormatInt(next.Add(1), 10), Data: body}
		for pb.Next() {
			if _, err := br.Publish(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPublishContended: publishers on all cores, all to one channel.
func BenchmarkPublishContended(b *testing.B) {
	br := memory.New(memory.Options{})
	defer br.Close()
	ctx := context.Background()
	req := broker.PublishRequest{Channel: "orders:42", Data: body}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Publish(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHistory: a resume that reads the 100 messages after a position in a full log.
func BenchmarkHistory(b *testing.B) {
	br := memory.New(memory.Options{})
	defer br.Close()
	ctx := context.Background()
	var since broker.ID
	for i := range broker.DefaultRetention.Size {
		res, err := br.Publish(ctx, broker.PublishRequest{Channel: "orders:42", Data: body})
		if err != nil {
			b.Fatal(err)
		}
		if i == broker.DefaultRetention.Size-101 {
			since = res.ID
		}
	}
	q := broker.HistoryQuery{Since: since, Limit: 100}
	b.ReportAllocs()
	for b.Loop() {
		page, err := br.History(ctx, "orders:42", q)
		if err != nil || len(page.Messages) != 100 {
			b.Fatal(len(page.Messages), err)
		}
	}
}
