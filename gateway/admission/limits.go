package admission

import (
	"math"

	"golang.org/x/sys/unix"
)

// Reserve is how many of n descriptors DefaultMaxConnections keeps out of the subscribers'
// reach: a tenth, at least 100. They are for what must keep working when subscribers fill the
// node: the process's own files (standard streams, epoll, the listeners, about ten), the
// Valkey client's connections (a few per Valkey node), publishers, /healthz, /readyz and
// /metrics, connections still sending their first request (for up to the header timeout) or
// being refused, and the moment a connection moving to the epoll core holds two descriptors.
// A tenth scales with the node: the more subscribers a node holds, the more publishers and
// connects in flight it sees.
func Reserve(n int) int { return max(100, n/10) }

// DefaultMaxConnections is the descriptor limit of the process (RLIMIT_NOFILE, which the Go
// runtime raises to its hard limit at start) less Reserve, and the limit itself. It returns
// 0, 0 when the limit cannot be read.
func DefaultMaxConnections() (maxConns, nofile int) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0
	}
	n := int(min(rl.Cur, math.MaxInt32)) // RLIM_INFINITY is the largest uint64
	return FromDescriptors(n), n
}

// FromDescriptors is the connection limit for n descriptors: n less Reserve(n), or half of n
// when that leaves less.
func FromDescriptors(n int) int {
	if n-Reserve(n) < n/2 {
		return max(1, n/2)
	}
	return n - Reserve(n)
}
