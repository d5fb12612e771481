package herald

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A node that refuses a subscriber connection for its load (503 over-capacity: it is full; 429
// connect-rate-limited: this address connects too fast) says when to come back in Retry-After.
// The Client reports the refusal, waits at least that long, connects once it may, and then
// receives what is published. An early attempt would be refused again and counted by the node.
func TestRefusedConnectWaitsForRetryAfter(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		status int
		typ    string
		reason string // of herald_connection_refusals_total
		// prepare makes the node refuse the next connection; it returns what frees it.
		prepare func(t *testing.T, url string) func()
	}{
		{
			name: "over-capacity", args: []string{"--max-connections", "1"},
			status: 503, typ: "over-capacity", reason: "node_full",
			prepare: func(t *testing.T, url string) func() { return refusalHoldStream(t, url) },
		},
		{
			name: "connect-rate-limited", args: []string{"--connect-rate-per-ip", "0.5", "--connect-burst-per-ip", "1"},
			status: 429, typ: "connect-rate-limited", reason: "address_rate",
			prepare: func(t *testing.T, url string) func() {
				refusalHoldStream(t, url)() // takes the address's one token
				return func() {}
			},
		},
	}
	for _, tr := range []Transport{WebSocket, SSE} {
		for _, tc := range cases {
			t.Run(tr.String()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				g := startGateway(t, tc.args...)
				free := tc.prepare(t, g.url())
				states := &refusalStates{}
				c, _ := newTestClient(t, g.url(), tr, WithStateHandler(states.record))
				in := &inbox{}
				channel := "refused:" + tc.name
				sub, err := c.Subscribe(channel, in.handle)
				if err != nil {
					t.Fatal(err)
				}

				var refused *ProblemError
				var retryIn time.Duration
				checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
					refused, retryIn = states.firstRefusal()
					if refused == nil {
						return errors.New("no refusal reported yet")
					}
					return nil
				})
				if refused.Status != tc.status || refused.Type != tc.typ || refused.RetryAfter < time.Second {
					t.Fatalf("refusal = %d %q Retry-After %v, want %d %q with a Retry-After", refused.Status, refused.Type, refused.RetryAfter, tc.status, tc.typ)
				}
				if retryIn < refused.RetryAfter {
					t.Errorf("RetryIn = %v, shorter than the Retry-After %v", retryIn, refused.RetryAfter)
				}
				free()

				waitLive(t, sub)
				if gap := states.nextAttemptAfterRefusal(); gap < refused.RetryAfter {
					t.Errorf("the next attempt came %v after the refusal, before the Retry-After %v", gap, refused.RetryAfter)
				}
				if n := refusalCount(t, g.url(), tc.reason); n != 1 {
					t.Errorf("the node refused %d connections (%s), want 1: the client came back too early", n, tc.reason)
				}
				if c.State() != Connected {
					t.Errorf("state = %v, want connected", c.State())
				}
				p := publisher(t, g.url())
				publishN(t, p, channel, 1, 2)
				wantSequence(t, "after the refusal", in.waitMessages(t, 1, 10*time.Second), 1, 2)
			})
		}
	}
}

// refusalStates records a Client's state changes with the time each came.
type refusalStates struct {
	mu      sync.Mutex
	changes []StateChange
	at      []time.Time
}

func (s *refusalStates) record(sc StateChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes = append(s.changes, sc)
	s.at = append(s.at, time.Now())
}

// firstRefusal returns the problem of the first Disconnected change that carried one, and its
// RetryIn.
func (s *refusalStates) firstRefusal() (*ProblemError, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sc := range s.changes {
		var pe *ProblemError
		if sc.State == Disconnected && errors.As(sc.Err, &pe) {
			return pe, sc.RetryIn
		}
	}
	return nil, 0
}

// nextAttemptAfterRefusal is the time from the first refusal to the Connecting change after it.
func (s *refusalStates) nextAttemptAfterRefusal() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var refusedAt time.Time
	for i, sc := range s.changes {
		var pe *ProblemError
		switch {
		case refusedAt.IsZero() && sc.State == Disconnected && errors.As(sc.Err, &pe):
			refusedAt = s.at[i]
		case !refusedAt.IsZero() && sc.State == Connecting:
			return s.at[i].Sub(refusedAt)
		}
	}
	return -1
}

// refusalHoldStream opens an SSE stream, so that it holds a connection slot of the node, and
// returns what closes it.
func refusalHoldStream(t *testing.T, baseURL string) func() {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, baseURL+"/v1/sse?channel=refusal-hold", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+mint(t, time.Hour, []string{"*"}, nil))
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("holding stream: HTTP %d", resp.StatusCode)
	}
	var once sync.Once
	closeIt := func() { once.Do(func() { resp.Body.Close() }) }
	t.Cleanup(closeIt)
	return closeIt
}

// refusalCount reads herald_connection_refusals_total{reason=...} from the node's /metrics.
func refusalCount(t *testing.T, baseURL, reason string) int {
	t.Helper()
	resp, err := noKeepAlive.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	prefix := fmt.Sprintf("herald_connection_refusals_total{reason=%q} ", reason)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s%s: %v", prefix, v, err)
			}
			return int(n)
		}
	}
	return 0
}
