package main

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// loop is one epoll instance and the goroutine that owns it: it dials, handshakes and reads all
// of its connections with non-blocking syscalls, so a subscriber costs a small struct and a
// descriptor, never a goroutine or a buffer.
//
// Concurrency contract: every field without a comment saying otherwise belongs to the loop
// goroutine. Other goroutines run code on it with call, or read the atomics.
type loop struct {
	epfd int
	evfd int // eventfd that wakes the loop for calls
	opts *dialOptions

	clients     []*client
	queue       []*client // waiting for a dial slot
	inflight    int       // connections between dial and sync, retries included
	maxInflight int
	buf         []byte
	now         int64 // unix ns, refreshed before every read

	lat           *histogram // delivery latency, when recordLatency
	catchup       *histogram // time from setExpect until a client had expect messages
	recordLatency bool
	expect        uint32
	expectStart   int64
	behind        int
	lastRecv      int64
	dups          uint64
	gaps          uint64
	errs          map[string]int // failed attempts by reason (before sync)
	closes        map[string]int // connections lost after sync, by reason
	resumed       map[string]int // with opts.resume: connections closed after sync and resumed, by reason

	// progress, read by the worker goroutine
	synced   atomic.Int64
	failed   atomic.Int64
	received atomic.Uint64
	doneAt   atomic.Int64 // when behind reached 0; 0 while waiting

	callMu sync.Mutex // guards calls
	calls  []loopCall
	stop   bool
}

type loopCall struct {
	fn   func()
	done chan struct{}
}

// dialOptions is what every connection of a worker shares.
type dialOptions struct {
	dst     unix.Sockaddr
	host    string
	token   string
	sse     bool
	timeout time.Duration
	// readTick, when set, is how long the loop waits after reading before it asks epoll again.
	readTick time.Duration
	retries  int
	sources  []unix.Sockaddr // bind addresses; empty: the kernel chooses
	resume   bool            // a subscriber the gateway closes resumes at once (command.Resume)
}

// wakeIdx is the epoll token of a loop's eventfd (connections' tokens are indexes, never negative).
const wakeIdx = -1

// newWakeableEpoll creates an epoll instance with an eventfd registered under wakeIdx, by which
// another goroutine can wake the loop that waits on it.
func newWakeableEpoll() (epfd, evfd int, err error) {
	epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, -1, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return -1, -1, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeIdx}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return -1, -1, fmt.Errorf("epoll_ctl: %w", err)
	}
	return epfd, evfd, nil
}

func newLoop(opts *dialOptions, maxInflight int) (*loop, error) {
	epfd, evfd, err := newWakeableEpoll()
	if err != nil {
		return nil, err
	}
	return &loop{
		epfd: epfd, evfd: evfd, opts: opts, maxInflight: max(1, maxInflight),
		buf: make([]byte, 64<<10), lat: newHistogram(), catchup: newHistogram(),
		errs: map[string]int{}, closes: map[string]int{}, resumed: map[string]int{},
	}, nil
}

// call runs fn on the loop goroutine and waits for it.
func (l *loop) call(fn func()) {
	done := make(chan struct{})
	l.callMu.Lock()
	l.calls = append(l.calls, loopCall{fn: fn, done: done})
	l.callMu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(l.evfd, one[:])
	<-done
}

func (l *loop) runCalls() {
	var b [8]byte
	_, _ = unix.Read(l.evfd, b[:])
	l.callMu.Lock()
	calls := l.calls
	l.calls = nil
	l.callMu.Unlock()
	for _, c := range calls {
		c.fn()
		close(c.done)
	}
}

// run is the loop goroutine. It returns after shutdown was called.
func (l *loop) run() {
	events := make([]unix.EpollEvent, 512)
	nextTick := time.Now().UnixNano()
	for !l.stop {
		n, err := unix.EpollWait(l.epfd, events, 50)
		if err != nil && err != unix.EINTR {
			panic(fmt.Sprintf("epoll_wait: %v", err))
		}
		for i := range max(n, 0) {
			ev := &events[i]
			if ev.Fd == wakeIdx {
				l.runCalls()
				continue
			}
			c := l.clients[ev.Fd]
			if uint32(ev.Pad) != c.gen || c.fd < 0 {
				continue // an event of a connection closed earlier in this batch
			}
			c.handle(ev.Events)
		}
		if now := time.Now().UnixNano(); now >= nextTick {
			l.tick(now)
			nextTick = now + int64(100*time.Millisecond)
		}
		if len(l.queue) > 0 {
			l.startDials() // slots freed by syncs and failures
		}
		if n > 0 && l.opts.readTick > 0 {
			// While this loop sleeps here rather than in epoll_wait, a socket becoming readable
			// wakes nobody: the kernel only queues the event.
			time.Sleep(l.opts.readTick)
		}
	}
	for _, c := range l.clients {
		c.closeFD()
	}
	unix.Close(l.epfd)
	unix.Close(l.evfd)
}

