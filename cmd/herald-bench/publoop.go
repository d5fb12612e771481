package main

import (
	"fmt"
	"math"
	"time"

	"golang.org/x/sys/unix"
)

const (
	pubBackoff     = 5 * time.Millisecond // rest after an error, a 429 or a 503
	pubDialTimeout = 10 * time.Second
	pubDialCheck   = 100 * time.Millisecond // how often connects are checked for the timeout
)

// pubPlan is the schedule every loop of a run follows.
type pubPlan struct {
	start    int64   // unix ns of paced send 0
	period   float64 // ns between paced sends over all loops; 0: flat out
	deadline int64   // unix ns: no paced send is due after it, no flat-out send starts after it; 0: none
}

// pubLoop is one epoll instance and the goroutine that owns it, driving a share of a run's
// publishers on non-blocking sockets. In the steady state a request costs one write, one read
// and a share of an epoll_wait: level-triggered EPOLLIN stays registered for the life of a
// connection, and EPOLLOUT only while a connect or a long request is unfinished.
//
// A paced run splits the schedule between the loops: of sends 0, 1, 2, ... this loop makes
// k, k+stride, k+2*stride, ..., each with the first of its publishers that is free.
//
// Everything in it belongs to the loop goroutine, except evfd, which wake writes to, and the
// counters in load, which are atomic.
type pubLoop struct {
	load   *pubLoad
	target *pubTarget
	plan   pubPlan
	epfd   int
	evfd   int // eventfd that wake uses to end the loop

	conns     []*pubConn
	active    int       // publishers not done
	dialing   int       // publishers in psDialing
	idle      connQueue // paced: free publishers waiting for the next send to be due
	resting   connQueue // publishers in psBackoff, in resumeAt order
	k         int64     // paced: number of this loop's next send
	stride    int64
	buf       []byte
	dialCheck int64 // unix ns of the next check of connects for the timeout
	stop      bool
	res       pubResult
	err       error
}

// newPubLoop creates a loop for publishers publishers; it makes paced sends first,
// first+stride, ...
func newPubLoop(load *pubLoad, target *pubTarget, plan pubPlan, publishers, first, stride int) (*pubLoop, error) {
	epfd, evfd, err := newWakeableEpoll()
	if err != nil {
		return nil, err
	}
	l := &pubLoop{load: load, target: target, plan: plan, epfd: epfd, evfd: evfd,
		k: int64(first), stride: int64(stride), buf: make([]byte, 16<<10),
		res: pubResult{Statuses: map[int]uint64{}, Errors: map[string]uint64{}, Lat: newHistogram()}}
	for i := range publishers {
		l.conns = append(l.conns, &pubConn{idx: int32(i), fd: -1})
	}
	l.active = publishers
	return l, nil
}

// wake makes the loop return soon; any goroutine may call it until close.
func (l *pubLoop) wake() {
	one := [8]byte{1}
	_, _ = unix.Write(l.evfd, one[:])
}

// close releases the epoll instance and the eventfd, once run returned and wake is not called.
func (l *pubLoop) close() {
	unix.Close(l.epfd)
	unix.Close(l.evfd)
}

// run is the loop goroutine: it publishes until every publisher is done or wake was called,
// then closes the connections.
func (l *pubLoop) run() {
	defer func() {
		for _, c := range l.conns {
			c.closeFD()
		}
	}()
	now := time.Now().UnixNano()
	for _, c := range l.conns {
		l.startNext(c, now)
	}
	events := make([]unix.EpollEvent, min(len(l.conns)+1, 256))
	for l.active > 0 && !l.stop {
		n, err := unix.EpollWait(l.epfd, events, l.waitMs(now))
		if err != nil && err != unix.EINTR {
			l.err = fmt.Errorf("epoll_wait: %w", err)
			return
		}
		for _, ev := range events[:max(n, 0)] {
			l.dispatch(ev)
		}
		now = time.Now().UnixNano()
		l.timers(now)
	}
}

// dispatch handles one epoll event.
func (l *pubLoop) dispatch(ev unix.EpollEvent) {
	if ev.Fd == wakeIdx {
		l.stop = true
		return
	}
	c := l.conns[ev.Fd]
	if uint32(ev.Pad) != c.gen || c.fd < 0 {
		return // an event of a socket closed earlier in this batch
	}
	if c.state == psDialing {
		l.connected(c)
		return
	}
	if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.read(c)
	}
	if ev.Events&unix.EPOLLOUT != 0 && c.state == psWriting && uint32(ev.Pad) == c.gen {
		l.write(c)
	}
}

