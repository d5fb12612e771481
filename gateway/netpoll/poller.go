// Package netpoll is herald's small epoll wrapper: it tells a bounded pool of worker goroutines
// when a registered connection has something to read, can be written again, or hung up, so that an
// idle connection costs no goroutine and no buffer.
//
// Every registration is one-shot (EPOLLONESHOT): after an event is handed to a worker the kernel
// reports nothing more for that connection until the handler re-arms it, so at most one worker
// handles a connection at a time and the read path needs no lock.
//
// The poller works on bare descriptor numbers, and a closed number is reused by the next socket
// the process opens. So the owner of a descriptor must never close it while Register, Arm or
// Unregister may run on it: it serializes those calls with its close (one mutex in practice),
// calls Unregister before closing, and never uses the Desc afterwards. Events carry a
// registration token, not the descriptor, so an event the kernel queued before a close never
// reaches a later connection that got the same number.
package netpoll

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Event is a set of readiness conditions.
type Event uint32

// Conditions a handler is told about.
const (
	// Readable: bytes (or EOF) are waiting to be read.
	Readable Event = 1 << iota
	// Writable: the socket accepts writes again.
	Writable
	// HangUp: the peer closed its side or the connection failed.
	HangUp
)

// Handler handles the events of one registered connection. HandleEvent runs on a worker
// goroutine; it must not block for long (a worker that waits starves other connections), and it
// must call Desc.Arm when it wants further events.
type Handler interface {
	HandleEvent(ev Event)
}

// ErrClosed is returned by calls on a closed Poller.
var ErrClosed = errors.New("netpoll: poller closed")

// errNotRegistered is returned by Arm on a Desc that is not (or no longer) registered.
var errNotRegistered = errors.New("netpoll: not registered")

// Poller is one epoll instance, the goroutine that waits on it, and the worker pool that runs
// handlers.
type Poller struct {
	epfd   int
	epFile *os.File        // owns epfd; the wait loop parks on it in Go's poller
	epRaw  syscall.RawConn // epFile's
	wakeFd int             // eventfd that ends the wait loop on Close

	mu     sync.RWMutex // guards slots, free and closed
	slots  []slot       // registrations by index; a token is the index and its generation
	free   []uint32     // indexes of unused slots
	closed bool

	work     chan job
	loopDone chan struct{}
	workers  sync.WaitGroup

	// Stand-ins (see Blocking): extra counts the workers alive beyond the pool's size that were
	// not told to leave; peak is the most stand-ins needed at once since the last trim.
	blocked  atomic.Int32 // handlers inside Blocking
	spare    int32        // how many may wait in Blocking without a stand-in: half the pool
	extra    atomic.Int32
	peak     atomic.Int32
	trimDone chan struct{}
	running  atomic.Int32 // workers alive, for tests
}

type job struct {
	h  Handler
	ev Event
}

// slot is one registration. The generation changes each time the slot is reused, so an event
// the kernel queued for an earlier registration of the same slot finds no handler. (A map from
// token to handler did the same at about three times the memory per connection.)
type slot struct {
	h   Handler
	gen uint32
}

// wakeToken marks the eventfd's events; registration tokens never equal it (their generation
// starts at 1).
const wakeToken = 0

// Config sizes a Poller.
type Config struct {
	// Workers is the number of goroutines that run handlers; 0 means 16 per CPU (at least 32).
	// Handlers that may wait on the network say so with Blocking, which lends the pool a
	// stand-in for the time; the pool is larger than the CPU count for short waits that do not.
	Workers int
	// Queue is the number of events that may wait for a worker; 0 means 4096.
	Queue int
}

// New creates a poller and starts its wait loop and workers.
func New(cfg Config) (*Poller, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = max(32, 16*runtime.GOMAXPROCS(0))
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	wakeFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakeFd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakeFd)
		return nil, fmt.Errorf("netpoll: register eventfd: %w", err)
	}
	// The wait loop parks in Go's own poller until the epoll instance has events (an epoll
	// descriptor is itself pollable) instead of blocking a thread in epoll_wait: a thread in a
	// blocking system call keeps its P until the runtime's monitor takes it back, which can
	// take milliseconds, and meanwhile the workers the loop woke wait for a P.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wakeFd)
		return nil, fmt.Errorf("netpoll: epoll descriptor: %w", err)
	}
	epFile := os.NewFile(uintptr(epfd), "epoll")
	rc, err := epFile.SyscallConn()
	if err != nil {
		epFile.Close()
		unix.Close(wakeFd)
		return nil, fmt.Errorf("netpoll: epoll descriptor: %w", err)
	}
	p := &Poller{
		spare:    int32(cfg.Workers / 2),
		trimDone: make(chan struct{}),
		epfd:     epfd,
		epFile:   epFile,
		epRaw:    rc,
		wakeFd:   wakeFd,
		work:     make(chan job, cfg.Queue),
		loopDone: make(chan struct{}),
	}
	p.workers.Add(cfg.Workers)
	for range cfg.Workers {
		go p.runWorker()
	}
	go p.loop()
	go p.trimStandIns()
	return p, nil
}

