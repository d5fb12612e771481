package gateway

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gateway/herald/gateway/netpoll"
	"golang.org/x/sys/unix"
)

// conn is the part of a WebSocket or SSE connection that the epoll core drives: event handling,
// non-blocking reads and writes, the bounded outbound queue, and closing.
//
// The socket is a bare descriptor: adopt took it out of its net.Conn (see detach), so no netFD,
// addresses or runtime poll descriptor stay behind per connection. Descriptor numbers are reused
// as soon as they are closed, so the number is only used while it is certainly open:
//   - Writes, epoll_ctl (start, rearm, Arm on a short write, Unregister) and the decision to
//     close all happen under wmu, and only while !closed.
//   - Reads happen only in the event handler (busy set under evMu). Closing while the handler is
//     busy shuts the socket down and leaves the close(2) to the handler when it finishes
//     (closeFD); an event that arrives after the close finds fdClosed and does nothing.
//
// Concurrency contract:
//   - Event handling: one goroutine at a time (evMu's busy flag; the registration is one-shot).
//     Read-side state of the protocol (decoder, rate window) belongs to that goroutine.
//   - wmu guards every field in "write state" and every write to the socket. Writes never block:
//     a write the socket does not take whole is queued and EPOLLOUT armed.
//   - The heartbeat wheel's slot lock guards wheelPrev/wheelNext.
//   - Lock order: wmu, then evMu (releaseFD), then the poller's own lock (Unregister). The event
//     handler never holds evMu while it takes wmu.
//
// Fields are ordered to avoid padding: the struct is embedded in every session, and its size
// decides the session's size class (see TestSessionSizes).
type conn struct {
	gw    *Gateway
	proto protocol
	id    uint64
	desc  netpoll.Desc // set by start, cleared by Unregister; under wmu

	// The small fields are packed into whole words, so some sit apart from their group; each
	// comment says what guards it.
	fd         int32 // the socket; valid as described above
	kind       sinkKind
	reason     reason // why it closed; set once under wmu
	closed     bool   // under wmu
	closeAfter bool   // under wmu: close once the queue is written (a graceful close in progress)

	// event state, guarded by evMu
	evMu      sync.Mutex
	pendingEv netpoll.Event
	busy      bool
	closeFD   fdEnd // closed while busy: how the handler ends fd when it finishes
	fdClosed  bool  // fd is closed: late events are ignored
	// midFrame (under wmu): the socket took only part of the buffer at the head of the queue,
	// so the client has the start of a frame (or SSE event) whose end is still queued. A close
	// frame written now would land in the middle of it.
	midFrame bool

	// write state, guarded by wmu (with closed, closeAfter and midFrame above)
	wmu    sync.Mutex
	queue  [][]byte // unwritten bytes; slices may be shared with other connections: read-only
	queued int      // bytes in queue
	// replay is the connection's replay in progress (see replayRun): nil unless a replay is
	// being paged or its last page is still queued, so an idle connection holds none.
	replay *replayRun

	// liveness, read by the heartbeat wheel
	lastSeen  atomic.Int64 // wheel tick of the last bytes received
	wheelPrev *conn
	wheelNext *conn
}

// protocol is what a WebSocket or SSE session adds to conn.
type protocol interface {
	// onData handles bytes the client sent. A returned error closes the connection.
	onData(p []byte) error
	// closeFrame returns the bytes to send before closing for a reason, or nil.
	closeFrame(c closeCause) []byte
	// cleanup releases the session's subscriptions after the socket closed.
	cleanup()
	// heartbeat is called by the wheel about every heartbeat interval.
	heartbeat(now int64)
}

// closeCause says why the gateway ends a connection.
type closeCause struct {
	code   uint16 // WebSocket close code
	reason string // human-readable, sent in the close frame
	metric string // label of herald_disconnects_total
	// retryAfter is the reconnect hint of a shutdown (SSE sends it as the retry field).
	retryAfter time.Duration
}

