package herald

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// subscriber is one Client with one subscription, for the resume tests.
type subscriber struct {
	c      *Client
	states *stateLog
	sub    *Subscription
	in     *inbox
}

func subscribeAll(t *testing.T, baseURL, channel string, opts ...Option) []*subscriber {
	t.Helper()
	var out []*subscriber
	for _, tr := range transports() {
		c, states := newTestClient(t, baseURL, tr, opts...)
		in := &inbox{}
		sub, err := c.Subscribe(channel, in.handle, OnGap(in.gap))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &subscriber{c, states, sub, in})
	}
	for _, s := range out {
		waitLive(t, s.sub)
	}
	return out
}

func (s *subscriber) name() string { return s.c.cfg.transport.String() }

// TestRestartMemoryBroker kills the gateway (SIGKILL) and starts it again on the same port: the
// subscribers reconnect by themselves, are told about the gap (the memory broker lost the log),
// then receive what is published after the restart, in order and once.
func TestRestartMemoryBroker(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	pub := publisher(t, g.url())
	subs := subscribeAll(t, g.url(), "restart:mem")
	publishN(t, pub, "restart:mem", 0, 3)
	for _, s := range subs {
		s.in.waitMessages(t, 3, 10*time.Second)
	}

	g.kill()
	g.start()
	publishN(t, pub, "restart:mem", 3, 8) // maybe before, maybe after the subscribers are back

	for _, s := range subs {
		msgs := s.in.waitMessages(t, 8, 15*time.Second)
		wantSequence(t, s.name(), msgs, 0, 8)
		_, events, gaps := s.in.snapshot()
		// The gap comes after what was received before the restart and before what follows.
		if gaps != 1 || !slices.Equal(events[:4], []string{"0", "1", "2", "gap"}) {
			t.Fatalf("%s: events %v; want exactly one gap, right after the messages before the restart", s.name(), events)
		}
		if why := s.in.reasons(); why[0] != GapBrokerReset {
			t.Fatalf("%s: gap reason %q, want %q: the restarted gateway lost its log", s.name(), why[0], GapBrokerReset)
		}
		if s.states.count(Connected) < 2 {
			t.Fatalf("%s: connected %d times", s.name(), s.states.count(Connected))
		}
	}
	// Live after the gap, too.
	publishN(t, pub, "restart:mem", 8, 10)
	for _, s := range subs {
		wantSequence(t, s.name(), s.in.waitMessages(t, 10, 10*time.Second), 0, 10)
	}
}

// TestRestartValkeyBroker runs two gateways on one Valkey. The subscribers' gateway shuts down
// (SIGTERM: they get its reconnect hint); messages published through the other gateway during
// the outage are in Valkey; when the gateway is back the subscribers resume and receive every
// message exactly once, in order, with no gap.
func TestRestartValkeyBroker(t *testing.T) {
	t.Parallel()
	valkeyURL := startValkey(t)
	a := startGateway(t, "--valkey-url", valkeyURL)
	b := startGateway(t, "--valkey-url", valkeyURL)
	pubA, pubB := publisher(t, a.url()), publisher(t, b.url())
	subs := subscribeAll(t, a.url(), "restart:valkey")
	publishN(t, pubA, "restart:valkey", 0, 3)
	for _, s := range subs {
		s.in.waitMessages(t, 3, 10*time.Second)
	}

	a.stop()
	publishN(t, pubB, "restart:valkey", 3, 23) // during the outage, through the other node
	a.start()
	publishN(t, pubB, "restart:valkey", 23, 26)
	publishN(t, pubA, "restart:valkey", 26, 28)

	for _, s := range subs {
		s.in.waitMessages(t, 28, 20*time.Second)
		time.Sleep(50 * time.Millisecond)
		msgs, _, gaps := s.in.snapshot()
		wantSequence(t, s.name(), msgs, 0, 28)
		if gaps != 0 {
			t.Fatalf("%s: %d gaps; Valkey kept everything", s.name(), gaps)
		}
	}
	// The WebSocket subscriber followed the shutdown hint.
	ws := subs[0].states.disconnects()
	var ce *CloseError
	if len(ws) == 0 || !errors.As(ws[0].Err, &ce) || ce.Code != 1001 || !strings.HasPrefix(ce.Reason, "reconnect_after_ms=") {
		t.Fatalf("websocket disconnects %v; want the first to be a 1001 reconnect_after_ms close", ws)
	}
	if hint, _ := reconnectAfter(ce.Reason); ws[0].RetryIn != hint {
		t.Fatalf("waited %v after %q", ws[0].RetryIn, ce.Reason)
	}
	var hint *reconnectHint
	if sse := subs[1].states.disconnects(); len(sse) == 0 || !errors.As(sse[0].Err, &hint) || sse[0].RetryIn != hint.after {
		t.Fatalf("sse disconnects %v; want the first to follow the retry hint", sse)
	}
}

