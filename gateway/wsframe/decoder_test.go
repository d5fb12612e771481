package wsframe

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/gobwas/ws"
)

// clientFrame builds a masked client frame.
func clientFrame(fin bool, op ws.OpCode, payload []byte) []byte {
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	f = ws.MaskFrameInPlace(f)
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

type event struct {
	op      ws.OpCode
	payload string
}

func decodeAll(d *Decoder, chunks ...[]byte) ([]event, error) {
	var got []event
	for _, c := range chunks {
		err := d.Feed(append([]byte(nil), c...), func(op ws.OpCode, p []byte) error {
			got = append(got, event{op, string(p)})
			return nil
		})
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

func TestDecodeSplitAtEveryOffset(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000)
	var stream []byte
	stream = append(stream, clientFrame(true, ws.OpText, []byte(`{"type":"ping","id":1}`))...)
	stream = append(stream, clientFrame(false, ws.OpText, []byte("hel"))...)
	stream = append(stream, clientFrame(true, ws.OpPing, []byte("p"))...)
	stream = append(stream, clientFrame(true, ws.OpContinuation, []byte("lo"))...)
	stream = append(stream, clientFrame(true, ws.OpText, nil)...)
	stream = append(stream, clientFrame(true, ws.OpBinary, big[:300])...)
	stream = append(stream, clientFrame(true, ws.OpText, big)...)
	want := []event{
		{ws.OpText, `{"type":"ping","id":1}`}, {ws.OpPing, "p"}, {ws.OpText, "hello"},
		{ws.OpText, ""}, {ws.OpBinary, string(big[:300])}, {ws.OpText, string(big)},
	}
	check := func(name string, got []event, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: event %d = %v/%d bytes, want %v/%d bytes", name, i, got[i].op, len(got[i].payload), want[i].op, len(want[i].payload))
			}
		}
	}
	got, err := decodeAll(&Decoder{MaxMessage: 1 << 20}, stream)
	check("whole", got, err)
	for i := 1; i < len(stream); i += 1 + i/50 {
		d := &Decoder{MaxMessage: 1 << 20}
		got, err := decodeAll(d, stream[:i], stream[i:])
		check(fmt.Sprintf("split at %d", i), got, err)
		if d.Pending() {
			t.Fatalf("split at %d: decoder still pending", i)
		}
	}
	// One byte at a time.
	d := &Decoder{MaxMessage: 1 << 20}
	var chunks [][]byte
	for i := range stream[:2000] {
		chunks = append(chunks, stream[i:i+1])
	}
	chunks = append(chunks, stream[2000:])
	got, err = decodeAll(d, chunks...)
	check("bytewise", got, err)
}

func TestDecodeErrors(t *testing.T) {
	unmasked, _ := ws.CompileFrame(ws.NewTextFrame([]byte("hi")))
	cases := []struct {
		name  string
		input []byte
		max   int
		want  string
	}{
		{"unmasked", unmasked, 100, "not masked"},
		{"too big", clientFrame(true, ws.OpText, make([]byte, 200)), 100, "too big"},
		{"fragments too big", append(clientFrame(false, ws.OpText, make([]byte, 60)), clientFrame(true, ws.OpContinuation, make([]byte, 60))...), 100, "too big"},
		{"reserved bits", func() []byte { b := clientFrame(true, ws.OpText, []byte("a")); b[0] |= 0x40; return b }(), 100, "reserved"},
		{"bad opcode", clientFrame(true, ws.OpCode(3), []byte("a")), 100, "unknown opcode"},
		{"lone continuation", clientFrame(true, ws.OpContinuation, []byte("a")), 100, "continuation"},
		{"fragmented ping", clientFrame(false, ws.OpPing, []byte("a")), 100, "control"},
		{"interleaved message", append(clientFrame(false, ws.OpText, []byte("a")), clientFrame(true, ws.OpText, []byte("b"))...), 100, "inside"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeAll(&Decoder{MaxMessage: c.max}, c.input)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			var pe *ProtocolError
			if c.want == "too big" != errors.Is(err, ErrTooBig) || (c.want != "too big" && !errors.As(err, &pe)) {
				t.Fatalf("wrong error type %T", err)
			}
		})
	}
}

func TestHeaderSizes(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536, 1 << 20} {
		f := Frame(ws.OpText, make([]byte, n))
		h, err := ws.ReadHeader(bytes.NewReader(f))
		if err != nil || h.Length != int64(n) || !h.Fin || h.OpCode != ws.OpText || len(f) != HeaderLen(n)+n {
			t.Fatalf("n=%d: header %+v err %v len %d", n, h, err, len(f))
		}
	}
	c := CloseFrame(ws.StatusGoingAway, "bye")
	h, _ := ws.ReadHeader(bytes.NewReader(c))
	if h.OpCode != ws.OpClose || !bytes.Equal(c[2:], []byte{0x03, 0xe9, 'b', 'y', 'e'}) {
		t.Fatalf("close frame %x", c)
	}
}

// FuzzDecoder checks that any input decodes the same whole or split in two at any offset, and
// never panics.
func FuzzDecoder(f *testing.F) {
	f.Add(clientFrame(true, ws.OpText, []byte(`{"type":"auth"}`)), 3)
	f.Add(append(clientFrame(false, ws.OpBinary, []byte("ab")), clientFrame(true, ws.OpContinuation, []byte("cd"))...), 7)
	f.Add(clientFrame(true, ws.OpClose, []byte{3, 232}), 1)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		whole, errWhole := decodeAll(&Decoder{MaxMessage: 4096}, data)
		if len(data) == 0 {
			return
		}
		split = (split%len(data) + len(data)) % len(data)
		parts, errParts := decodeAll(&Decoder{MaxMessage: 4096}, data[:split], data[split:])
		if (errWhole == nil) != (errParts == nil) || len(whole) != len(parts) {
			t.Fatalf("whole: %d events err %v; split at %d: %d events err %v", len(whole), errWhole, split, len(parts), errParts)
		}
		for i := range whole {
			if whole[i] != parts[i] {
				t.Fatalf("event %d differs", i)
			}
		}
	})
}
