package herald

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// collectSSE parses a stream fed in the given pieces.
func collectSSE(pieces ...string) ([]sseEvent, error) {
	var events []sseEvent
	err := readSSE(&piecesReader{pieces: pieces}, nil, func(ev sseEvent) error {
		events = append(events, ev)
		return nil
	})
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return events, err
}

type piecesReader struct{ pieces []string }

func (r *piecesReader) Read(p []byte) (int, error) {
	for len(r.pieces) > 0 && r.pieces[0] == "" {
		r.pieces = r.pieces[1:]
	}
	if len(r.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.pieces[0])
	r.pieces[0] = r.pieces[0][n:]
	return n, nil
}

const sampleStream = "retry: 2000\n\n" +
	"event: herald.gap\ndata: {\"channel\":\"a\"}\n\n" +
	"id: 1-0,0-0\r\nevent: status\r\ndata: {\"channel\":\"a\",\"id\":\"1-0\",\"data\":{\"x\":1}}\r\n\r\n" +
	": ping\n\n" +
	"id: 1-0,5-0\rdata: line one\rdata:line two\r\r" +
	"id: 1-0,5-0\n\n" +
	"unknown: field\ndata\n\n" +
	"retry: 1234\n\n"

var sampleEvents = []sseEvent{
	{retry: 2000 * time.Millisecond},
	{event: "herald.gap", data: `{"channel":"a"}`, retry: -1},
	{id: "1-0,0-0", hasID: true, event: "status", data: `{"channel":"a","id":"1-0","data":{"x":1}}`, retry: -1},
	{id: "1-0,5-0", hasID: true, data: "line one\nline two", retry: -1},
	{id: "1-0,5-0", hasID: true, retry: -1},
	{retry: -1}, // a bare "data" line: an empty data field
	{retry: 1234 * time.Millisecond},
}

// TestReadSSE parses a stream with every line ending, comments and multi-line data, fed whole
// and in two pieces split at every offset.
func TestReadSSE(t *testing.T) {
	got, err := collectSSE(sampleStream)
	if err != nil || !reflect.DeepEqual(got, sampleEvents) {
		t.Fatalf("whole: %v\n got %+v\nwant %+v", err, got, sampleEvents)
	}
	for i := range len(sampleStream) {
		got, err := collectSSE(sampleStream[:i], sampleStream[i:])
		if err != nil || !reflect.DeepEqual(got, sampleEvents) {
			t.Fatalf("split at %d: %v\n got %+v\nwant %+v", i, err, got, sampleEvents)
		}
	}
}

func FuzzReadSSE(f *testing.F) {
	f.Add(sampleStream, 7)
	f.Add("data: x\r\n\r\n", 3)
	f.Fuzz(func(t *testing.T, s string, cut int) {
		whole, err1 := collectSSE(s)
		if cut < 0 {
			cut = -cut
		}
		cut %= len(s) + 1
		split, err2 := collectSSE(s[:cut], s[cut:])
		if (err1 == nil) != (err2 == nil) || !reflect.DeepEqual(whole, split) {
			t.Fatalf("split at %d changes the events:\n%+v %v\n%+v %v", cut, whole, err1, split, err2)
		}
	})
}

