package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/memory"
)

var testGatewaySecret = []byte("bench-test-secret-0123456789abcdef0123")

// startGateway serves herald's HTTP API over TCP, backed by a memory broker that keeps up to
// keep messages per channel. It returns the base URL, a token that may publish anywhere and
// the broker, for reading channels' history.
func startGateway(t *testing.T, keep int) (string, string, *memory.Broker) {
	t.Helper()
	verifier, err := auth.New(context.Background(), auth.Config{HMACSecret: testGatewaySecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = verifier.Close() })
	mem := memory.New(memory.Options{Retention: broker.RetentionPolicy{Default: broker.Retention{Size: keep}}})
	t.Cleanup(func() { _ = mem.Close() })
	srv := httptest.NewServer(api.New(api.Options{Broker: mem, Auth: verifier}))
	t.Cleanup(srv.Close)
	token, err := auth.MintHMAC(testGatewaySecret, auth.MintClaims{Subject: "test", Publish: []string{"*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, token, mem
}

// checkHistory checks that the channel's history holds exactly the messages of res: as many,
// each number once, each stamped within the run.
func checkHistory(t *testing.T, mem *memory.Broker, channel string, res pubResult, pad int) {
	t.Helper()
	page, err := mem.History(context.Background(), channel, broker.HistoryQuery{Limit: int(res.Accepted) + 10})
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(page.Messages)) != res.Accepted || !page.Complete {
		t.Fatalf("history holds %d messages (complete %v), %d were accepted", len(page.Messages), page.Complete, res.Accepted)
	}
	seen := map[int64]bool{}
	for _, m := range page.Messages {
		var d struct {
			T, N int64
			P    string
		}
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatalf("message %s: %v: %s", m.ID, err, m.Data)
		}
		if seen[d.N] || d.T < res.Start || d.T > res.End || len(d.P) != pad {
			t.Fatalf("message %s: %s (duplicate %v; run %d..%d)", m.ID, m.Data, seen[d.N], res.Start, res.End)
		}
		seen[d.N] = true
	}
}

// TestPubLoadGateway publishes flat out for a second to a real gateway over TCP: every 201
// counted is an accepted message, and every accepted message is in the channel's history.
func TestPubLoadGateway(t *testing.T) {
	url, token, mem := startGateway(t, 1<<20)
	load := &pubLoad{cfg: pubConfig{url: url, token: token, channel: "bench:test", conc: 8, duration: time.Second, pad: 100}}
	res, err := load.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted %d in %.2f s, %v, errors %v", res.Accepted, float64(res.End-res.Start)/1e9, res.Statuses, res.Errors)
	if res.Accepted == 0 || res.Accepted != res.Statuses[201] || len(res.Statuses) != 1 || len(res.Errors) != 0 {
		t.Fatalf("accepted %d, answers %v, errors %v", res.Accepted, res.Statuses, res.Errors)
	}
	if load.Accepted.Load() != res.Accepted || load.Rejected.Load() != 0 || res.Lat.Count() != res.Accepted {
		t.Fatalf("counters: accepted %d, rejected %d, latencies %d; result %d",
			load.Accepted.Load(), load.Rejected.Load(), res.Lat.Count(), res.Accepted)
	}
	if d := time.Duration(res.End - res.Start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Fatalf("ran for %v", d)
	}
	checkHistory(t, mem, "bench:test", res, 100)
}

// TestPubLoadPaced sends on a schedule: 200/s for half a second is sends 0 to 100, each due
// every 5 ms, and a count run stops at its count.
func TestPubLoadPaced(t *testing.T) {
	url, token, mem := startGateway(t, 1000)
	paced := &pubLoad{cfg: pubConfig{url: url, token: token, channel: "bench:paced", conc: 4, rate: 200, duration: 500 * time.Millisecond}}
	res, err := paced.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 101 || res.Statuses[201] != 101 || len(res.Errors) != 0 {
		t.Fatalf("paced: accepted %d, answers %v, errors %v", res.Accepted, res.Statuses, res.Errors)
	}
	if d := time.Duration(res.End - res.Start); d < 450*time.Millisecond || d > time.Second || res.MaxLag < 0 || res.MaxLag > 200*time.Millisecond {
		t.Fatalf("paced: ran for %v, max lag %v", d, res.MaxLag)
	}
	checkHistory(t, mem, "bench:paced", res, 0)

	counted := &pubLoad{cfg: pubConfig{url: url, token: token, channel: "bench:count", conc: 3, count: 50}}
	if res, err = counted.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 50 || res.Statuses[201] != 50 {
		t.Fatalf("count: accepted %d, answers %v, errors %v", res.Accepted, res.Statuses, res.Errors)
	}
	checkHistory(t, mem, "bench:count", res, 0)
}

// TestPubLoadCancel: cancelling the context ends a run that would go on for a minute.
func TestPubLoadCancel(t *testing.T) {
	url, token, _ := startGateway(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	load := &pubLoad{cfg: pubConfig{url: url, token: token, channel: "bench:cancel", conc: 2, rate: 10, duration: time.Minute}}
	start := time.Now()
	if _, err := load.run(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("run took %v after the context ended", d)
	}
}

// quirkyServer answers publishes in turn: normally, with Connection: close, in two pieces, not
// at all (it closes the connection), with 429, and chunked. It counts what it did.
type quirkyServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	n     atomic.Int64
	mu    sync.Mutex
	did   map[string]int
	conns atomic.Int64
}

func startQuirkyServer(t *testing.T) *quirkyServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &quirkyServer{ln: ln, did: map[string]int{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *quirkyServer) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		const body = `{"id":"1-0","channel":"c"}`
		ok := fmt.Sprintf("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		what := []string{"201", "201 close", "201 split", "no answer", "429", "chunked"}[(s.n.Add(1)-1)%6]
		s.mu.Lock()
		s.did[what]++
		s.mu.Unlock()
		switch what {
		case "201":
			_, err = io.WriteString(c, ok)
		case "201 close":
			_, _ = io.WriteString(c, strings.Replace(ok, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
			return
		case "201 split":
			_, err = io.WriteString(c, ok[:40])
			time.Sleep(2 * time.Millisecond)
			if err == nil {
				_, err = io.WriteString(c, ok[40:])
			}
		case "no answer":
			return
		case "429":
			_, err = io.WriteString(c, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/problem+json\r\nContent-Length: 2\r\n\r\n{}")
		case "chunked":
			// The publisher does not understand the answer and will not use this connection again.
			_, _ = io.WriteString(c, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
			return
		}
		if err != nil {
			return
		}
	}
}

// TestPubLoadReconnects publishes to a server that closes connections, splits answers, answers
// 429 or chunked: every request is counted once, as the server saw it, and the publishers
// reconnect until they have their count.
func TestPubLoadReconnects(t *testing.T) {
	s := startQuirkyServer(t)
	load := &pubLoad{cfg: pubConfig{url: "http://" + s.ln.Addr().String(), channel: "c", conc: 4, count: 60}}
	res, err := load.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	did := s.did
	s.mu.Unlock()
	t.Logf("server: %v in %d connections; bench: %v, errors %v", did, s.conns.Load(), res.Statuses, res.Errors)
	if res.Accepted != 60 || res.Statuses[201] != 60 || int(res.Statuses[201]) != did["201"]+did["201 close"]+did["201 split"] {
		t.Fatalf("accepted %d, answers %v; server %v", res.Accepted, res.Statuses, did)
	}
	if int(res.Statuses[429]) != did["429"] || int(res.Errors["EOF"]) != did["no answer"] ||
		int(res.Errors[errChunked.Error()]) != did["chunked"] || len(res.Errors) != 2 {
		t.Fatalf("answers %v, errors %v; server %v", res.Statuses, res.Errors, did)
	}
	if load.Rejected.Load() != uint64(did["429"]+did["no answer"]+did["chunked"]) {
		t.Fatalf("rejected %d; server %v", load.Rejected.Load(), did)
	}
}

// serveCanned answers every request on c with a canned 201 and allocates nothing per request.
// It knows a request's end by the "}}" that ends the bench's JSON bodies.
func serveCanned(c net.Conn) {
	defer c.Close()
	answer := []byte("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	buf := make([]byte, 64<<10)
	var last [2]byte // the last two bytes read
	for {
		n, err := c.Read(buf[2:])
		if err != nil {
			return
		}
		copy(buf, last[:])
		copy(last[:], buf[n:n+2])
		if string(last[:]) == "}}" {
			last = [2]byte{}
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
	}
}

// startCanned starts a server that answers with serveCanned and returns its base URL.
func startCanned(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveCanned(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// TestPubLoadLongRequests sends requests too long for one write: the rest goes out on EPOLLOUT.
func TestPubLoadLongRequests(t *testing.T) {
	load := &pubLoad{cfg: pubConfig{url: startCanned(t), channel: "c", conc: 4, count: 100, pad: 1 << 20}}
	res, err := load.run(context.Background())
	if err != nil || res.Accepted != 100 || len(res.Errors) != 0 {
		t.Fatalf("accepted %d, errors %v: %v", res.Accepted, res.Errors, err)
	}
}

// TestPubLoadNoAllocs: past its setup, a run allocates nothing per request.
func TestPubLoadNoAllocs(t *testing.T) {
	url := startCanned(t)
	mallocs := func(count int64) uint64 {
		load := &pubLoad{cfg: pubConfig{url: url, channel: "c", conc: 4, count: count}}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		res, err := load.run(context.Background())
		runtime.ReadMemStats(&after)
		if err != nil || res.Accepted != uint64(count) {
			t.Fatalf("accepted %d of %d: %v", res.Accepted, count, err)
		}
		return after.Mallocs - before.Mallocs
	}
	mallocs(100) // warm up
	small, large := mallocs(1000), mallocs(5000)
	if perRequest := (float64(large) - float64(small)) / 4000; perRequest > 0.05 {
		t.Fatalf("%.2f allocations per request (%d for 1000 requests, %d for 5000)", perRequest, small, large)
	}
}