var errWouldBlock = errors.New("would block")

// readBufSize is the size of the pooled buffers that reads use; no connection keeps one.
const readBufSize = 16 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// HandleEvent implements netpoll.Handler.
func (c *conn) HandleEvent(ev netpoll.Event) {
	c.evMu.Lock()
	if c.busy {
		c.pendingEv |= ev
		c.evMu.Unlock()
		return
	}
	if c.fdClosed {
		c.evMu.Unlock() // taken from the kernel before the connection closed
		return
	}
	c.busy = true
	c.evMu.Unlock()
	for {
		if ev&netpoll.Writable != 0 {
			if r := c.flush(); r != nil {
				c.continueReplay(r)
			}
		}
		read, drain := ev&(netpoll.Readable|netpoll.HangUp) != 0, ev&netpoll.HangUp != 0
		if c.kind == kindHTTP {
			var err error
			if read, drain, err = c.proto.(*httpSession).readGate(read, drain); err != nil && err != errReadsHeld {
				c.close(causeFromError(err))
			}
		}
		if read {
			c.readAvailable(drain)
		}
		c.evMu.Lock()
		if c.pendingEv == 0 || c.fdClosed {
			c.busy = false
			if c.closeFD != keepFD {
				c.endFD(c.closeFD)
				c.closeFD, c.fdClosed = keepFD, true
			}
			c.evMu.Unlock()
			break
		}
		ev, c.pendingEv = c.pendingEv, 0
		c.evMu.Unlock()
	}
	c.rearm()
}

// rearm asks epoll for the next event. It runs under wmu so that the interest it sets reflects
// the queue as the last writer left it.
func (c *conn) rearm() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return
	}
	want := netpoll.Readable
	if len(c.queue) > 0 {
		want |= netpoll.Writable
	}
	if err := c.desc.Arm(want); err != nil {
		c.closeLocked(causeIO)
	}
}

// readAvailable reads what the socket holds, up to a budget so one busy client cannot hold a
// worker, and hands it to the protocol. hangUp says the event reported the peer's end.
func (c *conn) readAvailable(hangUp bool) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	edge := c.edgeTriggered()
	for range 4 {
		n, err := c.read(buf)
		if n > 0 {
			c.lastSeen.Store(c.gw.wheel.now())
			if perr := c.proto.onData(buf[:n]); perr != nil {
				if perr != errReadsHeld { // held: read again once the answers are out
					c.close(causeFromError(perr))
				}
				return
			}
			if n < len(buf) && err == nil && !(edge && hangUp) {
				// The socket is drained: leave it to the next event rather than pay for a read
				// that finds nothing. Bytes that arrive meanwhile raise that event (re-arming is
				// level-triggered; an edge-triggered registration reports every arrival). With
				// edge triggering the end of input is reported once: it is read now.
				return
			}
		}
		switch {
		case errors.Is(err, errWouldBlock):
			return
		case err != nil:
			c.close(causeIO)
			return
		case n == 0:
			c.close(causePeerClosed)
			return
		}
	}
	if edge {
		// The budget ran out with bytes possibly left, which raise no further event: the
		// handler loops once more (see HandleEvent) after letting go of the read buffer.
		c.evMu.Lock()
		c.pendingEv |= netpoll.Readable
		if hangUp {
			c.pendingEv |= netpoll.HangUp
		}
		c.evMu.Unlock()
	}
}

// edgeTriggered reports whether the connection is registered with netpoll.RegisterEdge: the
// keep-alive HTTP connections (see Gateway.start).
func (c *conn) edgeTriggered() bool { return c.kind == kindHTTP }

// read makes one non-blocking read. Only the event handler calls it: fd stays open meanwhile.
func (c *conn) read(buf []byte) (int, error) {
	n, err := unix.Read(int(c.fd), buf)
	if err == unix.EINTR {
		n, err = unix.Read(int(c.fd), buf)
	}
	if err == unix.EAGAIN || err == unix.EINTR {
		return 0, errWouldBlock
	}
	if n < 0 {
		n = 0
	}
	return n, err
}

