package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"golang.org/x/sys/unix"
)

// pubState is where a publisher is between two requests.
type pubState uint8

const (
	psFree    pubState = iota // no request in flight; connected or not
	psDialing                 // non-blocking connect in progress, a request waiting for it
	psWriting                 // the request did not fit in one write; the rest waits for EPOLLOUT
	psWaiting                 // the request is written; reading the answer
	psBackoff                 // after an error, 429 or 503: resting until resumeAt
	psDone                    // finished for this run
)

// pubConn is one publisher: a keep-alive HTTP/1.1 connection with at most one request in
// flight. It is written by hand rather than with net/http, and driven by its pubLoop rather
// than a goroutine of its own, so that a request costs the bench about one write and one read
// and no allocation. Everything in it belongs to its loop's goroutine.
type pubConn struct {
	idx      int32  // position in pubLoop.conns; epoll events carry it
	gen      uint32 // bumped for every socket; events carry it, so a closed socket's are ignored
	fd       int    // -1 while not connected
	state    pubState
	n        int64 // number of the message being sent
	due      int64 // unix ns a paced send was scheduled for; 0 when flat out
	sent     int64 // unix ns the request was written
	dialAt   int64 // unix ns the current connect began
	resumeAt int64 // unix ns the backoff ends
	req      []byte
	off      int // bytes of req written
	ans      answerReader
}

// pubTarget is what every publisher of a run shares: where to connect and what to send.
type pubTarget struct {
	family int
	dst    unix.Sockaddr
	head   []byte // request line and headers up to "Content-Length: "
	open   string // the body up to the message's data: {"data": (herald) or {"channel":..,"data":
	pad    []byte // filler to make messages larger
}

// Publish APIs the bench can drive. Centrifugo's lets the publish scenario measure that peer on
// the same machine, interleaved with herald runs, instead of quoting figures taken elsewhere.
const (
	apiHerald     = "herald"     // POST /v1/channels/{channel}/messages, Authorization: Bearer
	apiCentrifugo = "centrifugo" // POST /api/publish, X-API-Key (Centrifugo v6's server API)
)

// newPubTarget resolves the gateway's address and prepares the request head for channel, in the
// form of api (apiHerald or apiCentrifugo).
func newPubTarget(base, token, channel string, pad int, api string) (*pubTarget, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want http://host:port", base)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	t := &pubTarget{pad: bytes.Repeat([]byte("x"), pad)}
	if ip4 := addr.IP.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: addr.Port}
		copy(sa.Addr[:], ip4)
		t.family, t.dst = unix.AF_INET, sa
	} else {
		sa := &unix.SockaddrInet6{Port: addr.Port}
		copy(sa.Addr[:], addr.IP.To16())
		t.family, t.dst = unix.AF_INET6, sa
	}
	switch api {
	case apiHerald, "":
		t.head = []byte("POST /v1/channels/" + url.PathEscape(channel) + "/messages HTTP/1.1\r\nHost: " + u.Host +
			"\r\nContent-Type: application/json\r\n")
		t.head = appendAuth(t.head, token)
		t.open = `{"data":`
	case apiCentrifugo:
		name, _ := json.Marshal(channel)
		t.head = []byte("POST /api/publish HTTP/1.1\r\nHost: " + u.Host +
			"\r\nContent-Type: application/json\r\nX-API-Key: " + token + "\r\n")
		t.open = `{"channel":` + string(name) + `,"data":`
	default:
		return nil, fmt.Errorf("unknown publish API %q (want %s or %s)", api, apiHerald, apiCentrifugo)
	}
	t.head = append(t.head, "Content-Length: "...)
	return t, nil
}

// build appends the request for message n, whose data is {"t":<sent>,"n":<n>[,"p":"xx.."]}.
func (t *pubTarget) build(b []byte, n, sent int64) []byte {
	bodyLen := len(t.open) + len(`{"t":,"n":}}`) + digits(sent) + digits(n)
	if len(t.pad) > 0 {
		bodyLen += len(`,"p":""`) + len(t.pad)
	}
	b = append(b, t.head...)
	b = strconv.AppendInt(b, int64(bodyLen), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, t.open...)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, n, 10)
	if len(t.pad) > 0 {
		b = append(b, `,"p":"`...)
		b = append(b, t.pad...)
		b = append(b, '"')
	}
	return append(b, "}}"...)
}

func digits(v int64) int {
	n := 1
	if v < 0 {
		n++
		v = -v
	}
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// socket opens a non-blocking socket and starts connecting it to the gateway.
func (t *pubTarget) socket() (int, error) {
	fd, err := unix.Socket(t.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// Like net.Dial: a request goes out in one segment at once, whatever is unacknowledged.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, t.dst); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// closeFD closes the connection, if any; the kernel drops it from the epoll set.
func (c *pubConn) closeFD() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}
