// Package wsframe reads and writes WebSocket frames (RFC 6455) on connections driven by epoll:
// the Decoder is fed whatever bytes a non-blocking read returned and keeps a partial header, the
// remaining payload length and the mask offset between reads, so no goroutine ever waits for the
// rest of a frame.
package wsframe

import (
	"errors"
	"fmt"

	"github.com/gobwas/ws"
)

// ErrTooBig reports a message larger than the decoder's limit (close code 1009).
var ErrTooBig = errors.New("websocket message too big")

// ProtocolError reports a frame that breaks RFC 6455 (close code 1002).
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "websocket protocol error: " + e.Reason }

func protocolError(format string, args ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

// Decoder turns the bytes a client sent into complete messages and control frames.
//
// It holds no buffer between frames: a tail buffer exists only while a frame (or a fragmented
// message) is incomplete. The zero value is not usable; set MaxMessage.
type Decoder struct {
	// MaxMessage is the largest message payload accepted, fragments summed.
	MaxMessage int

	hdr  [14]byte // header bytes received so far
	hdrN int

	inFrame   bool
	fin       bool
	op        ws.OpCode
	mask      [4]byte
	remaining int
	maskPos   int
	frameBuf  []byte // payload of the current frame, when it spans reads

	msgOp ws.OpCode // opcode of a fragmented message in progress; 0 when none
	msg   []byte    // payload of that message so far
}

// Handler receives a complete message (OpText or OpBinary, fragments joined) or a control frame
// (OpPing, OpPong, OpClose). payload is valid only during the call. An error stops decoding and
// is returned by Feed.
type Handler func(op ws.OpCode, payload []byte) error

// Feed decodes p, calling h for each complete message or control frame. It unmasks p in place.
// After an error the decoder must not be fed again.
func (d *Decoder) Feed(p []byte, h Handler) error {
	for len(p) > 0 {
		if !d.inFrame {
			var err error
			if p, err = d.readHeader(p); err != nil {
				return err
			}
			if !d.inFrame {
				return nil // header incomplete: wait for more bytes
			}
			if d.remaining == 0 {
				if err := d.finishFrame(nil, h); err != nil {
					return err
				}
			}
			continue
		}
		k := min(d.remaining, len(p))
		chunk := p[:k]
		ws.Cipher(chunk, d.mask, d.maskPos)
		d.maskPos += k
		d.remaining -= k
		p = p[k:]
		if d.remaining == 0 && len(d.frameBuf) == 0 {
			// The whole payload arrived in this read: hand it over without copying.
			if err := d.finishFrame(chunk, h); err != nil {
				return err
			}
			continue
		}
		d.frameBuf = append(d.frameBuf, chunk...)
		if d.remaining == 0 {
			payload := d.frameBuf
			d.frameBuf = nil
			if err := d.finishFrame(payload, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// Pending reports whether the decoder holds part of a frame or message.
func (d *Decoder) Pending() bool { return d.hdrN > 0 || d.inFrame || d.msgOp != 0 }

// readHeader consumes header bytes from p. When the header is complete it validates it and sets
// inFrame; otherwise it keeps the bytes and returns an empty p.
func (d *Decoder) readHeader(p []byte) ([]byte, error) {
	need := 2
	for {
		if d.hdrN < need {
			k := copy(d.hdr[d.hdrN:need], p)
			d.hdrN += k
			p = p[k:]
			if d.hdrN < need {
				return p, nil
			}
		}
		full := headerLen(d.hdr[0], d.hdr[1])
		if need == full {
			break
		}
		need = full
	}
	d.hdrN = 0
	return p, d.parseHeader()
}

func headerLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

func (d *Decoder) parseHeader() error {
	b0, b1 := d.hdr[0], d.hdr[1]
	if b0&0x70 != 0 {
		return protocolError("reserved bits set")
	}
	if b1&0x80 == 0 {
		return protocolError("client frame not masked")
	}
	fin, op := b0&0x80 != 0, ws.OpCode(b0&0x0f)
	var length uint64
	pos := 2
	switch b1 & 0x7f {
	case 126:
		length = uint64(d.hdr[2])<<8 | uint64(d.hdr[3])
		pos = 4
	case 127:
		for i := 2; i < 10; i++ {
			length = length<<8 | uint64(d.hdr[i])
		}
		pos = 10
	default:
		length = uint64(b1 & 0x7f)
	}
	copy(d.mask[:], d.hdr[pos:pos+4])

	switch {
	case op.IsControl():
		if op != ws.OpClose && op != ws.OpPing && op != ws.OpPong {
			return protocolError("unknown opcode %d", op)
		}
		if !fin || length > 125 {
			return protocolError("fragmented or oversized control frame")
		}
	case op == ws.OpContinuation:
		if d.msgOp == 0 {
			return protocolError("continuation frame without a message")
		}
	case op == ws.OpText || op == ws.OpBinary:
		if d.msgOp != 0 {
			return protocolError("new message inside a fragmented message")
		}
	default:
		return protocolError("unknown opcode %d", op)
	}
	if !op.IsControl() && length > uint64(d.MaxMessage-len(d.msg)) {
		return ErrTooBig
	}
	d.inFrame, d.fin, d.op = true, fin, op
	d.remaining, d.maskPos = int(length), 0
	return nil
}

func (d *Decoder) finishFrame(payload []byte, h Handler) error {
	d.inFrame = false
	switch {
	case d.op.IsControl():
		return h(d.op, payload)
	case d.op == ws.OpContinuation:
		d.msg = append(d.msg, payload...)
		if !d.fin {
			return nil
		}
		op, msg := d.msgOp, d.msg
		d.msgOp, d.msg = 0, nil
		return h(op, msg)
	case d.fin:
		return h(d.op, payload)
	default:
		d.msgOp = d.op
		d.msg = append([]byte(nil), payload...)
		return nil
	}
}
