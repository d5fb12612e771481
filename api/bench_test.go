package api_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/admission"
	"github.com/herald-gateway/herald/gateway/broker/memory"
	"github.com/herald-gateway/herald/gateway/metrics"
)

// BenchmarkPublishHTTP measures POST /v1/channels/{channel}/messages end to end over a real
// keep-alive TCP connection, set up as `herald serve` sets it up (memory broker, info-level
// logger, registered metrics). The client is hand-written and allocates nothing per request,
// so allocs/op is the server's cost: net/http's share (about 15 allocations) plus herald's.
func BenchmarkPublishHTTP(b *testing.B) {
	for _, bc := range []struct {
		name, token string
		body        string
		limited     bool // under a publish rate limit it never reaches: the check's own cost
	}{
		{"jwt", "", `{"data":{"t":1732700000000000000,"n":12345}}`, false},
		{"apikey", testAPIKey, `{"data":{"t":1732700000000000000,"n":12345}}`, false},
		{"apikey-rate-limited", testAPIKey, `{"data":{"t":1732700000000000000,"n":12345}}`, true},
		{"event", "", `{"data":{"text":"hello","tags":["a","b"],"ok":true,"n":null},"event":"chat.message"}`, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var limiter *admission.PublishLimiter
			if bc.limited {
				limiter = admission.NewPublishLimiter(admission.PublishConfig{Rate: 1e12, Burst: 1 << 30})
			}
			srv := newBenchServer(b, limiter)
			tok := bc.token
			if tok == "" {
				var err error
				tok, err = auth.MintHMAC(testSecret, auth.MintClaims{Subject: "bench", Publish: []string{"*"}, TTL: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
			}
			req := []byte("POST /v1/channels/bench:1/messages HTTP/1.1\r\nHost: bench\r\n" +
				"Content-Type: application/json\r\nAuthorization: Bearer " + tok + "\r\n" +
				"Content-Length: " + strconv.Itoa(len(bc.body)) + "\r\n\r\n" + bc.body)
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 4096)
			roundTrip := func() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				if status := readBenchResponse(b, br); status != 201 {
					b.Fatalf("status %d", status)
				}
			}
			roundTrip() // warm the verified-token cache and the connection
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				roundTrip()
			}
		})
	}
}

func newBenchServer(b *testing.B, limiter *admission.PublishLimiter) *httptest.Server {
	b.Helper()
	verifier, err := auth.New(context.Background(), auth.Config{HMACSecret: testSecret, APIKeys: []string{testAPIKey}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = verifier.Close() })
	mem := memory.New(memory.Options{})
	b.Cleanup(func() { _ = mem.Close() })
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.New(api.Options{
		Broker: mem, Auth: verifier, Metrics: metrics.New(reg), Registry: reg, PublishLimiter: limiter,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}))
	b.Cleanup(srv.Close)
	return srv
}

// readBenchResponse reads one HTTP/1.1 response with a Content-Length and returns its status,
// without allocating.
func readBenchResponse(b *testing.B, br *bufio.Reader) int {
	line, err := br.ReadSlice('\n')
	if err != nil || len(line) < 12 {
		b.Fatalf("status line %q: %v", line, err)
	}
	status := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length = 0
			for _, c := range bytes.TrimSpace(v) {
				length = length*10 + int(c-'0')
			}
		}
	}
	if length < 0 {
		b.Fatal("response without Content-Length")
	}
	if _, err := br.Discard(length); err != nil {
		b.Fatal(err)
	}
	return status
}
