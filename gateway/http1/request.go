// Package http1 reads HTTP/1.1 requests out of bytes, for the requests that herald's epoll core
// answers itself on keep-alive connections (see gateway.Gateway.AdoptHTTP).
//
// It recognizes a strict subset of HTTP/1.1, the shape every HTTP client library sends for a
// small POST: a request line ending in HTTP/1.1, CRLF line ends, no folded header lines, a body
// sized by Content-Length. Anything else, including every malformed request, is Unsupported: the
// caller then hands the bytes to net/http, which answers it (or its error) as for any request.
// So this package never has to produce an HTTP error itself, and a request it serves is one that
// net/http would have read the same way.
package http1

import (
	"bytes"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Request is a request read by Parse. Its byte slices point into the buffer given to Parse and
// are valid as long as that buffer is.
type Request struct {
	Method []byte
	Path   []byte // the request target up to '?', still percent-encoded
	Query  []byte // the request target after '?', without it; empty when there is none

	// The headers the handlers look at. A header that may appear once and appeared twice
	// makes the request Unsupported.
	Host           []byte
	ContentType    []byte
	Authorization  []byte
	IdempotencyKey []byte
	Origin         []byte
	// HasIdempotencyKey, HasOrigin and HasCookie tell a header sent empty from one not sent.
	HasIdempotencyKey bool
	HasOrigin         bool
	HasCookie         bool

	Body []byte // Content-Length bytes; empty without Content-Length
}

// Status is the result of Parse.
type Status uint8

const (
	// Complete: a whole request was read.
	Complete Status = iota
	// Incomplete: the bytes are the start of a request Parse could read; more must arrive.
	Incomplete
	// Unsupported: not a request for this package (or not a valid one); net/http decides.
	Unsupported
)

// Limits bound what Parse accepts; a request past them is Unsupported.
type Limits struct {
	MaxHead int // bytes of request line and headers, final empty line included
	MaxBody int // bytes of body
}

// Parse reads the request at the start of b into r. With Complete, n is the number of bytes
// of b the request took (the next request, if pipelined, starts there).
func Parse(b []byte, lim Limits, r *Request) (n int, st Status) {
	*r = Request{}
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		if len(b) >= lim.MaxHead || !plausiblePrefix(b) || bareLF(b) {
			return 0, Unsupported
		}
		return 0, Incomplete
	}
	headLen := end + len(crlfcrlf)
	if headLen > lim.MaxHead {
		return 0, Unsupported
	}
	head := b[:end+2] // each line, the last included, ends in CRLF
	line, head := cutLine(head)
	if !r.parseRequestLine(line) {
		return 0, Unsupported
	}
	contentLength, seen := -1, headerSet(0)
	for len(head) > 0 {
		line, head = cutLine(head)
		name, value, ok := splitHeader(line)
		if !ok {
			return 0, Unsupported
		}
		h := lookup(name)
		if h&once != 0 && seen&h&^once != 0 {
			return 0, Unsupported
		}
		seen |= h
		switch h &^ once {
		case hHost:
			r.Host = value
		case hContentType:
			r.ContentType = value
		case hAuthorization:
			r.Authorization = value
		case hIdempotencyKey:
			r.IdempotencyKey, r.HasIdempotencyKey = value, true
		case hOrigin:
			r.Origin, r.HasOrigin = value, true
		case hCookie:
			r.HasCookie = true
		case hContentLength:
			contentLength = parseLength(value)
			if contentLength < 0 {
				return 0, Unsupported
			}
		case hConnection:
			if !asciiEqualFold(value, "keep-alive") {
				return 0, Unsupported // close, upgrade, or a list: net/http's rules apply
			}
		case hUnsupported:
			return 0, Unsupported
		}
	}
	if seen&hHost == 0 || !httpguts.ValidHostHeader(string(r.Host)) {
		return 0, Unsupported // HTTP/1.1 requires a valid Host; net/http answers 400
	}
	if contentLength < 0 {
		contentLength = 0
	}
	if contentLength > lim.MaxBody {
		return 0, Unsupported
	}
	if len(b)-headLen < contentLength {
		return 0, Incomplete
	}
	r.Body = b[headLen : headLen+contentLength]
	return headLen + contentLength, Complete
}

