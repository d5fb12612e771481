package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/memory"
)

// historyFailing is a memory broker whose History fails with err: what a Valkey script error
// looks like to the gateway.
type historyFailing struct {
	*memory.Broker
	err error
}

func (b historyFailing) History(context.Context, string, broker.HistoryQuery) (broker.HistoryPage, error) {
	return broker.HistoryPage{}, b.err
}

// newFailingEnv is newEnv with a broker whose History fails with err.
func newFailingEnv(t *testing.T, err error) *testEnv {
	t.Helper()
	return newEnv(t, withConfig(func(c *Config) { c.BrokerTimeout = 2 * time.Second }),
		withBroker(func(b *memory.Broker) broker.Broker { return historyFailing{Broker: b, err: err} }))
}

// TestBrokerFailureTextStaysInTheLog: when the broker fails a subscribe, SSE, long-poll and
// WebSocket clients are told whether to retry, and nothing of the broker's error text (Valkey's
// reply, with its script hash) reaches them.
func TestBrokerFailureTextStaysInTheLog(t *testing.T) {
	const secret = "invalid start ID for the interval script: 0ddb804c8f42264b09d34e2f0a30f9c0f46616db"
	for _, tt := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"a reply of the store", errors.New("valkey broker: history: " + secret), 500, "internal"},
		{"the store out of reach", fmt.Errorf("valkey broker: history: %w: %s", broker.ErrUnavailable, secret), 503, "unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newFailingEnv(t, tt.err)
			tok := e.token([]string{"*"}, nil, time.Hour)
			for _, path := range []string{"/v1/sse?channel=c&since=0", "/v1/poll?channel=c&since=0&timeout=0", "/v1/poll?channel=c&timeout=0"} {
				req, _ := http.NewRequest("GET", "http://"+e.addr+path, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || !strings.Contains(string(body), `"type":"`+tt.code+`"`) || strings.Contains(string(body), "0ddb80") {
					t.Errorf("%s: %d %s; want %d %s without the broker's text", path, resp.StatusCode, body, tt.status, tt.code)
				}
			}
			c := e.dialWS(bearer(tok))
			c.expect("connected")
			c.send(map[string]any{"type": "subscribe", "id": 1, "channel": "c", "since": "0"})
			m := c.expect("error")
			if m["code"] != tt.code || strings.Contains(fmt.Sprint(m["message"]), "0ddb80") {
				t.Errorf("WebSocket subscribe: %v; want code %s without the broker's text", m, tt.code)
			}
		})
	}
}
