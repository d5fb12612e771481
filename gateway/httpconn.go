package gateway

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/herald-gateway/herald/gateway/http1"
)

// Keep-alive HTTP connections in the epoll core.
//
// A backend that publishes over a keep-alive connection sends the same small request again and
// again. net/http spends on each one a goroutine wake-up, a read that finds nothing, a
// background read and its goroutine, header maps and response buffers: most of a publish's cost.
// So after a publish that net/http served, the API hands such a connection to the epoll core
// (AdoptHTTP), which reads the following requests itself (package http1) and has the API answer
// them (http1.Handler) with one read and one write each, no goroutine while idle and no buffer
// kept between requests. A request the core does not serve (another route, an unusual header, an
// error answer the API wants to render the usual way, a request that arrives in pieces) goes
// back to net/http with the connection, unread bytes first, through the server's listener
// (Listener); net/http answers it exactly as it answers any request.

// httpLimits bound the requests the core reads itself: larger ones go to net/http, which
// applies the API's own limits.
var httpLimits = http1.Limits{MaxHead: 8 << 10, MaxBody: 128 << 10}

// httpSession is a keep-alive HTTP connection that the epoll core reads.
type httpSession struct {
	conn
	h http1.Handler
	// inFlight is set while a request is served; guarded by conn.wmu. Shutdown closes an
	// adopted connection at once unless a request is in flight: that one is answered first.
	inFlight bool
	// paused: an answer waits in the queue (the client reads slower than it sends), so the
	// core reads nothing more until it is written, as net/http reads a connection's next request
	// only after answering the one before. held is what was read and not served yet. Both
	// belong to the event handler. See readGate.
	paused bool
	held   []byte
}

var (
	errHandedBack = errors.New("connection handed back to net/http")
	// errReadsHeld tells the event handler to stop reading: an answer waits in the queue.
	errReadsHeld = errors.New("reads held until the answers are written")
)

// responseBufs holds the buffers answers are built in; a buffer the socket did not take whole
// stays with the connection's queue and is not returned.
var responseBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// AdoptHTTP takes over the keep-alive connection of a request net/http has just served: it
// hijacks it from w, writes answer (the complete HTTP response of that request) and from then on
// reads the connection's requests in the epoll core and has h answer them. It returns false,
// having done nothing, when it cannot (no Listener to give connections back through, shutting
// down, w cannot be hijacked): the caller then answers through w as usual. Once it returned true
// the request is answered, or its connection closed.
func (g *Gateway) AdoptHTTP(w http.ResponseWriter, answer []byte, h http1.Handler) bool {
	l := g.handBack.Load()
	hj, ok := w.(http.Hijacker)
	if l == nil || !ok || g.draining.Load() {
		return false
	}
	netc, rw, err := hj.Hijack()
	if err != nil {
		return false
	}
	var pipelined []byte
	if n := rw.Reader.Buffered(); n > 0 {
		pipelined, _ = rw.Reader.Peek(n)
		pipelined = append([]byte(nil), pipelined...)
	}
	if pc, ok := netc.(*prefixConn); ok {
		// A connection handed back earlier: the socket is underneath, with the bytes net/http
		// has not read yet.
		pipelined = append(pipelined, pc.prefix...)
		netc = pc.Conn
	}
	_ = netc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := netc.Write(answer); err != nil {
		netc.Close()
		return true
	}
	_ = netc.SetDeadline(time.Time{})
	if len(pipelined) > 0 {
		// The client sent its next request already: simplest to leave it to net/http.
		l.give(&prefixConn{Conn: netc, prefix: pipelined})
		return true
	}
	s := &httpSession{h: h}
	if !g.adopt(&s.conn, netc, kindHTTP, s, nil) {
		// net/http can go on serving it (it needs no second descriptor).
		l.give(netc)
		return true
	}
	g.start(&s.conn)
	return true
}

// requests holds parsed requests between reads; a request handed to the handler through an
// interface would otherwise be allocated for each.
var requests = sync.Pool{New: func() any { return new(http1.Request) }}