// Desc is one connection's registration. It is a small value meant to be kept inside the
// connection's own struct (no allocation of its own); the zero Desc is not registered.
type Desc struct {
	p     *Poller
	token uint64
	fd    int32
	edge  bool // registered by RegisterEdge
}

// Registered reports whether d came from Register and was not unregistered since.
func (d *Desc) Registered() bool { return d.p != nil }

// Register adds the socket fd to the poller, armed for Readable (and HangUp). The handler is
// called for its events until Unregister. The caller owns fd: it keeps it open until it called
// Unregister, and never closes it concurrently with Register, Arm or Unregister (see the package
// comment). fd should be non-blocking, or a handler's read may wait.
func (p *Poller) Register(fd int, h Handler) (Desc, error) { return p.register(fd, h, false) }

// RegisterEdge is Register for a connection that wants every change of readiness reported
// without re-arming: edge-triggered, readable and writable, not one-shot. It saves the
// epoll_ctl of each Arm (a no-op for it) at a price its handler pays: an event can arrive while
// the handler still handles the previous one (it must serialize them itself), and bytes it leaves
// unread raise no further event (it must read until a read comes back short, and until the end
// of input when the event reported HangUp).
func (p *Poller) RegisterEdge(fd int, h Handler) (Desc, error) { return p.register(fd, h, true) }

func (p *Poller) register(fd int, h Handler, edge bool) (Desc, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return Desc{}, ErrClosed
	}
	var idx uint32
	if n := len(p.free); n > 0 {
		idx = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		idx = uint32(len(p.slots))
		p.slots = append(p.slots, slot{})
	}
	s := &p.slots[idx]
	s.gen++
	if s.gen == 0 {
		s.gen = 1 // generation 0 would make slot 0's token the wake token
	}
	s.h = h
	tok := uint64(s.gen)<<32 | uint64(idx)
	p.mu.Unlock()

	d := Desc{p: p, token: tok, fd: int32(fd), edge: edge}
	want := Readable
	if edge {
		want |= Writable // reported on each change, so asked for once
	}
	if err := d.ctl(unix.EPOLL_CTL_ADD, want); err != nil {
		p.forget(tok)
		return Desc{}, err
	}
	return d, nil
}

// Arm asks for the next event: Readable (with HangUp) always, Writable too when want includes it.
// Call it once the handler is done with the previous event.
func (d *Desc) Arm(want Event) error {
	if d.edge {
		if d.p == nil {
			return errNotRegistered
		}
		return nil // every change is reported already (RegisterEdge)
	}
	return d.ctl(unix.EPOLL_CTL_MOD, want|Readable)
}

// Unregister removes the connection from the poller; call it before closing the descriptor.
// Events already taken from the kernel may still reach the handler; handlers must tolerate an
// event after Unregister (and must not touch a descriptor they closed meanwhile).
func (d *Desc) Unregister() {
	if d.p == nil {
		return
	}
	d.p.forget(d.token)
	_ = d.ctl(unix.EPOLL_CTL_DEL, 0)
	d.p = nil
}

func (d *Desc) ctl(op int, want Event) error {
	if d.p == nil {
		return errNotRegistered
	}
	ev := unix.EpollEvent{Events: unix.EPOLLONESHOT | unix.EPOLLRDHUP}
	if d.edge {
		ev.Events = unix.EPOLLET | unix.EPOLLRDHUP
	}
	if want&Readable != 0 {
		ev.Events |= unix.EPOLLIN
	}
	if want&Writable != 0 {
		ev.Events |= unix.EPOLLOUT
	}
	setToken(&ev, d.token)
	if err := unix.EpollCtl(d.p.epfd, op, int(d.fd), &ev); err != nil {
		return fmt.Errorf("netpoll: epoll_ctl: %w", err)
	}
	return nil
}

func (p *Poller) forget(tok uint64) {
	idx, gen := uint32(tok), uint32(tok>>32)
	p.mu.Lock()
	if int(idx) < len(p.slots) && p.slots[idx].gen == gen && p.slots[idx].h != nil {
		p.slots[idx].h = nil
		p.free = append(p.free, idx)
	}
	p.mu.Unlock()
}

// lookup returns the handler registered under tok, or nil.
func (p *Poller) lookup(tok uint64) Handler {
	idx, gen := uint32(tok), uint32(tok>>32)
	p.mu.RLock()
	defer p.mu.RUnlock()
	if int(idx) < len(p.slots) && p.slots[idx].gen == gen {
		return p.slots[idx].h
	}
	return nil
}

// Len returns the number of registered connections.
func (p *Poller) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.slots) - len(p.free)
}

// Close stops the wait loop and the workers after the events already queued were handled.
// Registered connections are not closed; their owners close them.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	var one = [8]byte{1}
	_, _ = unix.Write(p.wakeFd, one[:])
	<-p.loopDone
	<-p.trimDone
	close(p.work)
	p.workers.Wait()
	unix.Close(p.wakeFd)
	return p.epFile.Close()
}