// write sends a then b (either may be empty). The slices must stay unchanged afterwards: what
// the socket does not take is queued by reference. It reports false when the connection is closed.
func (c *conn) write(a, b []byte) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(a, b)
}

// writeLocked is write with wmu held.
func (c *conn) writeLocked(a, b []byte) bool {
	// Pooled: arrays on the stack would escape (append may move them), two allocations per
	// write.
	v := gatherVecs.Get().(*iovecs)
	v.add(a)
	v.add(b)
	ok := c.writevLocked(v)
	v.reset()
	gatherVecs.Put(v)
	return ok
}

// writeReplayLocked writes one page of a replay: messages the client asked to resume (after its
// subscribe answer, for the first page). What the socket does not take is queued like any write,
// but up to ReplayQueueBytes of it does not count toward the slow-consumer bound (QueueBytes):
// a replay is paced by the socket page by page (see replayRun), so a client that resumes after a
// long absence is never disconnected for reading it slowly, and the queue holds at most one page
// of it. Live messages queued behind a page count as usual. wmu must be held.
func (c *conn) writeReplayLocked(p []byte) bool {
	if c.closed {
		return false
	}
	limit := c.gw.cfg.ReplayQueueBytes
	r := c.replay
	if r == nil {
		r = &replayRun{}
	}
	r.end = min(c.queued+len(p), limit) // the most this write may queue past the bound
	c.replay = r
	ok := c.writeLocked(p, nil)
	if c.replay == nil { // closed meanwhile
		return ok
	}
	r.end = min(c.queued, limit) // the page's end is the queue's end
	if r.end > 0 {
		r.waiting = true // the flush that writes the page's end continues the run (see flush)
	} else if len(r.jobs) == 0 {
		c.replay = nil
	}
	return ok
}

// writevLocked sends the buffers of v, in order, with one system call: several messages for a
// connection cost one write, not one each. Like write, it queues what the socket does not take
// (by reference: the buffers must stay unchanged) and reports false when the connection is
// closed. wmu must be held.
func (c *conn) writevLocked(v *iovecs) bool {
	if c.closed || c.closeAfter {
		return !c.closed
	}
	if v.total == 0 {
		return true
	}
	if len(c.queue) > 0 {
		c.enqueue(v.bufs, 0)
		return !c.closed
	}
	n, err := v.writeTo(int(c.fd))
	if err != nil {
		c.closeLocked(causeIO)
		return false
	}
	if n == v.total {
		return true
	}
	c.enqueue(v.bufs, n)
	// Before start registers the connection (a replay written during the handshake), there is
	// nothing to arm yet: start arms EPOLLOUT itself when it finds bytes queued.
	if !c.closed && c.desc.Registered() {
		if err := c.desc.Arm(netpoll.Readable | netpoll.Writable); err != nil {
			c.closeLocked(causeIO)
		}
	}
	return !c.closed
}

// enqueue queues bufs, minus their first skip bytes (those the socket took), and closes the
// connection as a slow consumer once the queue passes the configured bound.
func (c *conn) enqueue(bufs [][]byte, skip int) {
	for _, p := range bufs {
		if skip >= len(p) {
			skip -= len(p)
			continue
		}
		if len(c.queue) == 0 {
			c.midFrame = skip > 0
		}
		p, skip = p[skip:], 0
		c.queue = append(c.queue, p)
		c.queued += len(p)
	}
	if c.queued-c.replayQueued() > c.gw.cfg.QueueBytes {
		c.gw.metrics.SlowConsumerDisconnects.Inc()
		c.dropQueue()
		c.closeLocked(causeSlow)
	}
}

// writeNow makes one non-blocking write attempt and returns how much the socket took.
func (c *conn) writeNow(p []byte) (int, error) { return taken(unix.Write(int(c.fd), p)) }

