package main

import (
	"context"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Plain blocking sockets for the scenarios that open few connections and drive each by hand
// (amplify, flood): dialed from a chosen source address, with a small receive buffer when the
// point is not to read.

// dialOpts says how dialTCP connects.
type dialOpts struct {
	source  string        // local IPv4 address to connect from; "" lets the kernel choose
	rcvBuf  int           // SO_RCVBUF set before connect (the window is fixed then); 0 leaves the default
	timeout time.Duration // for the TCP handshake
}

// dialTCP connects to addr (host:port). SO_RCVBUF is set before connect: the kernel fixes the
// window scale in the handshake, so setting it later would not shrink what the peer may send.
func dialTCP(ctx context.Context, addr string, o dialOpts) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: o.timeout}
	if o.source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.source)}
	}
	if o.rcvBuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, o.rcvBuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