// startValkey runs valkey-server on a free port, data in a temporary directory.
func startValkey(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("valkey-server")
	if err != nil {
		t.Fatal("valkey-server not found: run .ci/install-deps")
	}
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	var logs syncBuffer
	cmd := exec.Command(bin, "--port", port, "--bind", host, "--save", "", "--appendonly", "yes", "--dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("valkey log:\n%s", logs.String())
		}
	})
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "+PONG\r\n" {
			return fmt.Errorf("PING: %q %v", line, err)
		}
		return nil
	})
	return "valkey://" + addr
}

// TestGapOnTrimmedHistory cuts the subscribers off (a proxy between them and the gateway) while
// 50 messages are published to a channel that keeps 10: on their return the gap callback runs,
// then the 10 retained messages follow.
func TestGapOnTrimmedHistory(t *testing.T) {
	t.Parallel()
	g := startGateway(t, "--history-size", "10")
	pub := publisher(t, g.url())
	proxy := newTCPProxy(t, g.addr)
	subs := subscribeAll(t, proxy.url(), "trim:x")
	publishN(t, pub, "trim:x", 0, 1)
	for _, s := range subs {
		s.in.waitMessages(t, 1, 10*time.Second)
	}

	proxy.cut()
	for _, s := range subs {
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if len(s.states.disconnects()) == 0 {
				return fmt.Errorf("%s: still connected", s.name())
			}
			return nil
		})
	}
	publishN(t, pub, "trim:x", 1, 51)
	proxy.resume()

	for _, s := range subs {
		s.in.waitMessages(t, 11, 15*time.Second)
		time.Sleep(50 * time.Millisecond)
		msgs, events, gaps := s.in.snapshot()
		if gaps != 1 || events[1] != "gap" {
			t.Fatalf("%s: events %v; want one gap right after the first message", s.name(), events)
		}
		if why := s.in.reasons(); why[0] != GapTrimmed {
			t.Fatalf("%s: gap reason %q, want %q", s.name(), why[0], GapTrimmed)
		}
		wantSequence(t, s.name()+" (the 10 retained)", msgs[1:], 41, 51)
	}
}

// TestDeadConnectionDetected freezes the connection (it stays open but carries nothing, as
// when a peer vanishes without a FIN): the client notices within two heartbeats, reconnects
// and resumes.
func TestDeadConnectionDetected(t *testing.T) {
	t.Parallel()
	g := startGateway(t, "--heartbeat", "1s")
	pub := publisher(t, g.url())
	proxy := newTCPProxy(t, g.addr)
	subs := subscribeAll(t, proxy.url(), "dead:x", WithHeartbeat(time.Second))
	publishN(t, pub, "dead:x", 0, 2)
	for _, s := range subs {
		s.in.waitMessages(t, 2, 10*time.Second)
	}
	proxy.freeze()
	start := time.Now()
	publishN(t, pub, "dead:x", 2, 5)
	for _, s := range subs {
		wantSequence(t, s.name(), s.in.waitMessages(t, 5, 10*time.Second), 0, 5)
		d := s.states.disconnects()
		if len(d) != 1 || !errors.Is(d[0].Err, ErrDeadConnection) {
			t.Fatalf("%s: disconnects %v; want one ErrDeadConnection", s.name(), d)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("noticing the dead connection took %v", took)
	}
}