// shutdown closes every connection and ends the loop goroutine.
func (l *loop) shutdown() { l.call(func() { l.stop = true }) }

// tick retries failed attempts whose backoff ran out and fails handshakes that take too long.
func (l *loop) tick(now int64) {
	if l.inflight == 0 {
		return
	}
	deadline := now - int64(l.opts.timeout)
	for _, c := range l.clients {
		switch c.state {
		case stRetry:
			if now >= c.retryAt {
				l.dial(c)
			}
		case stConnecting, stHandshake, stSubscribing:
			if c.startAt < deadline {
				c.attemptFailed("timeout")
			}
		}
	}
}

// add creates connections and queues them for dialing. indexes are run-wide connection numbers:
// they pick the source address and, through channel, the channel.
func (l *loop) add(indexes []int, channel func(int) string) {
	for _, i := range indexes {
		c := &client{loop: l, idx: int32(len(l.clients)), fd: -1, channel: channel(i)}
		if len(l.opts.sources) > 0 {
			c.src = l.opts.sources[i%len(l.opts.sources)]
		}
		l.clients = append(l.clients, c)
		l.enqueue(c)
	}
	l.startDials()
}

func (l *loop) enqueue(c *client) {
	c.state = stQueued
	l.queue = append(l.queue, c)
}

func (l *loop) startDials() {
	for l.inflight < l.maxInflight && len(l.queue) > 0 {
		c := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		l.inflight++
		c.tries = 0
		l.dial(c)
	}
	if len(l.queue) == 0 {
		l.queue = nil
	}
}

// dial opens a non-blocking socket and starts connecting; the rest happens on its events.
func (l *loop) dial(c *client) {
	c.gen++
	c.startAt = time.Now().UnixNano()
	c.state = stConnecting
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.attemptFailed("socket: " + errName(err))
		return
	}
	c.fd = fd
	if c.src != nil {
		// Choose the port at connect time, per destination: each source address then offers a
		// full ephemeral range to the gateway.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, c.src); err != nil {
			c.attemptFailed("bind: " + errName(err))
			return
		}
	}
	if err := unix.Connect(fd, l.opts.dst); err != nil && err != unix.EINPROGRESS {
		c.attemptFailed("connect: " + errName(err))
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: c.idx, Pad: int32(c.gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		c.attemptFailed("epoll_ctl: " + errName(err))
	}
}

// backoff returns a jittered delay before retry number try (1-based).
func backoff(try int) time.Duration {
	base := 100 * time.Millisecond << min(try-1, 4)
	return base/2 + rand.N(base)
}

func errName(err error) string {
	if e, ok := err.(unix.Errno); ok {
		if name := unix.ErrnoName(e); name != "" {
			return name
		}
	}
	return err.Error()
}

// setExpect starts waiting until every connection that is not lost has n messages. It records
// each client's catch-up time from start; doneAt is set when the last one gets there.
func (l *loop) setExpect(n uint32, start int64) {
	l.expect, l.expectStart, l.behind = n, start, 0
	l.doneAt.Store(0)
	for _, c := range l.clients {
		if !c.lost() && c.count < n {
			l.behind++
		}
	}
	if l.behind == 0 {
		l.doneAt.Store(max(start, l.lastRecv))
	}
}

// reached is called when a client gets its expect-th message or is lost while behind.
func (l *loop) reached(caughtUp bool) {
	if caughtUp {
		l.catchup.Record(l.now - l.expectStart)
	}
	l.behind--
	if l.behind == 0 {
		l.doneAt.Store(l.now)
	}
}

// resetCounts forgets what was received so far (ids stay: duplicates are still caught).
func (l *loop) resetCounts() {
	for _, c := range l.clients {
		c.count, c.dups = 0, 0
	}
	l.lat.Reset()
	l.catchup.Reset()
	l.dups, l.gaps, l.lastRecv = 0, 0, 0
	l.received.Store(0)
	l.expect, l.behind = 0, 0
	l.doneAt.Store(0)
	clear(l.closes)
	clear(l.resumed)
}

// dropAll closes every connection at once (with a reset, so no port lingers in TIME_WAIT).
func (l *loop) dropAll() int {
	n := 0
	for _, c := range l.clients {
		if c.state == stLive {
			n++
		}
		c.closeFD()
		c.state = stDropped
	}
	l.queue, l.inflight = nil, 0
	return n
}

// reconnectDropped dials every dropped connection again, resuming after its last message.
func (l *loop) reconnectDropped() int {
	l.synced.Store(0)
	l.failed.Store(0)
	clear(l.errs)
	n := 0
	for _, c := range l.clients {
		if c.state == stDropped {
			c.resume = true
			l.enqueue(c)
			n++
		}
	}
	l.startDials()
	return n
}
