package herald

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// faultProxy is an HTTP/1.1 proxy on real sockets that injects failures per request, chosen by
// the request's Idempotency-Key and how many times that key was seen.
type faultProxy struct {
	ln     net.Listener
	target string
	policy func(key string, attempt int) fault

	mu    sync.Mutex
	seen  map[string]int
	total int
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

type fault int

const (
	pass fault = iota
	// dropResponse forwards the request, waits for the gateway's whole answer (so the publish
	// is done) and closes the client's connection without sending it.
	dropResponse
	// unavailable answers 503 with Retry-After: 1 without forwarding.
	unavailable
)

func newFaultProxy(t *testing.T, target string, policy func(key string, attempt int) fault) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, policy: policy, seen: map[string]int{}, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = true
			p.wg.Add(1)
			p.mu.Unlock()
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) url() string { return "http://" + p.ln.Addr().String() }

// requests returns how many requests carried key, and how many requests there were in all.
func (p *faultProxy) requests(key string) (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[key], p.total
}

func (p *faultProxy) keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k := range p.seen {
		out = append(out, k)
	}
	return out
}

func (p *faultProxy) serve(c net.Conn) {
	defer p.wg.Done()
	var up net.Conn
	defer func() {
		c.Close()
		if up != nil {
			up.Close()
		}
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	br := bufio.NewReader(c)
	var upr *bufio.Reader
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		key := req.Header.Get("Idempotency-Key")
		p.mu.Lock()
		attempt := p.seen[key]
		p.seen[key]++
		p.total++
		p.mu.Unlock()
		f := p.policy(key, attempt)
		if f == unavailable {
			_, _ = io.Copy(io.Discard, req.Body)
			body := `{"type":"unavailable","title":"Service Unavailable","status":503,"detail":"injected"}`
			fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"+
				"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			continue
		}
		if up == nil {
			if up, err = net.Dial("tcp", p.target); err != nil {
				return
			}
			upr = bufio.NewReader(up)
		}
		if err := req.Write(up); err != nil {
			return
		}
		resp, err := http.ReadResponse(upr, req)
		if err != nil {
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || f == dropResponse {
			return // the gateway has answered; the client never hears it
		}
		resp.Body = io.NopCloser(bytesReader(body))
		if err := resp.Write(c); err != nil {
			return
		}
	}
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// history reads a channel's whole log from the gateway itself.
func history(t *testing.T, baseURL, channel string) []Message {
	t.Helper()
	p := publisher(t, baseURL)
	var out []Message
	for m, err := range p.Messages(context.Background(), channel, "0") {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestPublishRetriesNeverDuplicate loses the answers of publishes that the gateway did store:
// the Publisher retries with the same Idempotency-Key, and the channel's log holds each message
// exactly once.
func TestPublishRetriesNeverDuplicate(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	ctx := context.Background()

	t.Run("dropped answers", func(t *testing.T) {
		const calls, dropped = 8, 5
		var mu sync.Mutex
		var order []string
		proxy := newFaultProxy(t, g.addr, func(key string, attempt int) fault {
			mu.Lock()
			defer mu.Unlock()
			if attempt == 0 {
				order = append(order, key)
			}
			if attempt == 0 && len(order) <= dropped {
				return dropResponse
			}
			return pass
		})
		pub := publisher(t, proxy.url())
		var ids []string
		for i := range calls {
			id, err := pub.Publish(ctx, "retry:once", i)
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			ids = append(ids, id)
		}
		got := history(t, g.url(), "retry:once")
		wantSequence(t, "the log", got, 0, calls)
		for i, m := range got {
			if m.ID != ids[i] {
				t.Fatalf("message %d has id %s in the log, Publish returned %s", i, m.ID, ids[i])
			}
		}
		for i, key := range order {
			n, _ := proxy.requests(key)
			if want := map[bool]int{true: 2, false: 1}[i < dropped]; n != want {
				t.Fatalf("publish %d was sent %d times, want %d", i, n, want)
			}
		}
	})

	t.Run("batch", func(t *testing.T) {
		proxy := newFaultProxy(t, g.addr, func(key string, attempt int) fault {
			if attempt == 0 {
				return dropResponse
			}
			return pass
		})
		pub := publisher(t, proxy.url())
		var msgs []Message
		for i := range 5 {
			msgs = append(msgs, Message{Channel: "retry:batch", Data: json.RawMessage(fmt.Sprint(i))})
		}
		results, err := pub.PublishBatch(ctx, msgs)
		if err != nil {
			t.Fatal(err)
		}
		got := history(t, g.url(), "retry:batch")
		wantSequence(t, "the log", got, 0, 5)
		for i, r := range results {
			if r.ID != got[i].ID || !r.Replayed {
				t.Fatalf("result %d: %+v; want id %s, replayed (the lost attempt had stored it)", i, r, got[i].ID)
			}
		}
	})

	t.Run("retry-after", func(t *testing.T) {
		proxy := newFaultProxy(t, g.addr, func(key string, attempt int) fault {
			if attempt == 0 {
				return unavailable
			}
			return pass
		})
		pub := publisher(t, proxy.url())
		start := time.Now()
		if _, err := pub.Publish(ctx, "retry:after", 0); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < time.Second {
			t.Fatalf("retried after %v; the server said Retry-After: 1", took)
		}
		wantSequence(t, "the log", history(t, g.url(), "retry:after"), 0, 1)
	})

	t.Run("gives up", func(t *testing.T) {
		proxy := newFaultProxy(t, g.addr, func(string, int) fault { return dropResponse })
		pub := publisher(t, proxy.url(), WithRetry(RetryPolicy{MaxAttempts: 3}))
		_, err := pub.Publish(ctx, "retry:never", 0)
		if err == nil {
			t.Fatal("Publish succeeded although no answer ever came back")
		}
		keys := proxy.keys()
		if len(keys) != 1 {
			t.Fatalf("keys %v", keys)
		}
		if n, _ := proxy.requests(keys[0]); n != 3 {
			t.Fatalf("sent %d times, want MaxAttempts (3)", n)
		}
		// Every attempt reached the gateway: still one message.
		wantSequence(t, "the log", history(t, g.url(), "retry:never"), 0, 1)
	})

	t.Run("problem errors are not retried", func(t *testing.T) {
		proxy := newFaultProxy(t, g.addr, func(string, int) fault { return pass })
		pub, err := NewPublisher(proxy.url(), WithToken(mint(t, time.Hour, nil, []string{"allowed:*"})))
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		_, err = pub.Publish(ctx, "denied:1", map[string]int{"x": 1})
		var pe *ProblemError
		if !errors.As(err, &pe) || pe.Status != 403 || pe.Type != "forbidden" || pe.Title != "Forbidden" || pe.Detail == "" {
			t.Fatalf("publish without permission: %#v", err)
		}
		if _, total := proxy.requests(""); total != 1 {
			t.Fatalf("%d requests; a 403 is final", total)
		}
		_, err = pub.Publish(ctx, "allowed:1", 1, WithEvent("bad event name"))
		if !errors.As(err, &pe) || pe.Status != 400 || pe.Type != "invalid-event" {
			t.Fatalf("bad event name: %v", err)
		}
		if _, err := pub.Publish(ctx, "allowed:1", json.RawMessage(`{"unterminated"`)); err == nil {
			t.Fatal("invalid raw JSON was sent")
		}
		if _, total := proxy.requests(""); total != 2 {
			t.Fatalf("%d requests; invalid JSON must fail before sending", total)
		}
	})
}

// TestIdempotencyKeyAcrossCalls: a key given with WithIdempotencyKey makes a second Publish of
// the same message a no-op that returns the first id.
func TestIdempotencyKeyAcrossCalls(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	pub := publisher(t, g.url())
	ctx := context.Background()
	id1, err := pub.Publish(ctx, "idem:x", "a", WithIdempotencyKey("order-42-shipped"))
	if err != nil {
		t.Fatal(err)
	}
	id2, err := pub.Publish(ctx, "idem:x", "a", WithIdempotencyKey("order-42-shipped"))
	if err != nil || id2 != id1 {
		t.Fatalf("second publish: %s, %v; want %s", id2, err, id1)
	}
	if got := history(t, g.url(), "idem:x"); len(got) != 1 {
		t.Fatalf("the log holds %d messages", len(got))
	}
}

// TestHistoryPaging walks a channel's log page by page.
func TestHistoryPaging(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	pub := publisher(t, g.url())
	ctx := context.Background()
	ids := publishN(t, pub, "hist:x", 0, 25)

	pg := pub.HistoryPager("hist:x", "", 10)
	var sizes []int
	var all []Message
	for pg.Next(ctx) {
		sizes = append(sizes, len(pg.Page().Messages))
		all = append(all, pg.Page().Messages...)
	}
	if err := pg.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) || !pg.Complete() {
		t.Fatalf("pages of %v (complete %v); want 10, 10, 5, complete", sizes, pg.Complete())
	}
	wantSequence(t, "pages", all, 0, 25)

	page, err := pub.History(ctx, "hist:x", ids[19], 100)
	if err != nil {
		t.Fatal(err)
	}
	if wantSequence(t, "after the 20th", page.Messages, 20, 25); page.Next != ids[24] || page.More || !page.Complete {
		t.Fatalf("page %+v", page)
	}
	info, err := pub.Channel(ctx, "hist:x")
	if err != nil || info.LastID != ids[24] {
		t.Fatalf("channel info %+v, %v", info, err)
	}
	if _, err := pub.History(ctx, "hist:x", "not-an-id", 10); !isProblem(err, 400, "invalid-since") {
		t.Fatalf("bad since: %v", err)
	}
}

func isProblem(err error, status int, typ string) bool {
	var pe *ProblemError
	return errors.As(err, &pe) && pe.Status == status && pe.Type == typ
}
