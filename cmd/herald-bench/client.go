package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// clientState is where a connection is in its life.
type clientState uint8

const (
	stQueued      clientState = iota + 1 // waiting for a dial slot
	stRetry                              // an attempt failed; waiting for retryAt
	stConnecting                         // non-blocking connect in progress
	stHandshake                          // request sent, reading the response head
	stSubscribing                        // upgraded (WS) or streaming (SSE), not yet subscribed
	stLive                               // subscribed: counting messages
	stFailed                             // gave up before it was subscribed
	stClosed                             // lost after it was subscribed
	stDropped                            // closed by the bench (storm), to be resumed
)

// client is one subscriber connection. Everything in it belongs to its loop's goroutine.
type client struct {
	loop    *loop
	idx     int32  // position in loop.clients; epoll events carry it
	gen     uint32 // bumped whenever the descriptor changes; epoll events carry it too
	fd      int    // -1 when closed
	state   clientState
	resume  bool  // connect with since (WS) or Last-Event-ID (SSE) = last
	tries   uint8 // failed attempts of the current connect
	channel string
	src     unix.Sockaddr
	startAt int64 // unix ns when the current attempt began
	retryAt int64

	last  msgID  // newest message id seen; resume point
	count uint32 // messages since the last reset
	dups  uint32 // messages whose id was not above last

	head   []byte // response head, while handshaking
	frames frameDecoder
	events sseDecoder
}

// clientMask masks the bench's client frames; any key is valid.
var clientMask = [4]byte{0x6b, 0x1f, 0x8e, 0x3d}

// lost reports a connection that will not receive anything more without a new connect.
func (c *client) lost() bool { return c.state == stFailed || c.state == stClosed }

func (c *client) handle(ev uint32) {
	if c.state == stConnecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			c.connected()
		}
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.read()
	}
}

// connected finishes the non-blocking connect and sends the request.
func (c *client) connected() {
	soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	if err != nil {
		c.attemptFailed("connect: " + errName(err))
		return
	}
	req := c.request()
	if n, err := unix.Write(c.fd, req); err != nil || n != len(req) {
		c.attemptFailed("write request")
		return
	}
	c.state = stHandshake
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: c.idx, Pad: int32(c.gen)}
	if err := unix.EpollCtl(c.loop.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		c.attemptFailed("epoll_ctl: " + errName(err))
	}
}

func (c *client) request() []byte {
	o := c.loop.opts
	since := ""
	if c.resume {
		since = c.last.String()
	}
	if o.sse {
		return sseRequest(o.host, o.token, c.channel, since)
	}
	return wsRequest(o.host, o.token, c.channel, since, clientMask)
}

