package admission

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Accept back-off: after a failed accept the listener waits, doubling the wait up to the most,
// and starts again from the least after an accept that worked. net/http's Serve does the same,
// but logs every failure; at the descriptor limit that is hundreds of lines a second.
const (
	acceptWaitMin = 5 * time.Millisecond
	acceptWaitMax = time.Second
	// AcceptWarnEvery is how often, at most, failed accepts are logged: one warning with the
	// number of failures since the last.
	AcceptWarnEvery = 10 * time.Second
)

// backoffListener is a net.Listener whose Accept never returns the errors of a process out of
// descriptors or memory: it backs off and tries again, and logs them at most once per
// AcceptWarnEvery. Other errors (the listener closed) are returned as they are.
//
// mu guards the back-off and log state; Accept may be called from several goroutines.
type backoffListener struct {
	net.Listener
	log     *slog.Logger
	m       *Metrics
	done    chan struct{}
	closing sync.Once

	mu       sync.Mutex
	wait     time.Duration // the next back-off; 0 after an accept that worked
	failures int           // failed accepts not yet logged
	lastWarn time.Time     // when the last warning was logged
}

// Listener wraps ln so that running out of descriptors (EMFILE, ENFILE) or kernel memory
// (ENOBUFS, ENOMEM) makes Accept back off, without spinning and with a log line per interval,
// and recover by itself once connections close. m may be nil.
func Listener(ln net.Listener, log *slog.Logger, m *Metrics) net.Listener {
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &backoffListener{Listener: ln, log: log, m: m, done: make(chan struct{})}
}

// Accept implements net.Listener.
func (l *backoffListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.recovered()
			return c, nil
		}
		if !exhausted(err) {
			return nil, err
		}
		wait := l.failed(err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// Close implements net.Listener; it also ends a back-off in progress.
func (l *backoffListener) Close() error {
	l.closing.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// exhausted reports whether err is an accept failing for want of descriptors or memory, which
// closing connections cures.
func exhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// failed records a failed accept and returns how long to wait before the next.
func (l *backoffListener) failed(err error) time.Duration {
	l.m.AcceptErrors.Inc()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.wait = min(max(2*l.wait, acceptWaitMin), acceptWaitMax)
	l.failures++
	if now := time.Now(); now.Sub(l.lastWarn) >= AcceptWarnEvery {
		l.log.Warn("accept is failing, backing off: connections are refused until some close",
			"err", err, "failures", l.failures, "since_last_warning", sinceOrNever(l.lastWarn, now))
		l.failures, l.lastWarn = 0, now
	}
	return l.wait
}

// recovered resets the back-off after an accept that worked, and says once per interval that
// accepts work again.
func (l *backoffListener) recovered() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wait == 0 {
		return
	}
	l.wait = 0
	if now := time.Now(); now.Sub(l.lastWarn) >= AcceptWarnEvery {
		l.log.Info("accepting connections again", "failures_since_last_warning", l.failures)
		l.failures, l.lastWarn = 0, now
	}
}

func sinceOrNever(t, now time.Time) string {
	if t.IsZero() {
		return "first"
	}
	return now.Sub(t).Round(time.Second).String()
}
