package herald

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestTokenRefreshInBand: the server sends refresh frames (the tokens here live 6 s, inside its
// one-minute warning); the client answers each with a token from its token function, and the
// connection outlives every token without ever dropping.
func TestTokenRefreshInBand(t *testing.T) {
	t.Parallel()
	g := startGateway(t, "--heartbeat", "1s")
	pub := publisher(t, g.url())
	var mu sync.Mutex
	calls := 0
	tokens := func(context.Context) (string, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		// 6 s, whole seconds: at least 5 s, room for a refresh on a loaded machine, whose
		// heartbeat wheel and token round trip can each be late by a second or more.
		return mint(t, 6*time.Second, []string{"tok:*"}, nil), nil
	}
	c, states := newTestClient(t, g.url(), WebSocket, WithTokenFunc(tokens), WithHeartbeat(time.Second))
	var in inbox
	sub, err := c.Subscribe("tok:inband", in.handle)
	if err != nil {
		t.Fatal(err)
	}
	waitLive(t, sub)
	const n = 130 // 13 s: longer than two tokens live
	for i := range n {
		publishN(t, pub, "tok:inband", i, i+1)
		time.Sleep(100 * time.Millisecond)
	}
	wantSequence(t, "messages", in.waitMessages(t, n, 10*time.Second), 0, n)
	if d := states.disconnects(); len(d) != 0 {
		t.Fatalf("the connection dropped: %v", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls < 3 {
		t.Fatalf("token function called %d times; want the connect and at least two refreshes", calls)
	}
}

// TestTokenExpiredReconnects: the token function will not renew a token early, so the token
// expires on the open connection: the server ends it (WebSocket close 4001, SSE
// herald.token-expired), the client asks the token function again, reconnects and resumes
// without losing or repeating a message.
func TestTokenExpiredReconnects(t *testing.T) {
	t.Parallel()
	g := startGateway(t, "--heartbeat", "1s")
	pub := publisher(t, g.url())
	for _, tr := range transports() {
		t.Run(tr.String(), func(t *testing.T) {
			t.Parallel()
			channel := "tok:expiry-" + tr.String()
			var mu sync.Mutex
			var firstExpiry int64 // unix seconds
			tokens := func(context.Context) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				if firstExpiry == 0 {
					firstExpiry = time.Now().Add(2 * time.Second).Unix()
					return mint(t, 2*time.Second, []string{"tok:*"}, nil), nil
				}
				if time.Now().Unix() < firstExpiry {
					return "", errors.New("not renewing a token that is still valid")
				}
				return mint(t, time.Hour, []string{"tok:*"}, nil), nil
			}
			refreshErrs := make(chan error, 10)
			c, states := newTestClient(t, g.url(), tr, WithTokenFunc(tokens), WithHeartbeat(time.Second),
				WithErrorHandler(func(err error) {
					select {
					case refreshErrs <- err:
					default:
					}
				}))
			var in inbox
			sub, err := c.Subscribe(channel, in.handle, OnGap(in.gap))
			if err != nil {
				t.Fatal(err)
			}
			waitLive(t, sub)
			const n = 80 // 4 s of messages, across the expiry
			for i := range n {
				publishN(t, pub, channel, i, i+1)
				time.Sleep(50 * time.Millisecond)
			}
			wantSequence(t, "messages", in.waitMessages(t, n, 10*time.Second), 0, n)
			time.Sleep(50 * time.Millisecond)
			msgs, _, gaps := in.snapshot()
			wantSequence(t, "messages, none twice", msgs, 0, n)
			if gaps != 0 {
				t.Fatalf("%d gaps", gaps)
			}
			d := states.disconnects()
			if len(d) == 0 || !errors.Is(d[0].Err, ErrTokenExpired) {
				t.Fatalf("disconnects %v; want the first to be ErrTokenExpired", d)
			}
			if tr == WebSocket {
				select {
				case err := <-refreshErrs:
					t.Logf("the refused refresh was reported: %v", err)
				default:
					t.Fatal("the server's refresh frame did not reach the token function")
				}
			}
		})
	}
}
