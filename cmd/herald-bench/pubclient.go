package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// publisher is one keep-alive HTTP/1.1 connection that POSTs messages to a channel. It is
// written by hand rather than with net/http so that the bench's own cost per publish stays a
// small fraction of the gateway's: one write and one buffered read, no allocation per request.
type publisher struct {
	addr   string // host:port to dial
	head   []byte // request line and headers up to "Content-Length: "
	pad    []byte // filler to make messages larger
	conn   net.Conn
	br     *bufio.Reader
	req    []byte
	dialer net.Dialer
}

func newPublisher(base, token, channel string, pad int) (*publisher, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want http://host:port", base)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	head := []byte("POST /v1/channels/" + url.PathEscape(channel) + "/messages HTTP/1.1\r\nHost: " + u.Host +
		"\r\nContent-Type: application/json\r\n")
	head = appendAuth(head, token)
	head = append(head, "Content-Length: "...)
	return &publisher{addr: addr, head: head, pad: bytes.Repeat([]byte("x"), pad),
		dialer: net.Dialer{Timeout: 10 * time.Second}}, nil
}

// publish sends message n, stamped with the time it is written, and reads the answer.
func (p *publisher) publish(n int64) (status int, sent int64, err error) {
	if p.conn == nil {
		c, err := p.dialer.Dial("tcp", p.addr)
		if err != nil {
			return 0, 0, err
		}
		p.conn = c
		if p.br == nil {
			p.br = bufio.NewReaderSize(c, 4096)
		} else {
			p.br.Reset(c)
		}
	}
	sent = time.Now().UnixNano()
	p.req = p.build(p.req[:0], n, sent)
	if _, err := p.conn.Write(p.req); err != nil {
		p.reset()
		return 0, sent, err
	}
	status, closeAfter, err := readResponse(p.br)
	if err != nil || closeAfter {
		p.reset()
	}
	return status, sent, err
}

// build appends the request for message n: {"data":{"t":<sent>,"n":<n>[,"p":"xx.."]}}.
func (p *publisher) build(b []byte, n, sent int64) []byte {
	bodyLen := len(`{"data":{"t":,"n":}}`) + digits(sent) + digits(n)
	if len(p.pad) > 0 {
		bodyLen += len(`,"p":""`) + len(p.pad)
	}
	b = append(b, p.head...)
	b = strconv.AppendInt(b, int64(bodyLen), 10)
	b = append(b, "\r\n\r\n"+`{"data":{"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, n, 10)
	if len(p.pad) > 0 {
		b = append(b, `,"p":"`...)
		b = append(b, p.pad...)
		b = append(b, '"')
	}
	return append(b, "}}"...)
}

func digits(v int64) int {
	n := 1
	if v < 0 {
		n++
		v = -v
	}
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

func (p *publisher) reset() {
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

func (p *publisher) close() { p.reset() }

// readResponse reads one response and discards its body. closeAfter reports that the server
// ends the connection after it.
func readResponse(br *bufio.Reader) (status int, closeAfter bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, true, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, true, errors.New("malformed status line")
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, true, errors.New("malformed status line")
	}
	length, chunked := -1, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return status, true, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return status, true, errors.New("malformed Content-Length")
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closeAfter = bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		if _, err = io.Copy(io.Discard, httputil.NewChunkedReader(br)); err == nil {
			err = skipTrailers(br)
		}
	case length >= 0:
		_, err = br.Discard(length)
	default:
		closeAfter = true // the body runs to EOF
	}
	return status, closeAfter, err
}

// skipTrailers reads the trailer section that ends a chunked body, up to its empty line.
func skipTrailers(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}
