package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tests of the bare-descriptor life of a connection: bytes that arrive with the handshake, a
// close while the event handler reads, and descriptors that are closed exactly once.

// TestFramesInTheUpgradePacket: a client may send frames right behind its upgrade request, in
// the same packet; net/http has then read them already. They are handled in order, and a frame
// cut at the end of that packet is completed by the next read from the socket.
func TestFramesInTheUpgradePacket(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var frames []byte
	for _, f := range []string{
		`{"type":"subscribe","id":1,"channel":"early"}`,
		`{"type":"ping","id":2}`,
		`{"type":"ping","id":3}`,
	} {
		b, err := wsTextFrame(f)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b...)
	}
	cut := len(frames) - 5 // the last frame's payload ends in the next packet
	req := "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Authorization: Bearer " + tok + "\r\n\r\n"
	if _, err := c.Write(append([]byte(req), frames[:cut]...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	wc := &wsClient{t: t, conn: c, br: br, autoPong: true}
	wc.expect("connected")
	if m := wc.expect("subscribed"); m["channel"] != "early" {
		t.Fatalf("subscribed %v", m)
	}
	if m := wc.expect("pong"); m["id"] != float64(2) {
		t.Fatalf("pong %v", m)
	}
	time.Sleep(50 * time.Millisecond) // let the cut frame wait in the decoder
	if _, err := c.Write(frames[cut:]); err != nil {
		t.Fatal(err)
	}
	if m := wc.expect("pong"); m["id"] != float64(3) {
		t.Fatalf("pong %v", m)
	}
	id := e.publish("early", `"live"`)
	if m := wc.expect("message"); m["id"] != id.String() {
		t.Fatalf("message %v", m)
	}
}

// blockingProto is a protocol whose first onData waits until released, to hold the event
// handler busy.
type blockingProto struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (p *blockingProto) onData([]byte) error {
	p.once.Do(func() {
		close(p.entered)
		<-p.release
	})
	return nil
}
func (p *blockingProto) closeFrame(closeCause) []byte { return nil }
func (p *blockingProto) cleanup()                     {}
func (p *blockingProto) heartbeat(int64)              {}

// TestCloseWhileTheHandlerReads: closing a connection whose event handler is running must not
// close the descriptor under it (the number could be reused by another connection before the
// handler's next read); the client still sees the end at once, and the handler closes the
// descriptor when it finishes.
func TestCloseWhileTheHandlerReads(t *testing.T) {
	e := newEnv(t)
	server, client := tcpConnPair(t)
	p := &blockingProto{entered: make(chan struct{}), release: make(chan struct{})}
	c := &conn{}
	if !e.gw.adopt(c, server, kindWS, p, nil) {
		t.Fatal("adopt refused a TCP connection")
	}
	e.gw.start(c)
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-p.entered
	c.close(closeCause{code: 1001, reason: "test", metric: "shutdown"})

	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
		t.Fatalf("client read %v, want EOF while the handler still runs", err)
	}
	if _, err := unix.FcntlInt(uintptr(c.fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("descriptor closed under the running handler: %v", err)
	}
	close(p.release)
	waitFor(t, 5*time.Second, func() bool {
		c.evMu.Lock()
		defer c.evMu.Unlock()
		return c.fdClosed && !c.busy
	}, "the handler closes the descriptor")
}

// TestDescriptorsClosedOnceUnderChurn: clients that keep sending while the gateway closes them
// (slow consumers, closed by the fan-out while their handler reads pings) leave no descriptor
// behind, and no close hits a number that another connection reuses: the bystanders still work.
func TestDescriptorsClosedOnceUnderChurn(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.QueueBytes = 32 << 10; c.FrameRateLimit = 1 << 30 }))
	tok := e.token([]string{"*"}, nil, time.Hour)
	var bystanders []*wsClient
	for range 10 {
		c := e.dialWS(bearer(tok))
		c.expect("connected")
		c.send(map[string]any{"type": "subscribe", "channel": "calm"})
		c.expect("subscribed")
		bystanders = append(bystanders, c)
	}
	base := openFiles(t)

	const senders = 40
	ping, err := wsTextFrame(`{"type":"ping"}`)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range senders {
		c, err := dialWS(e.addr, bearer(tok))
		if err != nil {
			t.Fatalf("sender %d: %v", i, err)
		}
		c.t = t
		c.expect("connected")
		c.send(map[string]any{"type": "subscribe", "channel": "firehose"})
		c.expect("subscribed")
		wg.Add(1)
		go func() { // sends bursts, never reads, until the gateway closes it
			defer wg.Done()
			defer c.conn.Close()
			burst := bytes.Repeat(ping, 8)
			for {
				c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.conn.Write(burst); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	big := `"` + strings.Repeat("y", 16000) + `"`
	waitFor(t, 30*time.Second, func() bool {
		for range 10 {
			e.publish("firehose", big)
		}
		return e.gw.Subscribers("firehose") == 0
	}, "every sender closed (%d left)", e.gw.Subscribers("firehose"))
	wg.Wait()
	waitFor(t, 10*time.Second, func() bool { return openFiles(t) <= base }, "descriptors back to %d (have %d)", base, openFiles(t))
	id := e.publish("calm", `"still here"`)
	for _, c := range bystanders {
		if m := c.expect("message"); m["id"] != id.String() {
			t.Fatalf("bystander got %v", m)
		}
	}
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}
