package wsframe

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// MaxHeaderLen is the longest header of a server (unmasked) frame.
const MaxHeaderLen = 10

// AppendHeader appends the header of a final, unmasked server frame with the given opcode and
// payload length.
func AppendHeader(dst []byte, op ws.OpCode, length int) []byte {
	dst = append(dst, 0x80|byte(op))
	switch {
	case length <= 125:
		return append(dst, byte(length))
	case length <= 0xffff:
		dst = append(dst, 126, 0, 0)
		binary.BigEndian.PutUint16(dst[len(dst)-2:], uint16(length))
		return dst
	default:
		dst = append(dst, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(dst[len(dst)-8:], uint64(length))
		return dst
	}
}

// HeaderLen returns the length of the header AppendHeader writes for a payload of length bytes.
func HeaderLen(length int) int {
	switch {
	case length <= 125:
		return 2
	case length <= 0xffff:
		return 4
	default:
		return 10
	}
}

// Frame returns a complete server frame carrying payload.
func Frame(op ws.OpCode, payload []byte) []byte {
	b := make([]byte, 0, HeaderLen(len(payload))+len(payload))
	return append(AppendHeader(b, op, len(payload)), payload...)
}

// CloseFrame returns a close frame with a status code and a reason (cut to fit 125 bytes).
func CloseFrame(code ws.StatusCode, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	payload := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(payload, uint16(code))
	payload = append(payload, reason...)
	return Frame(ws.OpClose, payload)
}
