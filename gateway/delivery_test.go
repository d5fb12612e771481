package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/gateway/broker"
)

// TestAppendWSMessageFrames: frames appended one after another (as a replay does) read back as
// the same messages, whatever header length their size needs.
func TestAppendWSMessageFrames(t *testing.T) {
	var msgs []broker.Message
	for i, size := range []int{1, 60, 125, 126, 200, 65535, 65536, 70000} {
		data := `"` + strings.Repeat("x", size) + `"`
		m := broker.Message{Channel: "room:" + itoa(i), ID: broker.ID{Ms: 1732700000000 + uint64(i), Seq: uint64(i * 7)}, Data: json.RawMessage(data)}
		if i%2 == 1 {
			m.Event = "tick"
		}
		msgs = append(msgs, m)
	}
	out := []byte("prefix")
	for _, m := range msgs {
		out = appendWSMessage(out, m)
	}
	if !bytes.HasPrefix(out, []byte("prefix")) {
		t.Fatal("the bytes before the frames changed")
	}
	r := bytes.NewReader(out[len("prefix"):])
	for _, m := range msgs {
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.OpCode != ws.OpText || !h.Fin || h.Masked || h.Length > 1<<20 {
			t.Fatalf("header %+v", h)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Type, Channel, ID, Event string
			Data                     json.RawMessage
		}
		if err := json.Unmarshal(payload, &got); err != nil {
			t.Fatalf("payload of %s: %v", m.ID, err)
		}
		if got.Type != "message" || got.Channel != m.Channel || got.ID != m.ID.String() || got.Event != m.Event || string(got.Data) != string(m.Data) {
			t.Fatalf("frame %+v for %+v", got, m)
		}
		if !bytes.Equal(payload, encodeWSMessage(m)[ws.HeaderSize(h):]) {
			t.Fatalf("appendWSMessage and encodeWSMessage differ for %s", m.ID)
		}
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes after the last frame", r.Len())
	}
}