// read makes one non-blocking read: the loop is level-triggered, so what is left is reported
// again on the next round, after the other ready connections had their turn.
func (c *client) read() {
	l := c.loop
	n, err := unix.Read(c.fd, l.buf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	l.now = time.Now().UnixNano()
	if n <= 0 {
		reason := "server closed"
		if err != nil {
			reason = errName(err)
		}
		c.lostConn(reason)
		return
	}
	p := l.buf[:n]
	if c.state == stHandshake {
		if p, err = c.handshake(p); err != nil {
			c.lostConn(err.Error())
			return
		}
	}
	if len(p) == 0 || c.state < stSubscribing {
		return
	}
	if l.opts.sse {
		err = c.events.feed(p, c)
	} else {
		err = c.frames.feed(p, c)
	}
	if err != nil {
		c.lostConn(err.Error())
	}
}

// handshake collects the response head; it returns the bytes that follow it.
func (c *client) handshake(p []byte) ([]byte, error) {
	c.head = append(c.head, p...)
	status, n, err := responseHead(c.head)
	if err != nil || n == 0 {
		return nil, err
	}
	want := 101
	if c.loop.opts.sse {
		want = 200
	}
	if status != want {
		return nil, errors.New("status " + strconv.Itoa(status))
	}
	rest := c.head[n:]
	c.head = nil
	c.state = stSubscribing
	return rest, nil
}

// onFrame implements frameHandler.
func (c *client) onFrame(op byte, p []byte) error {
	switch op {
	case opText:
		return c.onText(p)
	case opPing:
		f := appendClientFrame(make([]byte, 0, 16+len(p)), opPong, p, clientMask)
		_, _ = unix.Write(c.fd, f) // a pong the socket cannot take now is skipped; pings repeat
		return nil
	case opPong:
		return nil
	case opClose:
		code := 1005
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		return errors.New("close " + strconv.Itoa(code))
	}
	return errors.New("unexpected opcode " + strconv.Itoa(int(op)))
}

var (
	keyCode        = []byte(`"code":"`)
	recoveredFalse = []byte(`"recovered":false`)
)

func (c *client) onText(p []byte) error {
	switch string(frameType(p)) {
	case "message":
		id, sent, ok := parseMessage(p)
		if !ok {
			return errors.New("malformed message frame")
		}
		c.loop.onMessage(c, id, sent)
	case "subscribed":
		if c.resume && bytes.Contains(p, recoveredFalse) {
			c.loop.gaps++ // the log no longer holds everything after c.last: told, not silent
		}
		if raw, ok := stringField(p, keyLast); ok && !c.resume {
			if id, ok := parseID(raw); ok && c.last.less(id) {
				c.last = id
			}
		}
		c.synced()
	case "error":
		code, _ := stringField(p, keyCode)
		return errors.New("error " + string(code))
	}
	return nil
}

// onEvent implements eventHandler.
func (c *client) onEvent(id, event, data []byte) error {
	switch string(event) {
	case "herald.gap":
		c.loop.gaps++
		return nil
	case "herald.token-expired":
		return errors.New("token expired")
	}
	if data == nil {
		// The cursor event that follows the replay: subscribed.
		if parsed, ok := parseID(id); ok && !c.resume && c.last.less(parsed) {
			c.last = parsed
		}
		c.synced()
		return nil
	}
	mid, sent, ok := parseMessage(data)
	if !ok {
		return errors.New("malformed message event")
	}
	c.loop.onMessage(c, mid, sent)
	return nil
}

func (c *client) synced() {
	if c.state != stSubscribing {
		return
	}
	c.state = stLive
	c.tries = 0
	c.loop.inflight--
	c.loop.synced.Add(1)
}

// onMessage counts a message and checks that ids strictly increase.
func (l *loop) onMessage(c *client, id msgID, sent int64) {
	if !c.last.less(id) {
		c.dups++
		l.dups++
		return
	}
	c.last = id
	c.count++
	l.received.Add(1)
	l.lastRecv = l.now
	if sent > 0 && l.recordLatency {
		l.lat.Record(l.now - sent)
	}
	if c.count == l.expect {
		l.reached(true)
	}
}

// lostConn ends the connection: a failed attempt before it was subscribed, a lost connection after.
func (c *client) lostConn(reason string) {
	if c.state != stLive {
		c.attemptFailed(reason)
		return
	}
	l := c.loop
	c.closeFD()
	if l.opts.resume {
		// As an SDK client would: connect again at once, from the last id seen; the replay
		// brings what was missed, and the id check counts any duplicate.
		l.resumed[reason]++
		l.synced.Add(-1)
		c.resume = true
		l.enqueue(c)
		l.startDials()
		return
	}
	c.state = stClosed
	l.closes[reason]++
	if l.expect > 0 && c.count < l.expect {
		l.reached(false)
	}
}

// attemptFailed closes a connection that did not get subscribed and retries it after a
// jittered backoff, or gives up.
func (c *client) attemptFailed(reason string) {
	l := c.loop
	c.closeFD()
	l.errs[reason]++
	// A subscriber resuming after the gateway closed it keeps trying, as an SDK client does: an
	// "unavailable" answer under load is the gateway saying "later", not a loss.
	if int(c.tries) < l.opts.retries || (l.opts.resume && c.resume) {
		c.tries = min(c.tries+1, 100)
		c.state = stRetry
		c.retryAt = time.Now().UnixNano() + int64(backoff(int(c.tries)))
		return
	}
	c.state = stFailed
	l.inflight--
	l.failed.Add(1)
	if l.expect > 0 && c.count < l.expect {
		l.reached(false)
	}
}

// closeFD closes the socket with a reset (SO_LINGER 0), which leaves no TIME_WAIT entry behind to
// hold the port, and forgets any partial input.
func (c *client) closeFD() {
	if c.fd < 0 {
		return
	}
	_ = unix.SetsockoptLinger(c.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	_ = unix.Close(c.fd) // closing the only descriptor also removes it from the epoll set
	c.fd = -1
	c.gen++
	c.head = nil
	c.frames = frameDecoder{}
	c.events = sseDecoder{}
}
