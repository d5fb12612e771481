package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// The client side of herald's wire protocol, as small as a load generator needs: the upgrade
// and SSE requests, masked client frames, a resumable decoder of (unmasked) server frames, and
// the two fields of a message the bench checks (its id and the send time in its data).

// WebSocket opcodes.
const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xa
)

// maxServerFrame bounds a server frame's payload; herald's messages are at most 64 KiB of data.
const maxServerFrame = 16 << 20

var errFragmented = errors.New("fragmented server frames are not supported")

// frameHandler receives complete server frames; payload is valid only during the call.
type frameHandler interface {
	onFrame(op byte, payload []byte) error
}

// frameDecoder decodes the frames a server sends. Between reads it keeps only the bytes of an
// incomplete frame; a connection between messages holds no buffer beyond a small tail's capacity.
type frameDecoder struct {
	tail []byte
}

// serverHeader parses a frame header at the start of b. It returns the header and payload
// lengths, or hdr == 0 when b does not hold the whole header yet.
func serverHeader(b []byte) (hdr, payload int, err error) {
	if len(b) < 2 {
		return 0, 0, nil
	}
	if b[0]&0x80 == 0 || b[0]&0x0f == opCont {
		return 0, 0, errFragmented
	}
	if b[0]&0x70 != 0 {
		return 0, 0, errors.New("server frame sets reserved bits")
	}
	if b[1]&0x80 != 0 {
		return 0, 0, errors.New("server frame is masked")
	}
	n := int(b[1] & 0x7f)
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, 0, nil
		}
		return 4, int(binary.BigEndian.Uint16(b[2:])), nil
	case 127:
		if len(b) < 10 {
			return 0, 0, nil
		}
		n64 := binary.BigEndian.Uint64(b[2:])
		if n64 > maxServerFrame {
			return 0, 0, fmt.Errorf("server frame of %d bytes is too large", n64)
		}
		return 10, int(n64), nil
	}
	return 2, n, nil
}

// feed decodes p, calling h for each complete frame.
func (d *frameDecoder) feed(p []byte, h frameHandler) error {
	if len(d.tail) > 0 {
		var err error
		if p, err = d.completeTail(p, h); err != nil || len(d.tail) > 0 {
			return err
		}
	}
	for len(p) > 0 {
		hdr, n, err := serverHeader(p)
		if err != nil {
			return err
		}
		if hdr == 0 || len(p) < hdr+n {
			d.keep(p, hdr+n)
			return nil
		}
		if err := h.onFrame(p[0]&0x0f, p[hdr:hdr+n]); err != nil {
			return err
		}
		p = p[hdr+n:]
	}
	return nil
}

// completeTail moves bytes of p into the incomplete frame in the tail until it is whole, hands it
// over, and returns what is left of p.
func (d *frameDecoder) completeTail(p []byte, h frameHandler) ([]byte, error) {
	hdr, n, err := serverHeader(d.tail)
	for hdr == 0 && err == nil && len(p) > 0 {
		d.tail = append(d.tail, p[0])
		p = p[1:]
		hdr, n, err = serverHeader(d.tail)
	}
	if err != nil || hdr == 0 {
		return p, err
	}
	k := min(hdr+n-len(d.tail), len(p))
	d.tail = append(d.tail, p[:k]...)
	p = p[k:]
	if len(d.tail) < hdr+n {
		return p, nil
	}
	err = h.onFrame(d.tail[0]&0x0f, d.tail[hdr:hdr+n])
	d.release()
	return p, err
}

// keep stores the start of an incomplete frame; want is its full length when known.
func (d *frameDecoder) keep(p []byte, want int) {
	if cap(d.tail) < want {
		d.tail = make([]byte, 0, max(want, 16))
	}
	d.tail = append(d.tail[:0], p...)
}

// release empties the tail, dropping a large buffer so that idle connections stay small.
func (d *frameDecoder) release() {
	if cap(d.tail) > 512 {
		d.tail = nil
		return
	}
	d.tail = d.tail[:0]
}

// appendClientFrame appends a final, masked client frame.
func appendClientFrame(dst []byte, op byte, payload []byte, mask [4]byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n <= 125:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, mask[:]...)
	for i, b := range payload {
		dst = append(dst, b^mask[i&3])
	}
	return dst
}

// subscribeFrame is the masked {"type":"subscribe"} frame; since "" subscribes live only.
func subscribeFrame(channel, since string, mask [4]byte) []byte {
	p := make([]byte, 0, 96)
	p = append(p, `{"type":"subscribe","id":1,"channel":`...)
	p = strconv.AppendQuote(p, channel)
	if since != "" {
		p = append(p, `,"since":`...)
		p = strconv.AppendQuote(p, since)
	}
	p = append(p, '}')
	return appendClientFrame(nil, opText, p, mask)
}

