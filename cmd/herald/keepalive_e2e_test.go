package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A backend publishing over one keep-alive connection: after the first publish herald's epoll
// core answers the usual publishes on that connection itself, and hands anything else back to
// net/http. The client must not be able to tell: same answers, same connection, nothing lost.

// rawClient is an HTTP/1.1 client on one TCP connection, writing requests byte for byte.
type rawClient struct {
	t    *testing.T
	logs func() string
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, s *server) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, logs: s.logs, conn: conn, br: bufio.NewReader(conn)}
}

// rawRequest renders a request; extra holds header lines ("Name: value").
func rawRequest(method, path, token, contentType, body string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: herald\r\n", method, path)
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	if method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// answer is a response reduced to what a client sees, without what differs between any two
// answers (Date) and the connection handling (Connection).
type answer struct {
	status  int
	headers string
	body    string
	closes  bool // the server ends the connection after this answer
}

var anyMessageID = regexp.MustCompile(`"\d+-\d+"`)

func (c *rawClient) read() answer {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading an answer: %v (herald's log: %s)", err, c.logs())
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.t.Fatalf("reading an answer's body: %v", err)
	}
	var names []string
	for name, values := range resp.Header {
		if name != "Date" && name != "Connection" {
			names = append(names, name+": "+strings.Join(values, ", "))
		}
	}
	slices.Sort(names)
	return answer{status: resp.StatusCode, headers: strings.Join(names, "\n"), body: string(body), closes: resp.Close}
}

func (c *rawClient) send(raw string) answer {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, raw); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

// httpConnections is herald_connections{transport="http"}: keep-alive connections the epoll
// core holds ("" when /metrics has no such series).
func httpConnections(t *testing.T, s *server) string {
	t.Helper()
	v, ok := metric(t, s, `herald_connections{transport="http"}`)
	if !ok {
		return ""
	}
	return strconv.Itoa(int(v))
}

func TestKeepAlivePublishesAnsweredAlikeOnBothPaths(t *testing.T) {
	s := startServer(t, freePort(t))
	c := dialRaw(t, s)
	publish := func(channel, body string, extra ...string) string {
		return rawRequest("POST", "/v1/channels/"+channel+"/messages", s.pub, "application/json", body, extra...)
	}
	// The first publish is net/http's; it hands the connection to the epoll core.
	if a := c.send(publish("ka", `{"data":0}`)); a.status != 201 {
		t.Fatalf("first publish: %+v", a)
	}
	// The answer goes out just before the connection is counted.
	waitUntil(t, 5*time.Second, func() bool { return httpConnections(t, s) == "1" },
		"herald_connections{transport=\"http\"} = 1 after a publish on a keep-alive connection (is %s)",
		func() string { return httpConnections(t, s) })
	// A message published with key "dup" beforehand makes both paths answer a replay.
	if a := dialRaw(t, s).send(publish("ka", `{"data":"dup"}`, "Idempotency-Key: dup")); a.status != 201 {
		t.Fatalf("setup publish: %+v", a)
	}

	cases := []struct {
		name string
		req  string
	}{
		{"publish", publish("ka", `{"data":{"n":1},"event":"e"}`)},
		{"replayed publish", publish("ka", `{"data":"dup"}`, "Idempotency-Key: dup")},
		{"channel with a slash", publish("a%2Fb", `{"data":2}`)},
		{"invalid token", rawRequest("POST", "/v1/channels/ka/messages", "nope", "application/json", `{"data":3}`)},
		{"no token", rawRequest("POST", "/v1/channels/ka/messages", "", "application/json", `{"data":3}`)},
		{"token without the right", rawRequest("POST", "/v1/channels/ka/messages", s.sub, "application/json", `{"data":3}`)},
		{"invalid JSON", publish("ka", `{"data":`)},
		{"unknown field", publish("ka", `{"data":1,"x":2}`)},
		{"no data", publish("ka", `{"event":"e"}`)},
		{"text/plain", rawRequest("POST", "/v1/channels/ka/messages", s.pub, "text/plain", `{"data":3}`)},
		{"charset", rawRequest("POST", "/v1/channels/ka/messages", s.pub, "application/json; charset=utf-8", `{"data":4}`)},
		{"invalid channel", publish("bad%20channel", `{"data":3}`)},
		{"bad Idempotency-Key", publish("ka", `{"data":3}`, "Idempotency-Key: \x7f")},
		{"data too large", publish("ka", `{"data":"`+strings.Repeat("x", 70000)+`"}`)},
		{"browser origin", publish("ka", `{"data":5}`, "Origin: http://example.com")},
		{"history", rawRequest("GET", "/v1/channels/ka/messages?limit=2", s.pub, "", "")},
		{"unknown route", rawRequest("POST", "/v1/nope", s.pub, "application/json", `{}`)},
		{"publish after the others", publish("ka", `{"data":6}`)},
	}
	for _, tc := range cases {
		onKeepAlive := c.send(tc.req)
		if onKeepAlive.closes {
			// net/http ends the connection after some errors (a malformed header, a body past
			// the limit), on either path: go on with a new one, handed over to the core.
			c = dialRaw(t, s)
			if a := c.send(publish("other", `{"data":0}`)); a.status != 201 {
				t.Fatalf("publish on a new connection: %+v", a)
			}
			onKeepAlive.closes = false
		}
		// The same request on a connection of its own, which net/http answers and then closes.
		fresh := dialRaw(t, s).send(strings.Replace(tc.req, "Host: herald\r\n", "Host: herald\r\nConnection: close\r\n", 1))
		fresh.closes = false
		onKeepAlive.body = anyMessageID.ReplaceAllString(onKeepAlive.body, `"ID"`)
		fresh.body = anyMessageID.ReplaceAllString(fresh.body, `"ID"`)
		if tc.name != "history" && onKeepAlive != fresh {
			t.Errorf("%s: on the keep-alive connection:\n%d\n%s\n%s\non a connection of its own:\n%d\n%s\n%s",
				tc.name, onKeepAlive.status, onKeepAlive.headers, onKeepAlive.body, fresh.status, fresh.headers, fresh.body)
		}
		if tc.name == "history" && (onKeepAlive.status != 200 || onKeepAlive.headers != fresh.headers) {
			t.Errorf("history: %+v, want the answer of %+v", onKeepAlive, fresh)
		}
	}

	// Two publishes in one write (pipelined), and one written in two parts.
	first, second := publish("ka", `{"data":"p1"}`), publish("ka", `{"data":"p2"}`)
	io.WriteString(c.conn, first+second)
	for i := range 2 {
		if a := c.read(); a.status != 201 {
			t.Fatalf("pipelined publish %d: %+v", i, a)
		}
	}
	split := publish("ka", `{"data":"split"}`)
	io.WriteString(c.conn, split[:40])
	time.Sleep(50 * time.Millisecond)
	if a := c.send(split[40:]); a.status != 201 {
		t.Fatalf("publish written in two parts: %+v", a)
	}
	if a := c.send(publish("ka", `{"data":"last"}`)); a.status != 201 {
		t.Fatalf("last publish: %+v", a)
	}

	// Every accepted message on channel ka is stored once, in the order sent.
	h := c.send(rawRequest("GET", "/v1/channels/ka/messages?limit=100", s.pub, "", ""))
	got := regexp.MustCompile(`"data":("[a-z0-9]+"|\{"n":1\}|\d+)`).FindAllStringSubmatch(h.body, -1)
	var data []string
	for _, m := range got {
		data = append(data, m[1])
	}
	want := []string{"0", `"dup"`, `{"n":1}`, `{"n":1}`, "4", "4", "5", "5", "6", "6", `"p1"`, `"p2"`, `"split"`, `"last"`}
	if !slices.Equal(data, want) {
		t.Fatalf("history of ka: %v, want %v (%s)", data, want, h.body)
	}
}

// TestKeepAliveRequestThenHalfClose: a client that sends its last publish and at once shuts its
// side down gets the answer, and then the end of the connection (not after the idle timeout).
func TestKeepAliveRequestThenHalfClose(t *testing.T) {
	s := startServer(t, freePort(t))
	c := dialRaw(t, s)
	req := rawRequest("POST", "/v1/channels/halfclose/messages", s.pub, "application/json", `{"data":1}`)
	c.send(req) // net/http's; the connection moves to the epoll core
	waitUntil(t, 5*time.Second, func() bool { return httpConnections(t, s) == "1" }, "the connection adopted")
	io.WriteString(c.conn, req)
	c.conn.(*net.TCPConn).CloseWrite()
	if a := c.read(); a.status != 201 {
		t.Fatalf("last publish: %+v", a)
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("after the answer: %q, %v; want the connection's end", n, err)
	}
}

// TestKeepAliveConnectionOnShutdown: SIGTERM closes an idle adopted connection (the client sees
// the end, as with net/http's idle connections) and herald exits promptly.
func TestKeepAliveConnectionOnShutdown(t *testing.T) {
	s := startServer(t, freePort(t))
	c := dialRaw(t, s)
	req := rawRequest("POST", "/v1/channels/bye/messages", s.pub, "application/json", `{"data":1}`)
	c.send(req)
	c.send(req) // answered by the epoll core
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.br.ReadByte(); err == nil {
		t.Fatalf("read %q from the adopted connection after SIGTERM, want its end", n)
	}
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("herald did not exit after SIGTERM")
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}
