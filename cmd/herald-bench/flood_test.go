package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeServer accepts connections on loopback and hands each, with the request head read, to
// serve.
func fakeServer(t *testing.T, serve func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				got := 0
				for !strings.Contains(string(buf[:got]), "\r\n\r\n") {
					n, err := c.Read(buf[got:])
					if err != nil {
						c.Close()
						return
					}
					got += n
				}
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

func TestUpgradeOnceAnswers(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		serve func(c *net.TCPConn)
		want  string
		held  bool
	}{
		{"101 with a frame behind it", func(c *net.TCPConn) {
			c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02{}"))
			time.Sleep(time.Second) // keep it open while the client holds it
			c.Close()
		}, "101", true},
		{"503 in pieces", func(c *net.TCPConn) {
			for _, p := range []string{"HTTP/1.1 5", "03 Service Unavailable\r\nRetry-After: 2\r", "\n\r\n{}"} {
				c.Write([]byte(p))
				time.Sleep(10 * time.Millisecond)
			}
			c.Close()
		}, "503", false},
		{"reset", func(c *net.TCPConn) { c.SetLinger(0); c.Close() }, "reset", false},
		{"closed without an answer", func(c *net.TCPConn) { c.Close() }, "eof", false},
		{"no answer", func(c *net.TCPConn) { time.Sleep(2 * time.Second); c.Close() }, "timeout", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeServer(t, tc.serve)
			c, answer := upgradeOnce(ctx, addr, "tok", "127.0.0.1", 300*time.Millisecond)
			if c != nil {
				c.Close()
			}
			if answer != tc.want || (c != nil) != tc.held {
				t.Fatalf("answer %q (held %v), want %q (held %v)", answer, c != nil, tc.want, tc.held)
			}
		})
	}
	// Nothing listens on a port just released: refused.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, answer := upgradeOnce(ctx, addr, "", "", time.Second); answer != "refused" {
		t.Fatalf("closed port: %q, want refused", answer)
	}
}

func TestSeriesDelta(t *testing.T) {
	parse := func(s string) metricSet {
		m, err := parseMetrics(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := parse(`herald_connection_refusals_total{reason="node_full"} 2
herald_connection_refusals_total{reason="address_rate"} 5
herald_connections 7
`)
	after := parse(`herald_connection_refusals_total{reason="node_full"} 12
herald_connection_refusals_total{reason="address_rate"} 5
herald_connection_refusals_total{reason="address_connections"} 3
herald_connection_refusals_total{a="1",b="2"} 1
herald_connections 9
`)
	got := seriesDelta(before, after, "herald_connection_refusals_total")
	want := map[string]float64{"node_full": 10, "address_connections": 3, `a="1",b="2"`: 1}
	if len(got) != len(want) {
		t.Fatalf("seriesDelta = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("seriesDelta[%s] = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func TestWSUpgradeRequest(t *testing.T) {
	req := string(wsUpgradeRequest("h:1", "tok"))
	for _, want := range []string{"GET /v1/ws HTTP/1.1\r\n", "\r\nHost: h:1\r\n", "\r\nUpgrade: websocket\r\n", "\r\nAuthorization: Bearer tok\r\n"} {
		if !strings.Contains(req, want) {
			t.Errorf("request %q lacks %q", req, want)
		}
	}
	if !strings.HasSuffix(req, "\r\n\r\n") {
		t.Errorf("request %q does not end with its head", req)
	}
}
