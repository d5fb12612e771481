package gateway

import (
	"errors"
	"net"
	"os"
	"sync"
)

// handBackListener is the HTTP server's listener: it yields the connections its inner listener
// accepts and the keep-alive connections the epoll core hands back to net/http (see
// httpSession.handBack), each with the bytes already read from it.
type handBackListener struct {
	net.Listener
	accepted chan acceptResult
	back     chan net.Conn
	done     chan struct{}
	once     sync.Once
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// Listener wraps ln, the listener the HTTP server serves, so that keep-alive publisher
// connections can move between net/http and the epoll core: after a publish, the API hands such
// a connection to the core (AdoptHTTP), which answers the usual publishes itself and gives the
// connection back through this listener, unread bytes first, when a request needs net/http.
// Without it AdoptHTTP declines and net/http keeps every connection. Call it once, before
// serving.
func (g *Gateway) Listener(ln net.Listener) net.Listener {
	l := &handBackListener{Listener: ln, accepted: make(chan acceptResult), back: make(chan net.Conn),
		done: make(chan struct{})}
	go l.acceptLoop()
	g.handBack.Store(l)
	return l
}

func (l *handBackListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept implements net.Listener.
func (l *handBackListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	case r := <-l.accepted:
		return r.conn, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *handBackListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// give hands c to the HTTP server, or closes it when the server stopped accepting.
func (l *handBackListener) give(c net.Conn) {
	select {
	case l.back <- c:
	case <-l.done:
		c.Close()
	}
}

// prefixConn is a connection whose first bytes were already read: Read returns them first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// fileConn makes a net.Conn of the bare socket fd, in Go's own poller, and closes fd (the
// net.Conn holds a duplicate).
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "herald-http")
	defer f.Close()
	return net.FileConn(f)
}