// waitMs is epoll_wait's timeout: until the next backoff ends, paced send is due or connect
// check is needed, rounded up to whole milliseconds; -1 when only sockets can make progress.
func (l *pubLoop) waitMs(now int64) int {
	next := int64(math.MaxInt64)
	if l.resting.len() > 0 {
		next = l.resting.front().resumeAt
	}
	if l.idle.len() > 0 && !l.pacedOver() {
		next = min(next, l.due())
	}
	if l.dialing > 0 {
		next = min(next, l.dialCheck)
	}
	if next == math.MaxInt64 {
		return -1
	}
	return int(max(0, (next-now+int64(time.Millisecond)-1)/int64(time.Millisecond)))
}

// timers resumes publishers whose backoff ended, hands out paced sends that are due and fails
// connects that take too long.
func (l *pubLoop) timers(now int64) {
	for l.resting.len() > 0 && l.resting.front().resumeAt <= now {
		l.startNext(l.resting.pop(), now)
	}
	for l.idle.len() > 0 && (l.pacedOver() || l.due() <= now) {
		l.startNext(l.idle.pop(), now)
	}
	if l.dialing > 0 && now >= l.dialCheck {
		l.dialCheck = now + int64(pubDialCheck)
		for _, c := range l.conns {
			if c.state == psDialing && now-c.dialAt >= int64(pubDialTimeout) {
				l.dialing--
				l.failed(c, "dial: i/o timeout", now)
			}
		}
	}
}

// due is when this loop's next paced send is scheduled.
func (l *pubLoop) due() int64 { return l.plan.start + int64(float64(l.k)*l.plan.period) }

// pacedOver reports that this loop made all paced sends scheduled before the deadline.
func (l *pubLoop) pacedOver() bool { return l.plan.deadline != 0 && l.due() > l.plan.deadline }

// startNext starts the next request of a free publisher, or parks it until a paced send is
// due, or finishes it when the run has no more requests for it.
func (l *pubLoop) startNext(c *pubConn, now int64) {
	c.state = psFree
	var due int64
	if l.plan.period > 0 {
		if l.pacedOver() {
			l.finish(c)
			return
		}
		if due = l.due(); due > now {
			l.idle.push(c)
			return
		}
		l.k += l.stride
	} else if l.plan.deadline != 0 && now > l.plan.deadline {
		l.finish(c)
		return
	}
	if count := l.load.cfg.count; count > 0 && l.load.tickets.Add(1) > count {
		// Give the ticket back: a request in flight elsewhere may still be rejected, and its
		// publisher then needs a ticket to send the message again.
		l.load.tickets.Add(-1)
		l.finish(c)
		return
	}
	c.n, c.due = l.load.seq.Add(1), due
	if c.fd < 0 {
		l.dial(c, now)
		return
	}
	l.send(c)
}

// finish ends a publisher's part in the run.
func (l *pubLoop) finish(c *pubConn) {
	c.closeFD()
	c.state = psDone
	l.active--
}

// dial starts a connect; the request goes out once it completes.
func (l *pubLoop) dial(c *pubConn, now int64) {
	fd, err := l.target.socket()
	if err != nil {
		l.failed(c, "dial: "+errName(err), now)
		return
	}
	c.fd, c.gen, c.state, c.dialAt = fd, c.gen+1, psDialing, now
	if err := l.watch(c, unix.EPOLL_CTL_ADD, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP); err != nil {
		l.failed(c, "epoll_ctl: "+errName(err), now)
		return
	}
	if l.dialing == 0 {
		l.dialCheck = now + int64(pubDialCheck)
	}
	l.dialing++
}

// connected finishes a connect and sends the waiting request.
func (l *pubLoop) connected(c *pubConn) {
	l.dialing--
	soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	if err == nil {
		err = l.watch(c, unix.EPOLL_CTL_MOD, unix.EPOLLIN|unix.EPOLLRDHUP)
	}
	if err != nil {
		l.failed(c, "dial: "+errName(err), time.Now().UnixNano())
		return
	}
	l.send(c)
}