// replayQueued is how many queued bytes, from the head, belong to a replay page. wmu must be held.
func (c *conn) replayQueued() int {
	if c.replay == nil {
		return 0
	}
	return c.replay.end
}

// flush writes queued bytes after EPOLLOUT said the socket has room. It returns the connection's
// replay when the socket took the end of its last page: the caller (the event handler) continues
// it (see continueReplay).
func (c *conn) flush() *replayRun {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.queue) > 0 && !c.closed {
		// The queue goes out with one writev per 1,024 buffers, not a write per buffer: a
		// subscriber that fell behind can have many small messages queued.
		v := gatherVecs.Get().(*iovecs)
		for len(c.queue) > 0 && !c.closed {
			for _, p := range c.queue[:min(len(c.queue), maxIovecs)] {
				v.add(p)
			}
			total := v.total
			n, err := v.writeTo(int(c.fd))
			v.reset()
			if err != nil {
				c.closeLocked(causeIO)
				break
			}
			c.dequeue(n)
			if n < total {
				break // the socket is full again
			}
		}
		gatherVecs.Put(v)
	}
	if len(c.queue) == 0 {
		c.queue = nil // let the backing array go: an idle connection holds no buffer
		if c.closeAfter && !c.closed {
			c.closeLocked(closeCause{})
		}
	}
	if r := c.replay; r != nil && r.waiting && r.end == 0 && !c.closed {
		r.waiting = false
		return r
	}
	return nil
}

// gatherVecs holds the gathering space of writes and flushes; what is put back is reset.
var gatherVecs = sync.Pool{New: func() any { return new(iovecs) }}

// dequeue drops the first n queued bytes, which the socket took. wmu must be held.
func (c *conn) dequeue(n int) {
	c.queued -= n
	if c.replay != nil {
		c.replay.end = max(c.replay.end-n, 0)
	}
	i := 0
	for i < len(c.queue) && n >= len(c.queue[i]) {
		n -= len(c.queue[i])
		c.queue[i] = nil
		i++
	}
	c.queue = c.queue[i:]
	switch {
	case n > 0:
		c.queue[0] = c.queue[0][n:]
		c.midFrame = true
	case i > 0:
		c.midFrame = false // the head is a whole buffer again
	}
}

// dropQueue forgets every queued byte. wmu must be held.
func (c *conn) dropQueue() { c.queue, c.queued, c.replay = nil, 0, nil }

// close ends the connection now for cause (sending the protocol's close frame if the socket
// takes it).
func (c *conn) close(cause closeCause) {
	c.wmu.Lock()
	c.closeLocked(cause)
	c.wmu.Unlock()
}

// isClosed reports whether the connection is closed. Its cleanup may not have run yet.
func (c *conn) isClosed() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closed
}

// closeGracefully queues the protocol's close frame after what is already queued and closes once
// it is written (or when the shutdown deadline closes it hard).
func (c *conn) closeGracefully(cause closeCause) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed || c.closeAfter {
		return
	}
	if p, ok := c.proto.(interface{ closesLater() bool }); ok && p.closesLater() {
		return // the protocol closes it once its work in progress is done
	}
	c.reason = reasonOf(cause.metric)
	if f := c.proto.closeFrame(cause); len(f) > 0 {
		c.writeLocked(f, nil)
	}
	if c.closed {
		return
	}
	if len(c.queue) == 0 {
		c.closeLocked(closeCause{})
		return
	}
	c.closeAfter = true
}

