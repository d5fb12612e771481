package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// gatedHistory answers History with the number of the call as LastID.Seq; each call waits for
// a token on gate, so a test can hold a read in flight.
type gatedHistory struct {
	broker.Broker
	calls atomic.Uint64
	gate  chan struct{}
}

func (g *gatedHistory) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryPage, error) {
	n := g.calls.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return broker.HistoryPage{}, ctx.Err()
	}
	return broker.HistoryPage{LastID: broker.ID{Seq: n}, Complete: true}, nil
}

// TestReplayReadsShareOnlyLaterReads: callers that arrive while a read is in flight never get
// that read's answer (it may predate their subscription), and all of them share the next one.
func TestReplayReadsShareOnlyLaterReads(t *testing.T) {
	b := &gatedHistory{gate: make(chan struct{})}
	var r replayReads
	q := broker.HistoryQuery{Since: broker.ID{Ms: 5}, Limit: 10, Newest: true}
	read := func() uint64 {
		page, err := r.read(context.Background(), b, 5*time.Second, "storm", q)
		if err != nil {
			t.Error(err)
		}
		return page.LastID.Seq
	}

	first := make(chan uint64)
	go func() { first <- read() }()
	waitFor(t, time.Second, func() bool { return b.calls.Load() == 1 }, "the first read starts at once")

	const late = 50
	var wg sync.WaitGroup
	got := make([]uint64, late)
	for i := range late {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = read() }()
	}
	waitFor(t, time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.flights[replayKey{"storm", q}] != nil && r.flights[replayKey{"storm", q}].next != nil
	}, "late callers wait for the next read")
	time.Sleep(100 * time.Millisecond) // let every late caller join the waiting batch

	b.gate <- struct{}{} // the first read answers
	if n := <-first; n != 1 {
		t.Fatalf("first caller got read %d, want 1", n)
	}
	b.gate <- struct{}{} // the shared second read answers
	wg.Wait()
	for i, n := range got {
		if n != 2 {
			t.Fatalf("late caller %d got read %d, want the shared read 2", i, n)
		}
	}
	if c := b.calls.Load(); c != 2 {
		t.Fatalf("%d broker reads for %d callers, want 2", c, late+1)
	}
	waitFor(t, time.Second, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.flights) == 0 }, "no flight left behind")

	// Another query is not shared with this one.
	done := make(chan uint64)
	go func() {
		page, _ := r.read(context.Background(), b, 5*time.Second, "storm", broker.HistoryQuery{Newest: true})
		done <- page.LastID.Seq
	}()
	b.gate <- struct{}{}
	if n := <-done; n != 3 {
		t.Fatalf("a different query got read %d, want its own read 3", n)
	}
}

// TestReplayReadsTakeTurns: reads of different keys run at most maxReplayReads at once; the
// others wait their turn (not failing meanwhile) and run as turns free up.
func TestReplayReadsTakeTurns(t *testing.T) {
	b := &gatedHistory{gate: make(chan struct{})}
	var r replayReads
	const n = 3 * maxReplayReads
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := r.read(context.Background(), b, 5*time.Second, "ch-"+itoa(i), broker.HistoryQuery{Limit: 10})
			errs <- err
		}()
	}
	waitFor(t, time.Second, func() bool { return b.calls.Load() == maxReplayReads }, "the first reads start")
	time.Sleep(50 * time.Millisecond)
	if c := b.calls.Load(); c != maxReplayReads {
		t.Fatalf("%d reads running at once, want %d", c, maxReplayReads)
	}
	for i := range n {
		b.gate <- struct{}{} // one read answers; a waiting one takes its turn
		if err := <-errs; err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if c, want := b.calls.Load(), uint64(min(n, maxReplayReads+i+1)); c > want {
			t.Fatalf("after %d answers %d reads started, want at most %d", i+1, c, want)
		}
	}
	waitFor(t, time.Second, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.flights) == 0 }, "no flight left behind")
}
