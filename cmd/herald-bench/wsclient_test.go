package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/gateway/wsframe"
)

type gotFrame struct {
	op      byte
	payload string
}

type frameRecorder struct{ frames []gotFrame }

func (r *frameRecorder) onFrame(op byte, p []byte) error {
	r.frames = append(r.frames, gotFrame{op, string(p)})
	return nil
}

// serverStream is frames as the gateway writes them (wsframe builds herald's server frames),
// with payloads of every header size. With big, one frame carries 70,000 bytes; without, a
// 300-byte frame uses the 8-byte length form (legal, if not minimal) to keep every-offset
// splitting cheap.
func serverStream(big bool) ([]byte, []gotFrame) {
	want := []gotFrame{
		{opText, `{"type":"subscribed","id":1,"channel":"c","recovered":true,"last_id":"0-0"}`},
		{opText, `{"type":"message","channel":"c","id":"1732700000001-0","data":{"t":1,"n":1}}`},
		{opPing, ""},
		{opText, strings.Repeat("a", 126)},
		{opText, strings.Repeat("b", 300)},
		{opText, ""},
		{opClose, "\x0f\xa0slow consumer"},
	}
	if big {
		want[4].payload = strings.Repeat("b", 70000)
	}
	var stream []byte
	for i, f := range want {
		if i == 4 && !big {
			stream = append(stream, 0x81, 127)
			stream = binary.BigEndian.AppendUint64(stream, uint64(len(f.payload)))
			stream = append(stream, f.payload...)
			continue
		}
		stream = append(stream, wsframe.Frame(ws.OpCode(f.op), []byte(f.payload))...)
	}
	return stream, want
}

func checkFrames(t *testing.T, what string, got, want []gotFrame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: frame %d = op %d %.40q, want op %d %.40q", what, i, got[i].op, got[i].payload, want[i].op, want[i].payload)
		}
	}
}

func TestFrameDecoderSplitAtEveryOffset(t *testing.T) {
	stream, want := serverStream(false)
	for cut := 0; cut <= len(stream); cut++ {
		var d frameDecoder
		var rec frameRecorder
		if err := d.feed(stream[:cut], &rec); err != nil {
			t.Fatalf("cut %d: first piece: %v", cut, err)
		}
		if err := d.feed(stream[cut:], &rec); err != nil {
			t.Fatalf("cut %d: second piece: %v", cut, err)
		}
		checkFrames(t, fmt.Sprintf("cut %d", cut), rec.frames, want)
		if len(d.tail) != 0 {
			t.Fatalf("cut %d: %d bytes left in the tail", cut, len(d.tail))
		}
	}
}

