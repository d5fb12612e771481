package gateway

import (
	"testing"
	"unsafe"
)

// TestSessionSizes keeps the structs every idle connection holds within the allocator's size
// classes they were fitted to: at tens of thousands of connections a few bytes more can move
// a struct to the next class (..., 96, 112, 128, ..., 208, 224, 240, 256, 288, ...).
func TestSessionSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"wsSession", unsafe.Sizeof(wsSession{}), 224},
		{"sseSession", unsafe.Sizeof(sseSession{}), 192},
		{"subscription", unsafe.Sizeof(subscription{}), 112},
	} {
		t.Logf("%s: %d bytes", c.name, c.size)
		if c.size > c.max {
			t.Errorf("%s is %d bytes, more than its %d-byte size class", c.name, c.size, c.max)
		}
	}
}