func (s *httpSession) onData(p []byte) error {
	req := requests.Get().(*http1.Request)
	defer func() {
		*req = http1.Request{} // no reference into the read buffer stays behind
		requests.Put(req)
	}()
	for len(p) > 0 {
		n, st := http1.Parse(p, httpLimits, req)
		if st != http1.Complete {
			// Requests that arrive in pieces are rare (clients write a small request at once):
			// net/http, with its header timeout, takes those too.
			return s.handBack(p)
		}
		served, queued := s.serve(req)
		if !served {
			return s.handBack(p)
		}
		p = p[n:]
		if queued {
			// The socket did not take the answer whole. Serving on would queue answers
			// without bound for a client that does not read, and a request handed back to
			// net/http would be answered before them: hold the rest until the queue is out.
			s.paused, s.held = true, append([]byte(nil), p...)
			return errReadsHeld
		}
	}
	return nil
}

// readGate decides, for the event handler, whether it reads the socket now (read) and whether
// to the end of input (drain). While an answer waits in the queue it reads nothing; once the
// queue is written it serves the requests it held and then reads to the end: with edge
// triggering the bytes (and the end of input) reported while reads were held are not reported
// again.
func (s *httpSession) readGate(read, drain bool) (bool, bool, error) {
	if !s.paused {
		return read, drain, nil
	}
	c := &s.conn
	c.wmu.Lock()
	waiting := c.closed || len(c.queue) > 0
	c.wmu.Unlock()
	if waiting {
		return false, false, nil
	}
	held := s.held
	s.paused, s.held = false, nil
	if len(held) > 0 {
		if err := s.onData(held); err != nil {
			return false, false, err
		}
	}
	return true, true, nil
}

// serve answers one request with the handler. served reports whether it did (or found the
// connection closed); queued whether the answer, or part of it, waits in the queue.
func (s *httpSession) serve(req *http1.Request) (served, queued bool) {
	c := &s.conn
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return true, false // closed meanwhile (shutdown): nothing more to do
	}
	s.inFlight = true
	c.wmu.Unlock()

	bp := responseBufs.Get().(*[]byte)
	var (
		out []byte
		ok  bool
	)
	// The handler may wait on the broker.
	c.gw.poller.Blocking(func() { out, ok = s.h.ServeFast(req, (*bp)[:0]) })

	c.wmu.Lock()
	s.inFlight = false
	if ok {
		c.writeLocked(out, nil)
		if c.gw.draining.Load() && !c.closed {
			// Shutdown skipped this connection while it served: close it now, once the answer
			// is out.
			if len(c.queue) == 0 {
				c.closeLocked(closeCause{metric: "shutdown"})
			} else {
				c.closeAfter = true
			}
		}
	}
	queued = len(c.queue) > 0
	c.wmu.Unlock()
	if !queued && cap(out) <= 4096 {
		*bp = out[:0]
		responseBufs.Put(bp)
	}
	return ok, queued
}

// handBack gives the connection to net/http with rest, the bytes read and not answered, to be
// read first. It runs in the event handler, which alone reads the socket, and returns
// errHandedBack so the handler stops reading it. The queue is empty: onData serves no request
// while an answer waits (see readGate), so every answer the core owes is written.
func (s *httpSession) handBack(rest []byte) error {
	c := &s.conn
	prefix := append([]byte(nil), rest...)
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return errHandedBack
	}
	c.closed = true
	c.reason = reasonHandedBack
	c.dropQueue()
	c.desc.Unregister()
	c.evMu.Lock()
	c.fdClosed = true // the event handler neither re-arms nor closes it
	c.evMu.Unlock()
	fd := int(c.fd)
	c.gw.retire(c)
	c.wmu.Unlock()

	netc, err := fileConn(fd)
	if err != nil {
		c.gw.log.Error("cannot hand a connection back to net/http", "err", err)
		return errHandedBack
	}
	c.gw.handBack.Load().give(&prefixConn{Conn: netc, prefix: prefix})
	return errHandedBack
}

// closesLater tells closeGracefully (shutdown) to leave the connection open while a request is in
// flight: serve closes it once the answer is written. wmu must be held.
func (s *httpSession) closesLater() bool { return s.inFlight }

func (s *httpSession) closeFrame(closeCause) []byte { return nil }

func (s *httpSession) cleanup() {}

// heartbeat closes a connection idle for longer than Config.HTTPIdleTimeout, as net/http's
// IdleTimeout (herald serve gives both --idle-timeout) does for the connections it keeps.
func (s *httpSession) heartbeat(now int64) {
	if now-s.lastSeen.Load() >= int64(s.gw.cfg.HTTPIdleTimeout/s.gw.cfg.Tick) {
		s.close(closeCause{metric: "idle"})
	}
}

var reasonHandedBack = reasonOf("handed_back")
