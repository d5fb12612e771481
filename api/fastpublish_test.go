package api

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/memory"
	"github.com/herald-gateway/herald/gateway/http1"
	"github.com/herald-gateway/herald/gateway/metrics"
)

// panickyBroker fails loudly on Publish, as a bug would.
type panickyBroker struct{ broker.Broker }

func (panickyBroker) Publish(context.Context, broker.PublishRequest) (broker.PublishResult, error) {
	panic("broker bug")
}

func fastServer(t *testing.T, b broker.Broker) *server {
	t.Helper()
	v, err := auth.New(context.Background(), auth.Config{APIKeys: []string{"fast-key"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return &server{broker: b, auth: v, metrics: metrics.New(nil), log: slog.New(slog.DiscardHandler),
		maxData: DefaultMaxMessageBytes, maxBatch: DefaultMaxBatch, fanOutWait: DefaultFanOutWait}
}

func fastRequest(t *testing.T, token string) *http1.Request {
	t.Helper()
	body := `{"data":{"n":1}}`
	raw := "POST /v1/channels/fast/messages HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	var r http1.Request
	if _, st := http1.Parse([]byte(raw), http1.Limits{MaxHead: 8192, MaxBody: 1 << 20}, &r); st != http1.Complete {
		t.Fatalf("test request not parsed: %v", st)
	}
	return &r
}

func TestServeFastPublishesDeclinesAndRecovers(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	s := fastServer(t, mem)

	out, ok := s.ServeFast(fastRequest(t, "fast-key"), nil)
	if !ok || !strings.HasPrefix(string(out), "HTTP/1.1 201 Created\r\n") || !strings.HasSuffix(string(out), `"channel":"fast"}`+"\n") {
		t.Fatalf("publish: ok=%v\n%s", ok, out)
	}
	page, err := mem.History(context.Background(), "fast", broker.HistoryQuery{Limit: 10})
	if err != nil || len(page.Messages) != 1 {
		t.Fatalf("history after the fast publish: %+v, %v", page, err)
	}

	dst := []byte("untouched")
	if out, ok := s.ServeFast(fastRequest(t, "wrong-key"), dst); ok || string(out) != "untouched" {
		t.Fatalf("a bad token must be declined untouched: ok=%v %q", ok, out)
	}

	// A panic in the handler is answered with a 500, as on the Echo path, and does not reach
	// the epoll worker.
	s = fastServer(t, panickyBroker{mem})
	out, ok = s.ServeFast(fastRequest(t, "fast-key"), nil)
	if !ok || !strings.HasPrefix(string(out), "HTTP/1.1 500 Internal Server Error\r\n") || !strings.Contains(string(out), `"type":"internal"`) {
		t.Fatalf("panic: ok=%v\n%s", ok, out)
	}
}
