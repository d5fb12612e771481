package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/gateway/broker"
)

// FuzzClientFrame checks that any text a client sends either parses or is refused, never
// panics, and that what the server echoes back (the id, in an error frame) is valid JSON.
func FuzzClientFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"auth","token":"x"}`,
		`{"type":"subscribe","id":1,"channel":"orders:42","since":"1732700000000-0"}`,
		`{"type":"publish","id":3,"channel":"chat:lobby","data":{"text":"hi"},"idempotency_key":"k"}`,
		`{"type":"ping","id":1e3}`, `{"id":-9223372036854775808}`, `[]`, `"x"`, `{"since":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		frame, err := parseClientFrame(p)
		if err != nil {
			return
		}
		out := errorFrame(frame.ID, "code", "message with "+quote(frame.Type))
		payload := out[len(out)-payloadLen(out):]
		if !json.Valid(payload) {
			t.Fatalf("error frame for %q is not JSON: %q", p, payload)
		}
	})
}

// payloadLen reads the payload length of a server frame built by serverFrame.
func payloadLen(frame []byte) int {
	switch n := int(frame[1]); n {
	case 126:
		return int(frame[2])<<8 | int(frame[3])
	case 127:
		panic("frame too long for the test")
	default:
		return n
	}
}

// FuzzCursor checks that cursors parse only when well formed and that a parsed cursor
// re-encodes to one that parses to the same positions.
func FuzzCursor(f *testing.F) {
	for _, seed := range []string{"0", "1-0", "1732700000000-5,0,3-3", ",", "1-1,", "18446744073709551615-18446744073709551615"} {
		f.Add(seed, 1+strings.Count(seed, ","))
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 1 || n > 128 {
			return
		}
		ids, err := parseCursor(s, n)
		if err != nil {
			return
		}
		if len(ids) != n {
			t.Fatalf("%q: %d ids for %d channels", s, len(ids), n)
		}
		subs := make([]*subscription, n)
		for i, id := range ids {
			subs[i] = &subscription{}
			if id == nil {
				ids[i] = &broker.ID{} // herald writes a position for every channel
			} else {
				subs[i].pos = *id
			}
		}
		again, err := parseCursor(string(appendCursor(nil, subs)), n)
		if err != nil {
			t.Fatalf("re-encoded %q does not parse: %v", s, err)
		}
		for i := range ids {
			if *again[i] != *ids[i] {
				t.Fatalf("%q: position %d changed", s, i)
			}
		}
	})
}

func TestCursorRejects(t *testing.T) {
	for _, tc := range []struct {
		s string
		n int
	}{{"", 1}, {"1-0,2-0", 1}, {"1-0", 2}, {"a", 1}, {"1-0,,x", 3}, {",", 1}, {strings.Repeat("1-0,", 2000) + "1", 2001}} {
		if _, err := parseCursor(tc.s, tc.n); err == nil {
			t.Errorf("parseCursor(%q, %d) accepted", tc.s, tc.n)
		}
	}
	ids, err := parseCursor("5-1,0,", 3)
	if err != nil || *ids[0] != (broker.ID{Ms: 5, Seq: 1}) || !ids[1].IsZero() || ids[2] != nil {
		t.Fatalf("parseCursor: %v %v", ids, err)
	}
}
