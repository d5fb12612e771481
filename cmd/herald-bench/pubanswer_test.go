package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Answers as herald writes them (net/http: Date, Content-Length, no chunking for small bodies).
const (
	answer201 = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nVary: Origin\r\n" +
		"Date: Fri, 27 Nov 2026 10:01:43 GMT\r\nContent-Length: 39\r\n\r\n" +
		`{"id":"1795773703634-0","channel":"x"}` + "\n"
	answer400 = "HTTP/1.1 400 Bad Request\r\nCache-Control: no-store\r\nContent-Type: application/problem+json\r\n" +
		"Vary: Origin\r\nDate: Fri, 27 Nov 2026 10:01:44 GMT\r\nContent-Length: 97\r\n\r\n" +
		`{"type":"invalid-json","title":"Bad Request","status":400,"detail":"the body is not valid JSON"}` + "\n"
	answer429 = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\n" +
		"Content-Length: 69\r\n\r\n" +
		`{"type":"overloaded","title":"Too Many Requests","status":429,"x":1}` + "\n"
	answer413Close = "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/problem+json\r\n" +
		"Connection: close\r\nContent-Length: 2\r\n\r\n{}"
	answer204 = "HTTP/1.1 204 No Content\r\nDate: Fri, 27 Nov 2026 10:01:44 GMT\r\n\r\n"
)

type answerCase struct {
	name   string
	text   string
	status int
	close  bool
}

var answerCases = []answerCase{
	{"201", answer201, 201, false},
	{"400", answer400, 400, false},
	{"429", answer429, 429, false},
	{"413 close", answer413Close, 413, true},
	{"204", answer204, 204, false},
	{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, true},
	{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 1\r\n\r\nx", 200, false},
}

// feedPieces feeds text to a in the given pieces and checks that only the last one completes it.
func feedPieces(t *testing.T, a *answerReader, what string, pieces []string, c answerCase) {
	t.Helper()
	for i, p := range pieces {
		rest, done, err := a.feed([]byte(p))
		if err != nil {
			t.Fatalf("%s: piece %d: %v", what, i, err)
		}
		if done != (i == len(pieces)-1) {
			t.Fatalf("%s: piece %d of %d: done = %v", what, i, len(pieces), done)
		}
		if len(rest) != 0 {
			t.Fatalf("%s: piece %d: %d bytes left over", what, i, len(rest))
		}
	}
	if a.status != c.status || a.close != c.close {
		t.Fatalf("%s: status %d close %v, want %d %v", what, a.status, a.close, c.status, c.close)
	}
	a.reset()
}

// TestAnswerReaderSplit feeds every answer on one reader, one after the other as on a
// keep-alive connection, whole, in two pieces cut at every offset, and a byte at a time.
func TestAnswerReaderSplit(t *testing.T) {
	var a answerReader
	for _, c := range answerCases {
		feedPieces(t, &a, c.name+" whole", []string{c.text}, c)
		for cut := 1; cut < len(c.text); cut++ {
			feedPieces(t, &a, fmt.Sprintf("%s cut %d", c.name, cut), []string{c.text[:cut], c.text[cut:]}, c)
		}
		feedPieces(t, &a, c.name+" bytewise", strings.Split(c.text, ""), c)
	}
}

// TestAnswerReaderTwoAnswers: an answer nobody asked for shows up as bytes after the first.
func TestAnswerReaderTwoAnswers(t *testing.T) {
	var a answerReader
	rest, done, err := a.feed([]byte(answer201 + answer400))
	if err != nil || !done || string(rest) != answer400 {
		t.Fatalf("done %v err %v rest %q", done, err, rest)
	}
}

func TestAnswerReaderUnexpected(t *testing.T) {
	cases := []struct {
		name string
		text string
		want error
	}{
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", errChunked},
		{"no length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello", errNoLength},
		{"bad length", "HTTP/1.1 201 Created\r\nContent-Length: 1x\r\n\r\n", errLength},
		{"two lengths", "HTTP/1.1 201 Created\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", errLength},
		{"not http", "SSH-2.0-OpenSSH_9.6\r\n\r\n", errStatusLine},
		{"bad status", "HTTP/1.1 2x1 Created\r\nContent-Length: 0\r\n\r\n", errStatusLine},
		{"no colon", "HTTP/1.1 201 Created\r\nContent-Length 0\r\n\r\n", errHeaderLine},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\n", errInterim},
		{"huge head", "HTTP/1.1 201 Created\r\nX: " + strings.Repeat("a", maxAnswerHead) + "\r\n\r\n", errHeadTooLarge},
	}
	for _, c := range cases {
		for _, step := range []int{len(c.text), 7, 1} {
			var a answerReader
			var err error
			for b := []byte(c.text); len(b) > 0 && err == nil; {
				n := min(step, len(b))
				_, _, err = a.feed(b[:n])
				b = b[n:]
			}
			if !errors.Is(err, c.want) {
				t.Errorf("%s in pieces of %d: err %v, want %v", c.name, step, err, c.want)
			}
		}
	}
}

// TestAnswerReaderNoAllocs: reading a whole answer, the usual case, allocates nothing.
func TestAnswerReaderNoAllocs(t *testing.T) {
	var a answerReader
	b := []byte(answer201)
	allocs := testing.AllocsPerRun(100, func() {
		a.reset()
		if _, done, err := a.feed(b); !done || err != nil {
			t.Fatal(done, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per answer", allocs)
	}
}