// wsRequest is the upgrade request, with the subscribe frame right behind it: herald decodes the
// bytes that arrive with the upgrade before it registers the connection.
func wsRequest(host, token, channel, since string, mask [4]byte) []byte {
	b := make([]byte, 0, 512)
	b = append(b, "GET /v1/ws HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: aGVyYWxkLWJlbmNoLWtleQ==\r\n"...)
	b = appendAuth(b, token)
	b = append(b, "\r\n"...)
	return append(b, subscribeFrame(channel, since, mask)...)
}

// sseRequest is GET /v1/sse for one channel, resuming after lastEventID when it is set.
func sseRequest(host, token, channel, lastEventID string) []byte {
	b := make([]byte, 0, 512)
	b = append(b, "GET /v1/sse?channel="...)
	b = append(b, url.QueryEscape(channel)...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nAccept: text/event-stream\r\n"...)
	if lastEventID != "" {
		b = append(b, "Last-Event-ID: "...)
		b = append(b, lastEventID...)
		b = append(b, "\r\n"...)
	}
	b = appendAuth(b, token)
	return append(b, "\r\n"...)
}

func appendAuth(b []byte, token string) []byte {
	if token == "" {
		return b
	}
	b = append(b, "Authorization: Bearer "...)
	b = append(b, token...)
	return append(b, "\r\n"...)
}

// responseHead finds the end of an HTTP response head in b. It returns the status code and the
// length of the head, or n == 0 when the head is not complete yet.
func responseHead(b []byte) (status, n int, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > 16<<10 {
			return 0, 0, errors.New("response head too long")
		}
		return 0, 0, nil
	}
	if len(b) < 12 || !bytes.HasPrefix(b, []byte("HTTP/1.")) {
		return 0, 0, errors.New("not an HTTP response")
	}
	status, err = strconv.Atoi(string(b[9:12]))
	if err != nil {
		return 0, 0, errors.New("bad HTTP status line")
	}
	return status, end + 4, nil
}

// msgID is a message id "<ms>-<seq>".
type msgID struct{ ms, seq uint64 }

func (a msgID) less(b msgID) bool { return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq }

func (a msgID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// parseID reads "<ms>-<seq>" (or a bare "<ms>") without allocating.
func parseID(b []byte) (msgID, bool) {
	var id msgID
	var cur *uint64 = &id.ms
	if len(b) == 0 {
		return id, false
	}
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			*cur = *cur*10 + uint64(c-'0')
		case c == '-' && cur == &id.ms:
			cur = &id.seq
		default:
			return id, false
		}
	}
	return id, true
}

var (
	keyID   = []byte(`"id":"`)
	keyData = []byte(`"data":`)
	keyT    = []byte(`"t":`)
	keyLast = []byte(`"last_id":"`)
)

// stringField returns the string value after key (which ends with the opening quote).
func stringField(p, key []byte) ([]byte, bool) {
	i := bytes.Index(p, key)
	if i < 0 {
		return nil, false
	}
	p = p[i+len(key):]
	j := bytes.IndexByte(p, '"')
	if j < 0 {
		return nil, false
	}
	return p[:j], true
}

// parseMessage reads a message object's id and the send time the bench put in its data
// ({"t":<unix ns>,...}; sent is 0 when absent). The object is a WebSocket message frame
// ({"type":"message","channel":..,"id":..,"data":..}) or an SSE data line ({"channel":..,"id":..}).
// Channel names cannot contain quotes, so the first "id" key is the message's.
func parseMessage(p []byte) (id msgID, sent int64, ok bool) {
	raw, found := stringField(p, keyID)
	if !found {
		return id, 0, false
	}
	if id, ok = parseID(raw); !ok {
		return id, 0, false
	}
	d := bytes.Index(p, keyData)
	if d < 0 {
		return id, 0, true
	}
	rest := p[d+len(keyData):]
	t := bytes.Index(rest, keyT)
	if t < 0 {
		return id, 0, true
	}
	for _, c := range rest[t+len(keyT):] {
		if c < '0' || c > '9' {
			break
		}
		sent = sent*10 + int64(c-'0')
	}
	return id, sent, true
}

// frameType returns the value of the "type" field that opens every herald server frame.
func frameType(p []byte) []byte {
	const prefix = `{"type":"`
	if !bytes.HasPrefix(p, []byte(prefix)) {
		return nil
	}
	p = p[len(prefix):]
	if j := bytes.IndexByte(p, '"'); j >= 0 {
		return p[:j]
	}
	return nil
}
