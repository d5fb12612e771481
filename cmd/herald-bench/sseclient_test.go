package main

import (
	"fmt"
	"testing"
)

type gotEvent struct{ id, event, data string }

type eventRecorder struct{ events []gotEvent }

func (r *eventRecorder) onEvent(id, event, data []byte) error {
	g := gotEvent{string(id), string(event), string(data)}
	if id == nil {
		g.id = "<none>"
	}
	if data == nil {
		g.data = "<none>"
	}
	r.events = append(r.events, g)
	return nil
}

func TestSSEDecoderSplitAtEveryOffset(t *testing.T) {
	stream := "retry: 2000\n\n" +
		"id: 0-0\n\n" +
		": ping\n\n" +
		"id: 1732700000001-0\ndata: {\"channel\":\"c\",\"id\":\"1732700000001-0\",\"data\":{\"t\":5}}\n\n" +
		"event: herald.gap\ndata: {\"channel\":\"c\"}\n\n" +
		"id: 1732700000002-0\r\nevent: status\r\ndata: {\"channel\":\"c\",\"id\":\"1732700000002-0\",\"data\":{}}\r\n\n"
	want := []gotEvent{
		{"0-0", "", "<none>"},
		{"1732700000001-0", "", `{"channel":"c","id":"1732700000001-0","data":{"t":5}}`},
		{"<none>", "herald.gap", `{"channel":"c"}`},
		{"1732700000002-0", "status", `{"channel":"c","id":"1732700000002-0","data":{}}`},
	}
	check := func(what string, got []gotEvent) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
		}
	}
	for cut := 0; cut <= len(stream); cut++ {
		var d sseDecoder
		var rec eventRecorder
		for _, piece := range []string{stream[:cut], stream[cut:]} {
			if err := d.feed([]byte(piece), &rec); err != nil {
				t.Fatal(err)
			}
		}
		check(fmt.Sprintf("cut %d", cut), rec.events)
		if len(d.tail) != 0 {
			t.Fatalf("cut %d: %d bytes left over", cut, len(d.tail))
		}
	}
	var d sseDecoder
	var rec eventRecorder
	for i := range len(stream) {
		if err := d.feed([]byte(stream[i:i+1]), &rec); err != nil {
			t.Fatal(err)
		}
	}
	check("byte by byte", rec.events)
}
