package gateway

import (
	"testing"
	"time"
)

func TestBacklogWaitsWhenFull(t *testing.T) {
	b := newBacklog(10)
	if got := b.acquire(25); got != 10 {
		t.Fatalf("acquire(25) of 10 took %d, want the whole backlog", got)
	}
	done := make(chan int)
	go func() { done <- b.acquire(0) }()
	select {
	case <-done:
		t.Fatal("acquired past a full backlog")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(10)
	if got := <-done; got != 1 {
		t.Fatalf("acquire(0) took %d, want 1", got)
	}
	go func() { done <- b.acquire(10) }()
	select {
	case <-done:
		t.Fatal("acquired 10 with 1 in use of 10")
	case <-time.After(50 * time.Millisecond):
	}
	b.close()
	<-done // closing lets waiters through
}