func (p *Poller) loop() {
	defer close(p.loopDone)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := p.wait(events)
		if err != nil {
			// Nothing sensible can continue without the epoll instance.
			panic(fmt.Sprintf("netpoll: epoll_wait: %v", err))
		}
		for i := range n {
			tok := token(&events[i])
			if tok == wakeToken {
				return
			}
			h := p.lookup(tok)
			if h == nil {
				continue // unregistered after the kernel reported the event
			}
			p.work <- job{h: h, ev: translate(events[i].Events)}
		}
	}
}

// wait returns the next events: it takes those ready, and when there are none it parks in Go's
// poller until the epoll descriptor becomes readable.
func (p *Poller) wait(events []unix.EpollEvent) (int, error) {
	var (
		n    int
		werr error
	)
	err := p.epRaw.Read(func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), events, 0)
		if werr == unix.EINTR {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil
	})
	if err != nil {
		return 0, err
	}
	return n, werr
}

func (p *Poller) runWorker() {
	p.running.Add(1)
	defer p.running.Add(-1)
	defer p.workers.Done()
	for j := range p.work {
		if j.h == nil {
			return // told to leave (trim)
		}
		j.h.HandleEvent(j.ev)
	}
}

// maxStandIns bounds the stand-in workers alive at once. Past it, a blocking handler holds its
// worker as before: a bound on goroutines during a long outage, when every connection may be
// waiting on the broker.
const maxStandIns = 8192

// standInLinger is how long stand-ins stay after the waits that needed them: under a steady
// load of waits (publishes to a remote broker come and go tens of thousands of times a second)
// the same stand-ins serve wait after wait, instead of a goroutine started, its stack grown and
// ended for each.
const standInLinger = time.Second

// Blocking runs fn, which may wait on the network (a broker that is slow or down, a key server),
// on the calling goroutine. Once half the pool is waiting in Blocking, it makes sure the pool has
// a stand-in worker for each further wait, so that the other connections' events are still
// handled: without it a few dozen connections waiting on a frozen broker would stop every
// connection of the node. Handlers call it around the waiting part; the connection itself gets
// no new event meanwhile (its registration is one-shot and not re-armed), so its frames stay in
// order. Stand-ins leave once they have not been needed for standInLinger, and the pool is back
// to its size.
func (p *Poller) Blocking(fn func()) {
	// While at most half the pool waits, the other half serves the other connections: no
	// stand-in is needed, and the common short wait (a local broker) costs no goroutine.
	need := p.blocked.Add(1) - p.spare
	defer p.blocked.Add(-1)
	if need > 0 {
		p.notePeak(need)
		p.ensureStandIns(need)
	}
	fn()
}

// notePeak records that n stand-ins are needed now.
func (p *Poller) notePeak(n int32) {
	for {
		pk := p.peak.Load()
		if n <= pk || p.peak.CompareAndSwap(pk, n) {
			return
		}
	}
}

// ensureStandIns starts workers until n stand-ins are alive (or maxStandIns).
func (p *Poller) ensureStandIns(n int32) {
	for {
		e := p.extra.Load()
		if e >= min(n, maxStandIns) {
			return
		}
		if !p.extra.CompareAndSwap(e, e+1) {
			continue
		}
		p.mu.RLock()
		closed := p.closed
		if !closed {
			p.workers.Add(1)
		}
		p.mu.RUnlock()
		if closed {
			p.extra.Add(-1)
			return
		}
		go p.runWorker()
	}
}

// trimStandIns runs every standInLinger until the poller closes, and tells the stand-ins that
// were not needed during the last period to leave.
func (p *Poller) trimStandIns() {
	defer close(p.trimDone)
	t := time.NewTicker(standInLinger)
	defer t.Stop()
	for {
		select {
		case <-p.loopDone:
			return
		case <-t.C:
		}
		now := max(p.blocked.Load()-p.spare, 0)
		keep := max(p.peak.Swap(now), now)
		e := p.extra.Load()
		if e <= keep || !p.extra.CompareAndSwap(e, keep) {
			continue // none to spare, or a wait just started one: next time
		}
		for range e - keep {
			select {
			case p.work <- job{}: // the worker that takes it leaves
			default: // the queue is full: it stays until the next trim
				p.extra.Add(1)
			}
		}
	}
}

func translate(e uint32) Event {
	var ev Event
	if e&(unix.EPOLLIN|unix.EPOLLPRI) != 0 {
		ev |= Readable
	}
	if e&unix.EPOLLOUT != 0 {
		ev |= Writable
	}
	if e&(unix.EPOLLHUP|unix.EPOLLRDHUP|unix.EPOLLERR) != 0 {
		ev |= HangUp
	}
	return ev
}

// The kernel's epoll_data is 64 bits; x/sys/unix splits it into Fd and Pad.
func setToken(ev *unix.EpollEvent, tok uint64) {
	ev.Fd = int32(uint32(tok))
	ev.Pad = int32(uint32(tok >> 32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
