package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/problem"
)

// requestBody is a request body read whole into a pooled buffer. Call release when done with
// it: every slice of its bytes is invalid afterwards.
type requestBody struct {
	buf *[]byte // from bodyPool; *buf holds the bytes read (at most the limit)
	// err is what ended the read before EOF: a *http.MaxBytesError once the body passed the
	// limit, or the connection's error. Nil when the whole body was read.
	err error
}

// maxPooledBody is the largest buffer put back in bodyPool: enough for any single publish at
// the default message limit; the rare larger (batch) buffers are left to the collector.
const maxPooledBody = 128 << 10

// maxPresize is the most readBody allocates ahead of the bytes arriving.
const maxPresize = 16 << 10

var bodyPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

// readBody checks that the request is application/json (415 otherwise) and reads its body,
// at most limit bytes, within the server's body timeout (408 past it, see readDeadline).
//
// Reading the body whole before decoding it changes no answer: decode replays the same bytes,
// followed by the same error where the read stopped, so the decoder sees what it would have
// seen reading the connection through http.MaxBytesReader.
func (s *server) readBody(c echo.Context, limit int64) (requestBody, error) {
	r := c.Request()
	// The exact value, as clients nearly always send it, needs no parsing.
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return requestBody{}, problem.New(http.StatusUnsupportedMediaType, typeUnsupportedMedia, "the body must be application/json")
		}
	}
	buf := bodyPool.Get().(*[]byte)
	if n := min(r.ContentLength, limit, maxPresize); n > 0 && int64(cap(*buf)) <= n {
		// Room for the body and for the read that sees EOF, so a body of usual size needs one
		// allocation at most. Only up to maxPresize: the Content-Length is the client's word,
		// and memory for more is taken as the bytes arrive.
		*buf = make([]byte, 0, n+1)
	}
	stop := s.readDeadline(c)
	var err error
	*buf, err = readLimited(r.Body, (*buf)[:0], limit)
	if isTimeout(err) {
		c.Response().Header().Set("Connection", "close")
		requestBody{buf: buf}.release()
		return requestBody{}, problem.New(http.StatusRequestTimeout, typeRequestTimeout, "the request body did not arrive in time")
	}
	stop()
	return requestBody{buf: buf, err: err}, nil
}

// readDeadline bounds the time the request's body may take to arrive (a client that sends the
// headers and then a byte now and then would otherwise hold its goroutine and buffer for as long
// as it likes); the returned function lifts the bound once the body is read. It must be lifted:
// net/http reads on in the background while the handler runs, and a deadline passing then would
// cancel the request. After a timeout it stays, so that net/http gives up on the rest of the body
// at once and closes the connection.
//
// Only routes with a body set it, each in its own handler: a long-poll or an SSE stream has no
// body and reads nothing for minutes.
func (s *server) readDeadline(c echo.Context) (lift func()) {
	if s.bodyTimeout <= 0 {
		return func() {}
	}
	rc := http.NewResponseController(c.Response().Writer)
	if rc.SetReadDeadline(time.Now().Add(s.bodyTimeout)) != nil {
		return func() {}
	}
	return func() { _ = rc.SetReadDeadline(time.Time{}) }
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readLimited appends what r holds to b, up to limit bytes. Past the limit it returns the
// first limit bytes and an *http.MaxBytesError, as http.MaxBytesReader would.
func readLimited(r io.Reader, b []byte, limit int64) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		room := b[len(b):cap(b)]
		// One byte past the limit is enough to tell that the body is too large.
		if left := limit + 1 - int64(len(b)); int64(len(room)) > left {
			room = room[:left]
		}
		n, err := r.Read(room)
		b = b[:len(b)+n]
		switch {
		case int64(len(b)) > limit:
			return b[:limit], &http.MaxBytesError{Limit: limit}
		case err == io.EOF:
			return b, nil
		case err != nil:
			return b, err
		}
	}
}

// bytes returns the body read; nil after release.
func (b requestBody) bytes() []byte {
	if b.buf == nil {
		return nil
	}
	return *b.buf
}

// release puts the buffer back in the pool.
func (b requestBody) release() {
	if b.buf != nil && cap(*b.buf) <= maxPooledBody {
		*b.buf = (*b.buf)[:0]
		bodyPool.Put(b.buf)
	}
}

// decode decodes the body into v with encoding/json. It answers 413 past the limit (enforced
// while reading), and 400 for malformed JSON (invalid-json) or JSON of the wrong shape:
// unknown fields, wrong types (invalid-request). The values decoded into v do not share memory
// with the body.
func (b requestBody) decode(v any) error {
	var r io.Reader = bytes.NewReader(b.bytes())
	if b.err != nil {
		r = io.MultiReader(r, errReader{b.err})
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyProblem(err)
	}
	// One JSON value, nothing after it but white space.
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return nil
	case err == nil:
		return badRequest(typeInvalidJSON, "the body holds more than one JSON value")
	default:
		return bodyProblem(err)
	}
}

// errReader is a reader that fails with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
