package gateway

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs bounds the buffers of one writev (the kernel's IOV_MAX is 1024). A longer list is
// written in part; the caller queues the rest as it does for any short write.
const maxIovecs = 1024

// iovecs gathers the buffers of one connection write. The dispatchers and fan-out helpers each
// keep one and reuse it for every connection, so gathering allocates nothing per delivery.
type iovecs struct {
	bufs  [][]byte
	total int
	iov   []unix.Iovec
}

// add appends p unless it is empty.
func (v *iovecs) add(p []byte) {
	if len(p) > 0 {
		v.bufs = append(v.bufs, p)
		v.total += len(p)
	}
}

// reset empties v, dropping its references to the buffers so they can be collected.
func (v *iovecs) reset() {
	clear(v.bufs)
	v.bufs = v.bufs[:0]
	v.total = 0
}

// writeTo makes one non-blocking write of the buffers to fd and returns how many bytes the socket
// took. A full socket is not an error: it returns 0.
func (v *iovecs) writeTo(fd int) (int, error) {
	if len(v.bufs) == 1 {
		return taken(unix.Write(fd, v.bufs[0]))
	}
	v.iov = v.iov[:0]
	for _, p := range v.bufs[:min(len(v.bufs), maxIovecs)] {
		iv := unix.Iovec{Base: &p[0]}
		iv.SetLen(len(p))
		v.iov = append(v.iov, iv)
	}
	r, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&v.iov[0])), uintptr(len(v.iov)))
	clear(v.iov) // the kernel is done with the buffers; do not keep them reachable
	if errno != 0 {
		return taken(0, errno)
	}
	return int(r), nil
}

// taken reads the result of a non-blocking write as the bytes the socket took and a real
// error: a full socket (EAGAIN) or an interrupted call took nothing and is no error.
func taken(n int, err error) (int, error) {
	if err == unix.EAGAIN || err == unix.EINTR {
		return 0, nil
	}
	return max(n, 0), err
}