// watch registers or changes c's socket in the epoll set.
func (l *pubLoop) watch(c *pubConn, op int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: c.idx, Pad: int32(c.gen)}
	return unix.EpollCtl(l.epfd, op, c.fd, &ev)
}

// send writes the request for message c.n, stamped with the time it is written.
func (l *pubLoop) send(c *pubConn) {
	c.sent = time.Now().UnixNano()
	if l.res.Start == 0 {
		l.res.Start = c.sent
	}
	if c.due != 0 {
		l.res.MaxLag = max(l.res.MaxLag, time.Duration(c.sent-c.due))
	}
	c.req = l.target.build(c.req[:0], c.n, c.sent)
	c.off = 0
	c.ans.reset()
	c.state = psWaiting
	l.write(c)
}

// write writes what is left of the request and waits for EPOLLOUT while some still is.
func (l *pubLoop) write(c *pubConn) {
	n, err := unix.Write(c.fd, c.req[c.off:])
	if err != nil && err != unix.EAGAIN && err != unix.EINTR {
		l.failed(c, "write: "+errName(err), time.Now().UnixNano())
		return
	}
	c.off += max(n, 0)
	var events uint32
	switch {
	case c.off < len(c.req) && c.state == psWaiting:
		c.state, events = psWriting, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP
	case c.off == len(c.req) && c.state == psWriting:
		c.state, events = psWaiting, unix.EPOLLIN|unix.EPOLLRDHUP
	default:
		return
	}
	if err := l.watch(c, unix.EPOLL_CTL_MOD, events); err != nil {
		l.failed(c, "epoll_ctl: "+errName(err), time.Now().UnixNano())
	}
}

// read makes one non-blocking read and feeds the answer parser. The loop is level-triggered:
// the rest of a long answer is reported again.
func (l *pubLoop) read(c *pubConn) {
	n, err := unix.Read(c.fd, l.buf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	now := time.Now().UnixNano()
	if c.state != psWaiting && c.state != psWriting {
		// Nothing was asked: the server closed an idle connection. The next send dials again.
		c.closeFD()
		return
	}
	switch {
	case err != nil:
		l.failed(c, "read: "+errName(err), now)
	case n == 0:
		l.failed(c, "EOF", now)
	default:
		rest, done, err := c.ans.feed(l.buf[:n])
		switch {
		case err != nil:
			l.failed(c, err.Error(), now)
		case len(rest) > 0:
			l.failed(c, errExtraBytes.Error(), now)
		case done:
			l.answered(c, now)
		}
	}
}

// answered counts a complete answer and moves the publisher on.
func (l *pubLoop) answered(c *pubConn, now int64) {
	status := c.ans.status
	l.res.End = max(l.res.End, now)
	l.res.Statuses[status]++
	l.res.Lat.Record(now - c.sent)
	if c.ans.close || c.state == psWriting {
		c.closeFD() // the server ends the connection, or answered before it had the whole request
	}
	if status/100 == 2 {
		l.res.Accepted++
		l.load.Accepted.Add(1)
		l.startNext(c, now)
		return
	}
	l.rejected(c, status == 429 || status == 503, now)
}

// failed counts a request that got no answer, by cause, and drops its connection.
func (l *pubLoop) failed(c *pubConn, cause string, now int64) {
	l.res.Errors[cause]++
	l.res.End = max(l.res.End, now)
	c.closeFD()
	l.rejected(c, true, now)
}

// rejected accounts for a request that was not accepted: with a count to reach, its message is
// sent again. With rest, the publisher waits pubBackoff before its next request.
func (l *pubLoop) rejected(c *pubConn, rest bool, now int64) {
	l.load.Rejected.Add(1)
	if l.load.cfg.count > 0 {
		l.load.tickets.Add(-1)
	}
	if !rest {
		l.startNext(c, now)
		return
	}
	c.state, c.resumeAt = psBackoff, now+int64(pubBackoff)
	l.resting.push(c)
}

// connQueue is a first-in first-out queue of publishers.
type connQueue struct {
	items []*pubConn
	head  int
}

func (q *connQueue) len() int { return len(q.items) - q.head }

func (q *connQueue) front() *pubConn { return q.items[q.head] }

func (q *connQueue) pop() *pubConn {
	c := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	return c
}

// push appends c, first moving the queue to the front of its array once half of it is spent.
func (q *connQueue) push(c *pubConn) {
	if q.head > 0 && q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, c)
}
