package main

import (
	"bytes"
	"errors"
)

// answerReader parses the HTTP/1.1 answers on one publisher's connection, one answer per
// request, from reads that may split them anywhere. Between reads it keeps only the part of a
// head that has not ended yet; bodies are counted and skipped. The zero value is ready to read
// an answer; reset makes it ready for the next one.
//
// It accepts what herald sends: a status line, headers and a body of Content-Length bytes (or
// none, for 204 and 304). A chunked or otherwise framed body, an interim 1xx answer or a head
// past maxAnswerHead is an error, never a wait for bytes that will not come.
type answerReader struct {
	head   []byte // the start of a head that did not end in an earlier read
	inBody bool   // the head was parsed
	body   int    // body bytes still to come
	status int
	close  bool // the server closes the connection after this answer
}

// maxAnswerHead bounds a head: herald's are a few hundred bytes.
const maxAnswerHead = 16 << 10

// The ways an answer can be unusable. Their texts are the error causes in the results.
var (
	errStatusLine   = errors.New("malformed status line")
	errHeaderLine   = errors.New("malformed header")
	errLength       = errors.New("malformed Content-Length")
	errChunked      = errors.New("chunked answer")
	errNoLength     = errors.New("answer without Content-Length")
	errInterim      = errors.New("interim 1xx answer")
	errHeadTooLarge = errors.New("answer head too large")
	errExtraBytes   = errors.New("bytes after the answer")
)

var (
	crlf             = []byte("\r\n")
	endOfHead        = []byte("\r\n\r\n")
	hdrContentLength = []byte("Content-Length")
	hdrTransferEnc   = []byte("Transfer-Encoding")
	hdrConnection    = []byte("Connection")
)

// reset forgets the last answer, keeping the head buffer's memory.
func (a *answerReader) reset() {
	*a = answerReader{head: a.head[:0]}
}

// feed consumes bytes of the answer from b. Once the answer is complete it reports done and
// returns what b holds past its end (nothing, unless the server sent more than one answer);
// until then it consumes all of b.
func (a *answerReader) feed(b []byte) (rest []byte, done bool, err error) {
	if !a.inBody {
		if b, err = a.feedHead(b); err != nil || !a.inBody {
			return nil, false, err
		}
	}
	n := min(a.body, len(b))
	a.body -= n
	return b[n:], a.body == 0, nil
}

// feedHead looks for the end of the head in what was kept and b. When the head is complete it
// parses it and returns the bytes of b that follow it; otherwise it keeps b.
func (a *answerReader) feedHead(b []byte) ([]byte, error) {
	kept := len(a.head)
	buf, from := b, 0
	if kept > 0 {
		a.head = append(a.head, b...)
		buf, from = a.head, max(0, kept-len(endOfHead)+1)
	}
	i := bytes.Index(buf[from:], endOfHead)
	if i < 0 {
		if kept == 0 {
			a.head = append(a.head, b...)
		}
		if len(a.head) > maxAnswerHead {
			return nil, errHeadTooLarge
		}
		return nil, nil
	}
	end := from + i + len(endOfHead)
	if end > maxAnswerHead {
		return nil, errHeadTooLarge
	}
	if err := a.parseHead(buf[:end-len(crlf)]); err != nil {
		return nil, err
	}
	a.head = a.head[:0]
	return b[end-kept:], nil
}

// parseHead reads the status line and the headers that frame the body; h is the head without
// its final empty line.
func (a *answerReader) parseHead(h []byte) error {
	line, h, _ := bytes.Cut(h, crlf)
	status, ok := parseStatusLine(line)
	if !ok {
		return errStatusLine
	}
	a.status = status
	a.close = line[len("HTTP/1.")] == '0' // HTTP/1.0 closes unless it says keep-alive
	length := -1
	for len(h) > 0 {
		line, h, _ = bytes.Cut(h, crlf)
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return errHeaderLine
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, hdrContentLength):
			n, ok := parseLength(value)
			if !ok || length >= 0 && n != length {
				return errLength
			}
			length = n
		case bytes.EqualFold(name, hdrTransferEnc):
			return errChunked
		case bytes.EqualFold(name, hdrConnection):
			if hasToken(value, "close") {
				a.close = true
			} else if hasToken(value, "keep-alive") {
				a.close = false
			}
		}
	}
	switch {
	case status < 200:
		return errInterim
	case status == 204 || status == 304:
		length = 0
	case length < 0:
		return errNoLength
	}
	a.inBody, a.body = true, length
	return nil
}

// parseStatusLine reads "HTTP/1.x NNN reason".
func parseStatusLine(line []byte) (int, bool) {
	if len(line) < len("HTTP/1.x NNN") || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return 0, false
	}
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		status = status*10 + int(c-'0')
	}
	return status, status >= 100
}

// parseLength reads a Content-Length value: decimal digits, at most 15 of them.
func parseLength(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 15 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// hasToken reports whether the comma-separated list v holds token, ignoring case.
func hasToken(v []byte, token string) bool {
	for part := range bytes.SplitSeq(v, []byte(",")) {
		if bytes.EqualFold(bytes.TrimSpace(part), []byte(token)) {
			return true
		}
	}
	return false
}