func TestBackoffFullJitter(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: time.Second}
	ceilings := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, c := range ceilings {
		c *= time.Millisecond
		if got := b.ceiling(); got != c {
			t.Fatalf("retry %d: ceiling %v, want %v", i, got, c)
		}
		if d := b.next(); d < 0 || d > c {
			t.Fatalf("retry %d: delay %v outside [0, %v]", i, d, c)
		}
	}
	b.reset()
	if b.ceiling() != 100*time.Millisecond {
		t.Fatal("reset did not restart the sequence")
	}
	// Full jitter spreads: 200 draws below 1s are not all in one tenth of the range.
	lo, hi := time.Hour, time.Duration(0)
	for range 200 {
		d := jitter(time.Second)
		lo, hi = min(lo, d), max(hi, d)
	}
	if hi-lo < 500*time.Millisecond {
		t.Fatalf("jitter spread only [%v, %v]", lo, hi)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"1", time.Second}, {" 30 ", 30 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestReconnectAfter(t *testing.T) {
	for _, tc := range []struct {
		reason string
		want   time.Duration
		ok     bool
	}{
		{"reconnect_after_ms=2218", 2218 * time.Millisecond, true},
		{"reconnect_after_ms=0", 0, true},
		{"reconnect_after_ms=-5", 0, false},
		{"reconnect_after_ms=x", 0, false},
		{"shutdown", 0, false},
		{"no pong", 0, false},
	} {
		got, ok := reconnectAfter(tc.reason)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %v %v, want %v %v", tc.reason, got, ok, tc.want, tc.ok)
		}
	}
}

// A refusal's delay is the backoff's, never under the Retry-After, and spread over a quarter of
// it past the Retry-After.
func TestRefusalDelay(t *testing.T) {
	for range 200 {
		if d := refusalDelay(2*time.Second, 100*time.Millisecond); d < 2*time.Second || d > 2500*time.Millisecond {
			t.Fatalf("Retry-After 2s, backoff 100ms: %v, want 2s-2.5s", d)
		}
	}
	if d := refusalDelay(2*time.Second, 10*time.Second); d != 10*time.Second {
		t.Errorf("Retry-After 2s, backoff 10s: %v, want the backoff", d)
	}
	if d := refusalDelay(0, 300*time.Millisecond); d != 300*time.Millisecond {
		t.Errorf("no Retry-After: %v, want the backoff", d)
	}
}

func TestProblemFromBody(t *testing.T) {
	h := http.Header{"Content-Type": {"application/problem+json"}, "Retry-After": {"1"}}
	p := problemFromBody(503, h, strings.NewReader(`{"type":"unavailable","title":"Service Unavailable","status":503,"detail":"store down"}`))
	want := &ProblemError{Status: 503, Type: "unavailable", Title: "Service Unavailable", Detail: "store down", RetryAfter: time.Second}
	if !reflect.DeepEqual(p, want) || !p.Temporary() {
		t.Fatalf("%+v", p)
	}
	if p.Error() != "herald: 503 unavailable: store down" {
		t.Fatalf("Error() = %q", p.Error())
	}
	// A proxy's HTML error page still gives the status.
	p = problemFromBody(502, http.Header{"Content-Type": {"text/html"}}, strings.NewReader("<html>bad gateway</html>"))
	if p.Status != 502 || p.Type != "" || p.Title != "Bad Gateway" || !p.Temporary() {
		t.Fatalf("%+v", p)
	}
	var err error = &CloseError{Code: 4001, Reason: "token expired"}
	if !errors.Is(err, ErrTokenExpired) || errors.Is(&CloseError{Code: 4008}, ErrTokenExpired) {
		t.Fatal("CloseError 4001 must match ErrTokenExpired, others not")
	}
}

func TestValidChannel(t *testing.T) {
	for _, ok := range []string{"a", "orders:42", "a/b", "x@y=z+w-v_u.t", strings.Repeat("c", 255)} {
		if !validChannel(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "a b", "a{b}", "a*", "ü", strings.Repeat("c", 256)} {
		if validChannel(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEndpointEscapesChannels(t *testing.T) {
	base, err := parseBase("https://push.example.com/herald/", "http", "https")
	if err != nil {
		t.Fatal(err)
	}
	got := endpoint(base, nil, "v1", "channels", "a/b+c:d", "messages")
	if want := "https://push.example.com/herald/v1/channels/a%2Fb+c:d/messages"; got != want {
		t.Fatalf("%s\nwant %s", got, want)
	}
	if _, err := parseBase("ftp://x", "http", "https"); err == nil {
		t.Fatal("ftp accepted")
	}
}
