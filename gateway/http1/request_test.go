package http1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

var testLimits = Limits{MaxHead: 8192, MaxBody: 1 << 16}

const publish = "POST /v1/channels/news/messages HTTP/1.1\r\n" +
	"Host: localhost:8080\r\n" +
	"User-Agent: test\r\n" +
	"authorization: Bearer abc.def\r\n" +
	"Content-Type: application/json\r\n" +
	"Idempotency-Key: k-1\r\n" +
	"Content-Length: 13\r\n" +
	"\r\n" +
	`{"data":"hi"}`

func TestParsePublish(t *testing.T) {
	var r Request
	in := publish + "GET /next HTTP/1.1\r\n"
	n, st := Parse([]byte(in), testLimits, &r)
	if st != Complete || n != len(publish) {
		t.Fatalf("Parse = %d, %v; want %d, Complete", n, st, len(publish))
	}
	checks := map[string][2]string{
		"method":          {string(r.Method), "POST"},
		"path":            {string(r.Path), "/v1/channels/news/messages"},
		"query":           {string(r.Query), ""},
		"host":            {string(r.Host), "localhost:8080"},
		"authorization":   {string(r.Authorization), "Bearer abc.def"},
		"content-type":    {string(r.ContentType), "application/json"},
		"idempotency-key": {string(r.IdempotencyKey), "k-1"},
		"body":            {string(r.Body), `{"data":"hi"}`},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if !r.HasIdempotencyKey || r.HasOrigin || r.HasCookie {
		t.Errorf("flags: key %v origin %v cookie %v", r.HasIdempotencyKey, r.HasOrigin, r.HasCookie)
	}
}

func TestParseIncompleteAtEveryCut(t *testing.T) {
	for i := 1; i < len(publish); i++ {
		var r Request
		if _, st := Parse([]byte(publish[:i]), testLimits, &r); st != Incomplete {
			t.Fatalf("first %d bytes: %v, want Incomplete", i, st)
		}
	}
}

func TestParseLeavesOtherRequestsToNetHTTP(t *testing.T) {
	cases := map[string]string{
		"HTTP/1.0":           "POST /x HTTP/1.0\r\nHost: h\r\n\r\n",
		"no Host":            "POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		"bad Host":           "POST /x HTTP/1.1\r\nHost: a b\r\n\r\n",
		"two Hosts":          "POST /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"chunked":            "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
		"expect":             "POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
		"upgrade":            "GET /v1/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
		"connection close":   "POST /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"two lengths":        "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"signed length":      "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx",
		"folded header":      "POST /x HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
		"space before colon": "POST /x HTTP/1.1\r\nHost : h\r\n\r\n",
		"bare LF":            "POST /x HTTP/1.1\nHost: h\n\n",
		"absolute form":      "POST http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
		"two auth":           "POST /x HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
		"two keys":           "POST /x HTTP/1.1\r\nHost: h\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\n\r\n",
		"control in value":   "POST /x HTTP/1.1\r\nHost: h\r\nX-A: a\x01\r\n\r\n",
		"lower-case method":  "post /x HTTP/1.1\r\nHost: h\r\n\r\n",
		"TLS hello":          "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"HTTP/2 preface":     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"body too large":     "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n",
	}
	for name, in := range cases {
		var r Request
		if _, st := Parse([]byte(in), testLimits, &r); st != Unsupported {
			t.Errorf("%s: %v, want Unsupported", name, st)
		}
	}
	var r Request
	if _, st := Parse(bytes.Repeat([]byte("GET /"), 2000), testLimits, &r); st != Unsupported {
		t.Errorf("a head past MaxHead: %v, want Unsupported", st)
	}
}

// FuzzParse holds Parse to net/http: whatever Parse reads as a complete request, net/http reads
// as the same request (method, target, Host, the headers handlers use, body), and whatever
// Parse declares incomplete is the start of input that net/http does not reject outright.
func FuzzParse(f *testing.F) {
	f.Add([]byte(publish))
	f.Add([]byte("GET /v1/channels/a%2Fb?x=1 HTTP/1.1\r\nHost: [::1]:80\r\nCookie: a=b\r\nOrigin: http://o\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive\r\nContent-Length: 007\r\n\r\nabcdefg"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		n, st := Parse(in, testLimits, &r)
		if st != Complete {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in[:n])))
		if err != nil {
			t.Fatalf("Parse read %q, net/http refuses it: %v", in[:n], err)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("net/http body of %q: %v", in[:n], err)
		}
		target := string(r.Path)
		if len(r.Query) > 0 || bytes.HasSuffix(in[:bytes.IndexByte(in, ' ')+1+len(r.Path)+1], []byte("?")) {
			target += "?" + string(r.Query)
		}
		got := []string{string(r.Method), target, string(r.Host), string(r.ContentType), string(r.Authorization),
			string(r.IdempotencyKey), string(r.Origin), string(r.Body)}
		want := []string{req.Method, req.RequestURI, req.Host, req.Header.Get("Content-Type"), req.Header.Get("Authorization"),
			req.Header.Get("Idempotency-Key"), req.Header.Get("Origin"), string(body)}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("%q:\nParse    %q\nnet/http %q", in[:n], got, want)
		}
		if r.HasCookie != (len(req.Header["Cookie"]) > 0) || r.HasIdempotencyKey != (len(req.Header["Idempotency-Key"]) > 0) ||
			r.HasOrigin != (len(req.Header["Origin"]) > 0) {
			t.Fatalf("%q: header presence differs from net/http's", in[:n])
		}
		if req.Close || req.ProtoMinor != 1 {
			t.Fatalf("%q: net/http reads Close=%v HTTP/1.%d", in[:n], req.Close, req.ProtoMinor)
		}
	})
}
