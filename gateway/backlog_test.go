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

// TestBacklogWaitRoom: a publisher waits while the backlog is full or a message is waiting for
// room, and goes on as soon as neither holds; it gives up after its bound or when told to.
func TestBacklogWaitRoom(t *testing.T) {
	b := newBacklog(10)
	if !b.waitRoom(nil, time.Second) {
		t.Fatal("an empty backlog has no room")
	}
	b.acquire(10)
	if b.waitRoom(nil, 30*time.Millisecond) {
		t.Fatal("a full backlog has room")
	}
	stop := make(chan struct{})
	close(stop)
	if b.waitRoom(stop, time.Minute) {
		t.Fatal("waitRoom ignored its done channel")
	}
	b.release(5) // 5 of 10 used, but a message of 8 is waiting: still no room for publishers
	acquired := make(chan int)
	go func() { acquired <- b.acquire(8) }()
	waitFor(t, time.Second, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.waiting == 1 }, "acquire waits")
	room := make(chan bool)
	go func() { room <- b.waitRoom(nil, time.Minute) }()
	select {
	case <-room:
		t.Fatal("room while a message waits for the backlog")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(5) // the 8 fit (8 of 10): no one waits, not full
	<-acquired
	if !<-room {
		t.Fatal("no room once the waiting message got in")
	}
	b.acquire(2)
	go func() { room <- b.waitRoom(nil, time.Minute) }()
	b.close()
	if !<-room {
		t.Fatal("closing the backlog must let publishers through")
	}
}