var crlfcrlf = []byte("\r\n\r\n")

// cutLine splits off the first CRLF-terminated line (without its CRLF).
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.Index(b, crlf)
	return b[:i], b[i+2:]
}

var crlf = []byte("\r\n")

// parseRequestLine reads "METHOD SP origin-form SP HTTP/1.1".
func (r *Request) parseRequestLine(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return false
	}
	method, rest := line[:sp], line[sp+1:]
	for _, c := range method {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 || string(rest[sp+1:]) != "HTTP/1.1" {
		return false
	}
	target := rest[:sp]
	if target[0] != '/' || (len(target) > 1 && target[1] == '/') {
		return false // absolute-form, authority-form, "*", or a path net/http reads as a host
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	r.Method = method
	r.Path, r.Query = target, nil
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		r.Path, r.Query = target[:q], target[q+1:]
	}
	return validEscapes(r.Path)
}

// validEscapes reports whether every '%' in path starts a two-digit hex escape, as net/http's
// URL parsing requires of a request path.
func validEscapes(path []byte) bool {
	for i := 0; i < len(path); i++ {
		if path[i] == '%' {
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// splitHeader splits "name: value" with the value's surrounding blanks trimmed. A name must be
// a token and a value visible ASCII, space or tab; a folded line (one that starts with a blank)
// is not a header line here.
func splitHeader(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	name = line[:colon]
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, false
		}
	}
	value = line[colon+1:]
	for _, c := range value {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return nil, nil, false
		}
	}
	return name, bytes.Trim(value, " \t"), true
}

// isTokenChar reports whether c may appear in a header name (RFC 9110's tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c != 0 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseLength reads a Content-Length: decimal digits only, at most 9 of them; -1 otherwise.
func parseLength(v []byte) int {
	if len(v) == 0 || len(v) > 9 {
		return -1
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// plausiblePrefix reports whether b could be the start of a request Parse reads: it rules out
// at once what is certainly not (a TLS hello, an HTTP/2 preface, bytes that are not a method),
// so those go to net/http without waiting for more.
func plausiblePrefix(b []byte) bool {
	for i, c := range b {
		if c == ' ' {
			return i > 0
		}
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// bareLF reports whether b has a line feed without a carriage return before it: net/http reads
// such lines, this package does not.
func bareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// headerSet is a set of the headers Parse knows; bit "once" marks those allowed once only.
type headerSet uint16

const (
	hHost headerSet = 1 << iota
	hContentType
	hAuthorization
	hIdempotencyKey
	hOrigin
	hCookie
	hContentLength
	hConnection
	hUnsupported           // headers that change how the request is read or answered
	once         headerSet = 1 << 15
)

// knownHeaders are the headers Parse looks at, with the once bit for those that may appear once.
var knownHeaders = [...]struct {
	name string // lower case
	set  headerSet
}{
	{"host", hHost | once},
	{"content-type", hContentType | once},
	{"authorization", hAuthorization | once},
	{"idempotency-key", hIdempotencyKey | once},
	{"origin", hOrigin | once},
	{"cookie", hCookie},
	{"content-length", hContentLength | once},
	{"connection", hConnection | once},
	{"transfer-encoding", hUnsupported},
	{"expect", hUnsupported},
	{"upgrade", hUnsupported},
	{"trailer", hUnsupported},
}

// lookup returns the header a name denotes (case-insensitively); 0 for headers Parse ignores,
// as net/http's server does.
func lookup(name []byte) headerSet {
	for _, h := range knownHeaders {
		if asciiEqualFold(name, h.name) {
			return h.set
		}
	}
	return 0
}

// asciiEqualFold reports whether b equals the lower-case ASCII string s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// Handler answers requests that the epoll core read (see gateway.Gateway.AdoptHTTP).
type Handler interface {
	// ServeFast answers r by appending a complete HTTP/1.1 response (status line, headers,
	// body) to dst. It returns ok false, having done nothing at all, for a request it does not
	// serve this way: the caller then hands the request, and the connection, to net/http. It
	// may block (on the broker), and must not keep r or its bytes after returning.
	ServeFast(r *Request, dst []byte) (out []byte, ok bool)
}