// closeLocked closes the socket; the session's cleanup runs later on the janitor, because the
// caller may hold hub locks that cleanup needs. wmu must be held.
func (c *conn) closeLocked(cause closeCause) {
	if c.closed {
		return
	}
	if c.reason == 0 {
		c.reason = reasonOf(cause.metric)
	}
	end := closeFD
	if !c.closeAfter && cause.metric != "" && !c.midFrame {
		if f := c.proto.closeFrame(cause); len(f) > 0 && len(c.queue) == 0 {
			// Best effort: a full socket buffer loses it. Written whole, it is worth keeping
			// the socket open a moment so that the client reads it (see linger.go).
			if n, err := c.writeNow(f); err == nil && n == len(f) {
				end = lingerFD
			}
		}
	}
	// Closing a socket with unread input makes the kernel answer with a reset, which can
	// destroy the close frame before the client reads it: the client would see a dropped
	// connection instead of, say, 1009 or 4029. Discard what is waiting first.
	discardInput(int(c.fd))
	c.closed = true
	c.dropQueue()
	c.releaseFD(end)
	c.gw.retire(c)
}

// fdEnd is how a connection's descriptor ends once nothing uses it.
type fdEnd uint8

const (
	keepFD   fdEnd = iota // not ended (yet)
	closeFD               // closed at once
	lingerFD              // handed to the lingerer: a close frame went out and should be read
)

// endFD ends the descriptor as end says. Nothing else may use it afterwards.
func (c *conn) endFD(end fdEnd) {
	if end == lingerFD {
		c.gw.lingers.add(int(c.fd), c.gw.wheel.now())
		return
	}
	_ = unix.Close(int(c.fd))
}

// releaseFD takes the socket out of epoll and ends it as end says (see endFD), or, when the
// event handler is using it, leaves that to the handler when it finishes: a socket to close is
// shut down meanwhile (the client sees the end at once and the handler's next read returns EOF),
// one to linger only for writing (the lingerer does that too). wmu must be held and closed just
// set: no write and no epoll_ctl uses fd any more.
func (c *conn) releaseFD(end fdEnd) {
	c.desc.Unregister()
	c.evMu.Lock()
	defer c.evMu.Unlock()
	if c.busy {
		how := unix.SHUT_RDWR
		if end == lingerFD {
			how = unix.SHUT_WR
		}
		_ = unix.Shutdown(int(c.fd), how)
		c.closeFD = end
		return
	}
	c.fdClosed = true
	c.endFD(end)
}

// discardInput reads and drops what the socket holds, up to a bound, without blocking.
func discardInput(fd int) {
	var buf [4096]byte
	for range 64 { // 256 KiB: more than a refused frame leaves behind

		n, err := unix.Read(fd, buf[:])
		if n <= 0 || err != nil {
			return
		}
	}
}

// reason is a close cause's metric label, interned: a byte in every connection instead of a
// string header. 0 is "" (not closed, or closed without a label).
type reason uint8

var reasons = struct {
	sync.Mutex
	names []string
}{names: []string{""}}

// reasonOf interns a metric label. Labels are the gateway's own constants, a few dozen at most;
// should there ever be more than a byte holds, the extra ones share the last index.
func reasonOf(metric string) reason {
	reasons.Lock()
	defer reasons.Unlock()
	for i, n := range reasons.names {
		if n == metric {
			return reason(i)
		}
	}
	if len(reasons.names) > 255 {
		return 255
	}
	reasons.names = append(reasons.names, metric)
	return reason(len(reasons.names) - 1)
}

func (r reason) String() string {
	reasons.Lock()
	defer reasons.Unlock()
	return reasons.names[r]
}

// Close causes.
var (
	causeIO         = closeCause{metric: "io_error"} // code 0: nothing is sent
	causePeerClosed = closeCause{metric: "client_closed"}
	causeSlow       = closeCause{code: 4008, reason: "slow consumer: resume from your last id", metric: "slow_consumer"}
)

// causeError is an error that carries how to close the connection.
type causeError struct{ cause closeCause }

func (e *causeError) Error() string { return e.cause.reason }

func causeFromError(err error) closeCause {
	var ce *causeError
	if errors.As(err, &ce) {
		return ce.cause
	}
	return closeCause{code: 1011, reason: "internal error", metric: "internal_error"}
}