func TestFrameDecoderByteByByteAndThreePieces(t *testing.T) {
	stream, want := serverStream(true)
	var d frameDecoder
	var rec frameRecorder
	for i := range stream {
		if err := d.feed(stream[i:i+1], &rec); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	checkFrames(t, "byte by byte", rec.frames, want)

	for a := 0; a < 300; a += 7 {
		for b := a; b < len(stream); b += 4999 {
			var d frameDecoder
			var rec frameRecorder
			for _, piece := range [][]byte{stream[:a], stream[a:b], stream[b:]} {
				if err := d.feed(piece, &rec); err != nil {
					t.Fatalf("cuts %d,%d: %v", a, b, err)
				}
			}
			checkFrames(t, fmt.Sprintf("cuts %d,%d", a, b), rec.frames, want)
		}
	}
}

func TestFrameDecoderRejectsWhatServersMustNotSend(t *testing.T) {
	masked := appendClientFrame(nil, opText, []byte("hi"), clientMask)
	fragment := []byte{0x01, 0x02, 'h', 'i'} // FIN clear
	continuation := []byte{0x80, 0x00}
	reserved := []byte{0xc1, 0x00}
	huge := append([]byte{0x81, 127}, binary.BigEndian.AppendUint64(nil, 1<<40)...)
	for name, b := range map[string][]byte{"masked": masked, "fragment": fragment, "continuation": continuation, "rsv": reserved, "huge": huge} {
		var d frameDecoder
		if err := d.feed(b, &frameRecorder{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The gateway's own decoder of client frames must read what the bench sends.
func TestClientFramesDecodeOnTheGateway(t *testing.T) {
	for _, size := range []int{0, 5, 125, 126, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte("z"), size)
		frame := appendClientFrame(nil, opText, payload, clientMask)
		d := wsframe.Decoder{MaxMessage: 1 << 20}
		var got []byte
		calls := 0
		err := d.Feed(frame, func(op ws.OpCode, p []byte) error {
			calls++
			if op != ws.OpText {
				t.Errorf("size %d: op %v", size, op)
			}
			got = append(got, p...)
			return nil
		})
		if err != nil || calls != 1 || !bytes.Equal(got, payload) {
			t.Fatalf("size %d: err %v, calls %d, payload equal %v", size, err, calls, bytes.Equal(got, payload))
		}
	}
	sub := subscribeFrame("orders:42", "1732700000000-3", clientMask)
	d := wsframe.Decoder{MaxMessage: 1 << 16}
	err := d.Feed(sub, func(op ws.OpCode, p []byte) error {
		want := `{"type":"subscribe","id":1,"channel":"orders:42","since":"1732700000000-3"}`
		if string(p) != want {
			t.Errorf("subscribe frame = %s, want %s", p, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseMessage(t *testing.T) {
	cases := []struct {
		in   string
		id   msgID
		sent int64
		ok   bool
	}{
		{`{"type":"message","channel":"c","id":"1732700000001-7","data":{"t":1732700000123456789,"n":3}}`, msgID{1732700000001, 7}, 1732700000123456789, true},
		{`{"type":"message","channel":"c","id":"1732700000001-7","event":"x","data":{"n":3,"t":42}}`, msgID{1732700000001, 7}, 42, true},
		{`{"channel":"c","id":"5-0","data":{"other":1}}`, msgID{5, 0}, 0, true},
		{`{"channel":"c","id":"12","data":{"t":9}}`, msgID{12, 0}, 9, true},
		{`{"channel":"c","id":"1-x","data":{}}`, msgID{}, 0, false},
		{`{"channel":"c","data":{}}`, msgID{}, 0, false},
	}
	for _, c := range cases {
		id, sent, ok := parseMessage([]byte(c.in))
		if ok != c.ok || ok && (id != c.id || sent != c.sent) {
			t.Errorf("parseMessage(%s) = %v %d %v, want %v %d %v", c.in, id, sent, ok, c.id, c.sent, c.ok)
		}
	}
	if !(msgID{1, 5}).less(msgID{2, 0}) || !(msgID{1, 5}).less(msgID{1, 6}) || (msgID{1, 5}).less(msgID{1, 5}) {
		t.Error("msgID.less is wrong")
	}
	if s := (msgID{1732700000000, 3}).String(); s != "1732700000000-3" {
		t.Errorf("String = %s", s)
	}
	if typ := frameType([]byte(`{"type":"subscribed","id":1}`)); string(typ) != "subscribed" {
		t.Errorf("frameType = %q", typ)
	}
}

func TestParseMessageDoesNotAllocate(t *testing.T) {
	p := []byte(`{"type":"message","channel":"c","id":"1732700000001-7","data":{"t":1732700000123456789,"n":3}}`)
	if n := testing.AllocsPerRun(100, func() { parseMessage(p) }); n != 0 {
		t.Fatalf("parseMessage allocates %v times", n)
	}
}

func TestResponseHead(t *testing.T) {
	full := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02{}"
	for cut := 0; cut < len(full); cut++ {
		status, n, err := responseHead([]byte(full[:cut]))
		complete := cut >= strings.Index(full, "\r\n\r\n")+4
		switch {
		case err != nil:
			t.Fatalf("cut %d: %v", cut, err)
		case complete && (status != 101 || full[n:] != "\x81\x02{}"):
			t.Fatalf("cut %d: status %d, rest %q", cut, status, full[n:])
		case !complete && n != 0:
			t.Fatalf("cut %d: head reported complete", cut)
		}
	}
	if _, _, err := responseHead([]byte("SSH-2.0-OpenSSH\r\n\r\n")); err == nil {
		t.Error("not HTTP: no error")
	}
}

func TestRequests(t *testing.T) {
	r := string(sseRequest("h:1", "tok", "a/b:c", "5-1"))
	for _, want := range []string{"GET /v1/sse?channel=a%2Fb%3Ac HTTP/1.1\r\n", "Last-Event-ID: 5-1\r\n", "Authorization: Bearer tok\r\n"} {
		if !strings.Contains(r, want) {
			t.Errorf("SSE request lacks %q:\n%s", want, r)
		}
	}
	w := wsRequest("h:1", "tok", "c", "", clientMask)
	head, frame, ok := bytes.Cut(w, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("GET /v1/ws HTTP/1.1\r\n")) || len(frame) == 0 {
		t.Fatalf("upgrade request malformed:\n%s", w)
	}
}
