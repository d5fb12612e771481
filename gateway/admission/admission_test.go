package admission

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func req(remote string) *http.Request {
	return &http.Request{RemoteAddr: remote, Header: http.Header{}}
}

func TestControllerLimits(t *testing.T) {
	c := New(Config{MaxConnections: 3, MaxPerAddr: 2})
	var held []*Slot
	admit := func(remote string, wantStatus int, wantType string) {
		t.Helper()
		s, p := c.Admit(req(remote))
		switch {
		case wantStatus == 0 && p != nil:
			t.Fatalf("%s refused: %v", remote, p)
		case wantStatus == 0:
			held = append(held, s)
		case p == nil:
			t.Fatalf("%s admitted, want %d %s", remote, wantStatus, wantType)
		case p.Status != wantStatus || p.Type != wantType || p.RetryAfter < time.Second:
			t.Fatalf("%s: %d %s retry %v, want %d %s", remote, p.Status, p.Type, p.RetryAfter, wantStatus, wantType)
		}
	}
	admit("127.0.0.2:1", 0, "")
	admit("127.0.0.2:2", 0, "")
	admit("127.0.0.2:3", http.StatusTooManyRequests, TypeAddrFull)
	admit("127.0.0.3:1", 0, "")
	admit("127.0.0.4:1", http.StatusServiceUnavailable, TypeNodeFull)
	if c.Connections() != 3 || c.addrsHeld() != 2 {
		t.Fatalf("connections %d, addresses %d", c.Connections(), c.addrsHeld())
	}
	c.Release(held[0])
	admit("127.0.0.4:1", 0, "") // the node has room again, and .4 had nothing left behind
	admit("127.0.0.2:4", http.StatusServiceUnavailable, TypeNodeFull)
	for _, s := range held[1:] {
		c.Release(s)
	}
	if c.Connections() != 0 || c.addrsHeld() != 0 {
		t.Fatalf("after releasing all: connections %d, addresses %d", c.Connections(), c.addrsHeld())
	}
	if got := value(c.m.Refusals.WithLabelValues(reasonNodeFull)); got != 2 {
		t.Errorf("node_full refusals %v", got)
	}
	if got := value(c.m.Admitted); got != 0 {
		t.Errorf("admitted gauge %v", got)
	}
}

func TestControllerRate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := New(Config{RatePerAddr: 1, BurstPerAddr: 2, Now: func() time.Time { return now }})
	for i := range 2 {
		if _, p := c.Admit(req("127.0.0.2:1")); p != nil {
			t.Fatalf("connect %d refused: %v", i, p)
		}
	}
	_, p := c.Admit(req("127.0.0.2:1"))
	if p == nil || p.Status != http.StatusTooManyRequests || p.Type != TypeAddrRate || p.RetryAfterSeconds() != 1 {
		t.Fatalf("third connect: %+v", p)
	}
	if _, p := c.Admit(req("127.0.0.3:1")); p != nil {
		t.Fatalf("another address refused: %v", p)
	}
	now = now.Add(time.Second)
	if _, p := c.Admit(req("127.0.0.2:1")); p != nil {
		t.Fatalf("after a second: %v", p)
	}
}

func TestNilControllerAdmitsAll(t *testing.T) {
	var c *Controller
	s, p := c.Admit(req("127.0.0.1:1"))
	if s != nil || p != nil {
		t.Fatal("nil controller refused or held")
	}
	c.Release(s)
}

// TestControllerConcurrent: admits and releases from many goroutines never exceed the limits
// and leave nothing behind.
func TestControllerConcurrent(t *testing.T) {
	c := New(Config{MaxConnections: 50, MaxPerAddr: 5})
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := 0
	for g := range 16 {
		wg.Go(func() {
			for i := range 2000 {
				s, p := c.Admit(req("127.0.0." + itoa(1+(g*7+i)%20) + ":1"))
				if p != nil {
					continue
				}
				mu.Lock()
				peak = max(peak, c.Connections())
				mu.Unlock()
				c.Release(s)
			}
		})
	}
	wg.Wait()
	if peak > 50 || c.Connections() != 0 || c.addrsHeld() != 0 {
		t.Fatalf("peak %d, left %d connections, %d addresses", peak, c.Connections(), c.addrsHeld())
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestFromDescriptors(t *testing.T) {
	for n, want := range map[int]int{20000: 18000, 1024: 922, 200: 100, 150: 75, 1: 1, 1 << 20: 943719} {
		if got := FromDescriptors(n); got != want {
			t.Errorf("FromDescriptors(%d) = %d, want %d", n, got, want)
		}
	}
}

// value reads a gauge's or a counter's value.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	_ = m.Write(&d)
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// BenchmarkAdmit is a connect's admission and its release with every limit on, from a
// trusted proxy: the cost each new subscriber pays.
func BenchmarkAdmit(b *testing.B) {
	b.ReportAllocs()
	c := New(Config{MaxConnections: 1 << 20, MaxPerAddr: 1 << 20, RatePerAddr: 1e9,
		TrustedProxies: mustPrefixes(b, "10.0.0.0/8")})
	r := &http.Request{RemoteAddr: "10.1.2.3:4567", Header: http.Header{"X-Forwarded-For": {"198.51.100.7, 10.9.9.9"}}}
	for b.Loop() {
		s, p := c.Admit(r)
		if p != nil {
			b.Fatal(p)
		}
		c.Release(s)
	}
}
