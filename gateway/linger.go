package gateway

import (
	"sync"

	"golang.org/x/sys/unix"
)

// Lingering close. When herald ends a connection with a close frame (4029, 1009, 1002, ...) the
// client may still be sending: a flooding client certainly is. Bytes that reach a closed socket
// make the kernel answer with a reset, and a reset destroys whatever the client had not read yet,
// the close frame included, so the client would see a dropped connection (1006) instead of the
// code that tells it what to do. So such a socket is not closed at once: it is shut down for
// writing (the close frame is followed by the end of the stream), kept open for lingerTicks
// while whatever arrives is dropped, and only then closed.
//
// Invariants:
//   - A lingering descriptor is out of epoll and belongs to the lingerer alone: no read, write or
//     epoll_ctl of the connection uses it any more, and its number is not reused until closed.
//   - At most maxLingering descriptors linger at a time; past that a socket is closed at once,
//     so a storm of refused clients cannot hold the process's descriptors.

// lingerTicks is how long a socket lingers, in heartbeat-wheel ticks (1 s each by default):
// between one and two ticks, time for the client to read the close frame.
const lingerTicks = 2

// maxLingering bounds the descriptors that linger at once.
const maxLingering = 1024

type lingering struct {
	fd       int
	deadline int64 // wheel tick
}

// lingerer holds the sockets that linger. mu guards socks; it is taken on its own.
type lingerer struct {
	mu    sync.Mutex
	socks []lingering
}

// add shuts fd down for writing and keeps it until the tick deadline, or closes it now when too
// many linger already. fd must be out of epoll and no longer used by its connection.
func (l *lingerer) add(fd int, now int64) {
	_ = unix.Shutdown(fd, unix.SHUT_WR)
	l.mu.Lock()
	if len(l.socks) < maxLingering {
		l.socks = append(l.socks, lingering{fd: fd, deadline: now + lingerTicks})
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	closeDiscarding(fd)
}

// closeDue closes the sockets whose time is up (all of them when now is negative: shutdown).
func (l *lingerer) closeDue(now int64) {
	l.mu.Lock()
	var due []lingering
	kept := l.socks[:0]
	for _, s := range l.socks {
		if now < 0 || s.deadline <= now {
			due = append(due, s)
		} else {
			kept = append(kept, s)
		}
	}
	clear(l.socks[len(kept):])
	l.socks = kept
	l.mu.Unlock()
	for _, s := range due {
		closeDiscarding(s.fd)
	}
}

// closeDiscarding drops what fd still holds (so its close sends an orderly end where it can)
// and closes it.
func closeDiscarding(fd int) {
	discardInput(fd)
	_ = unix.Close(fd)
}
