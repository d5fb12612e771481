package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestSummarizeHold(t *testing.T) {
	samples := []gatewaySample{
		{At: 0, RSS: 100, HeapInuse: 10, Connections: 1},
		{At: 250e6, RSS: 340, HeapInuse: 40, Connections: 3},
		{At: 500e6, RSS: 300, HeapInuse: 50, Connections: 2},
	}
	s := summarizeHold(100, samples, 3)
	want := rssSummary{Samples: 3, Seconds: 0.5, PeakRSS: 340, PeakHeap: 50, PeakConnections: 3, Growth: 240, PerClient: 80}
	if s != want {
		t.Fatalf("summarizeHold = %+v, want %+v", s, want)
	}
	// RSS that only fell while the clients held on is no growth, and the peak is never below before.
	s = summarizeHold(500, samples, 3)
	if s.PeakRSS != 500 || s.Growth != 0 || s.PerClient != 0 {
		t.Fatalf("falling RSS: %+v", s)
	}
	if s := summarizeHold(100, nil, 3); s.Samples != 0 || s.Growth != 0 {
		t.Fatalf("no samples: %+v", s)
	}
	if s := summarizeHold(100, samples, 0); s.PerClient != 0 || s.Growth != 240 {
		t.Fatalf("no clients: %+v", s)
	}
}

func TestReturnedFraction(t *testing.T) {
	cases := []struct{ before, peak, after, want float64 }{
		{100, 300, 100, 1},   // all back
		{100, 300, 300, 0},   // none back
		{100, 300, 200, 0.5}, // half
		{100, 300, 400, -0.5},
		{100, 100, 500, 1}, // no growth to give back
	}
	for _, c := range cases {
		if got := returnedFraction(c.before, c.peak, c.after); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("returnedFraction(%v, %v, %v) = %v, want %v", c.before, c.peak, c.after, got, c.want)
		}
	}
}

func TestAmplifyRequest(t *testing.T) {
	chans := []string{"a:1", "b/2"}
	cases := []struct {
		kind  string
		i     int
		start string
		has   []string
	}{
		{"history", 1, "GET /v1/channels/b%2F2/messages?limit=1000 HTTP/1.1\r\n", nil},
		{"sse", 0, "GET /v1/sse?channel=a%3A1&channel=b%2F2&since=0,0 HTTP/1.1\r\n", nil},
		{"poll", 0, "GET /v1/poll?channel=a%3A1&channel=b%2F2&since=0,0&timeout=0 HTTP/1.1\r\n", nil},
		{"ws", 1, "GET /v1/ws HTTP/1.1\r\n", []string{`"channel":"b/2"`, `"since":"0"`}},
	}
	for _, c := range cases {
		req := string(amplifyRequest(c.kind, "h:1", "tok", chans, c.i))
		if !strings.HasPrefix(req, c.start) || !strings.Contains(req, "\r\nAuthorization: Bearer tok\r\n") {
			t.Errorf("%s: request %q", c.kind, req)
		}
		head, frame, _ := strings.Cut(req, "\r\n\r\n")
		if !strings.Contains(head, "Host: h:1") {
			t.Errorf("%s: no Host in %q", c.kind, head)
		}
		if c.kind != "ws" && frame != "" {
			t.Errorf("%s: bytes after the head: %q", c.kind, frame)
		}
		if c.kind == "ws" {
			var got []string
			if err := (&frameDecoder{}).feed(unmask([]byte(frame)), recordTexts(&got)); err != nil || len(got) != 1 {
				t.Fatalf("ws: subscribe frame: %v, %q", err, got)
			}
			for _, want := range c.has {
				if !strings.Contains(got[0], want) {
					t.Errorf("ws: subscribe frame %s lacks %s", got[0], want)
				}
			}
		}
	}
}

func TestBatchBody(t *testing.T) {
	var body struct {
		Messages []struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	data := `"` + strings.Repeat("x", 8) + `"`
	if err := json.Unmarshal(batchBody(`c:"q"`, data, 3), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Messages) != 3 {
		t.Fatalf("%d messages", len(body.Messages))
	}
	for _, m := range body.Messages {
		if m.Channel != `c:"q"` || string(m.Data) != data {
			t.Errorf("message %+v", m)
		}
	}
}

func TestAmplifyConfigCheck(t *testing.T) {
	ok := amplifyConfig{kind: "ws", clients: 1, channels: 1, msgs: 1, size: 2, batch: 1, settle: 1, every: 1}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*amplifyConfig){
		"case":    func(c *amplifyConfig) { c.kind = "grpc" },
		"clients": func(c *amplifyConfig) { c.clients = 0 },
		"size":    func(c *amplifyConfig) { c.size = 1 },
		"every":   func(c *amplifyConfig) { c.every = 0 },
		"settle":  func(c *amplifyConfig) { c.settle, c.every = 1, 2 },
	} {
		c := ok
		mod(&c)
		if c.check() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// unmask turns one masked client frame into the unmasked frame a server would send.
func unmask(f []byte) []byte {
	out := []byte{f[0], f[1] &^ 0x80}
	hdr := 2
	switch f[1] & 0x7f {
	case 126:
		hdr = 4
	case 127:
		hdr = 10
	}
	out = append(out, f[2:hdr]...)
	mask, payload := f[hdr:hdr+4], f[hdr+4:]
	for i, b := range payload {
		out = append(out, b^mask[i&3])
	}
	return out
}

type textRecorder struct{ got *[]string }

func (r textRecorder) onFrame(_ byte, p []byte) error {
	*r.got = append(*r.got, string(p))
	return nil
}

func recordTexts(got *[]string) frameHandler { return textRecorder{got} }
