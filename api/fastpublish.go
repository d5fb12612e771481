package api

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/http1"
)

// The publish fast path.
//
// A backend publishing over a keep-alive connection sends the same request shape again and
// again. After net/http served one such publish, the publish handler asks the gateway to adopt
// the connection (Gateway.AdoptHTTP); the gateway's epoll core then reads the next requests
// itself and calls ServeFast. ServeFast answers a publish that passes every check of the usual
// handler, in the same way; for anything else (another route, a failed check, an unusual header)
// it declines before doing anything, and the gateway hands the request with its connection back
// to net/http, where Echo answers it as always. So the fast path changes no answer: it only
// serves the successful publish (and its 429s and 503, which follow every check of the request)
// more cheaply.

// fastEligible reports whether r has the shape ServeFast serves: a bearer token in the
// Authorization header, application/json exactly, no query, cookie or Origin (those go through
// Echo's token lookup and CORS), HTTP/1.1 keep-alive, no Expect (curl sends it with larger
// bodies; the core leaves such requests to net/http, so adopting the connection would only bounce
// it back). Request logging at debug level, which the fast path does not write, keeps every
// request on Echo.
func (s *server) fastEligible(r *http.Request) bool {
	h := r.Header
	return r.ProtoMajor == 1 && r.ProtoMinor == 1 && !r.Close && r.TLS == nil && r.URL.RawQuery == "" &&
		len(h["Origin"]) == 0 && len(h["Cookie"]) == 0 && len(h["Expect"]) == 0 && len(h["Authorization"]) == 1 &&
		bearer(h["Authorization"][0]) != "" && h.Get("Content-Type") == "application/json" &&
		!s.log.Enabled(r.Context(), slog.LevelDebug)
}

// adoptConnection hands the connection of a successful publish to the gateway's epoll core,
// with the publish's answer, when the request has the fast path's shape. It reports whether
// it did; the answer is then written.
func (s *server) adoptConnection(c echo.Context, id broker.ID, channel string, duplicate bool) bool {
	adopter, ok := s.gateway.(connectionAdopter)
	if !ok || !s.fastEligible(c.Request()) {
		return false
	}
	answer := appendCreated(make([]byte, 0, 256), id, channel, duplicate)
	if !adopter.AdoptHTTP(c.Response().Writer, answer, s) {
		return false
	}
	// For the request log: the answer went out past Echo's response writer.
	c.Response().Status, c.Response().Committed = http.StatusCreated, true
	return true
}

// connectionAdopter is the part of the gateway that takes keep-alive connections over (see
// gateway.Gateway.AdoptHTTP).
type connectionAdopter interface {
	AdoptHTTP(w http.ResponseWriter, answer []byte, h http1.Handler) bool
}

// ServeFast implements http1.Handler: POST /v1/channels/{channel}/messages as the publish
// handler serves it, for requests of the fast path's shape (see fastEligible) that pass every
// check; it declines everything else before any effect.
func (s *server) ServeFast(r *http1.Request, dst []byte) (out []byte, ok bool) {
	start := time.Now()
	// It runs on an epoll worker: a panic here must not take the process down. As on the Echo
	// path (recoverPanics), it is logged and answered with a 500.
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("handler panicked", "method", "POST", "path", string(r.Path),
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			out = appendProblem(dst, problem.New(http.StatusInternalServerError, typeInternal, "the server could not complete the request"))
			ok = true
		}
	}()
	if string(r.Method) != http.MethodPost || len(r.Query) > 0 || r.HasOrigin || r.HasCookie ||
		string(r.ContentType) != "application/json" || len(r.Body) > s.maxData+envelopeRoom {
		return dst, false
	}
	rawChannel, ok := publishPath(r.Path)
	if !ok {
		return dst, false
	}
	ctx := context.Background()
	if s.log.Enabled(ctx, slog.LevelDebug) {
		return dst, false
	}
	token := bearer(string(r.Authorization))
	if token == "" {
		return dst, false
	}
	claims, err := s.auth.Verify(ctx, token)
	if err != nil {
		return dst, false
	}
	channel, err := url.PathUnescape(rawChannel)
	if err != nil || !broker.ValidChannel(channel) || !claims.CanPublish(channel) {
		return dst, false
	}
	var key string
	if r.HasIdempotencyKey {
		if key = string(r.IdempotencyKey); checkIdempotencyKey(key) != nil {
			return dst, false
		}
	}
	data, event, ok := parsePublish(r.Body)
	if !ok || s.checkMessage(data, event) != nil {
		return dst, false
	}
	// From here on the request is the fast path's to answer. The checks that follow are the
	// publish handler's, in its order.
	if p := s.limiter.Take(claims.Identity(), 1); p != nil {
		return s.fastProblem(dst, r, p, start), true
	}
	if p := s.awaitFanOut(ctx); p != nil {
		return s.fastProblem(dst, r, p, start), true
	}
	res, err := s.broker.Publish(ctx, broker.PublishRequest{
		Channel: channel, Event: event, Data: data, IdempotencyKey: claims.IdempotencyKey(key),
	})
	if err != nil {
		return s.fastProblem(dst, r, s.brokerProblem(ctx, err), start), true
	}
	if !res.Duplicate {
		s.metrics.Published.Inc()
	}
	return appendCreated(dst, res.ID, channel, res.Duplicate), true
}

// fastProblem counts and logs a failed fast publish, as the publish handler and the observe
// middleware do, and appends its answer.
func (s *server) fastProblem(dst []byte, r *http1.Request, p *problem.Details, start time.Time) []byte {
	s.metrics.PublishErrors.WithLabelValues(publishErrorReason(p)).Inc()
	s.logLine(context.Background(), http.MethodPost, string(r.Path), "", p.Status, start)
	return appendProblem(dst, p)
}

// publishPath returns the channel segment of /v1/channels/{channel}/messages, still escaped.
func publishPath(path []byte) (string, bool) {
	const prefix, suffix = "/v1/channels/", "/messages"
	if !bytes.HasPrefix(path, []byte(prefix)) || !bytes.HasSuffix(path, []byte(suffix)) ||
		len(path) <= len(prefix)+len(suffix) {
		return "", false
	}
	seg := path[len(prefix) : len(path)-len(suffix)]
	if bytes.IndexByte(seg, '/') >= 0 {
		return "", false
	}
	return string(seg), true // the only copy: the whole path is not converted
}

// bearer returns the token of an Authorization header value as auth.FromRequest reads it, or "".
func bearer(h string) string {
	if scheme, token, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}

// appendCreated appends the whole HTTP/1.1 answer of a successful publish, with the headers the
// publish handler and Echo send (net/http adds Date and Content-Length).
func appendCreated(b []byte, id broker.ID, channel string, duplicate bool) []byte {
	b = append(b, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"...)
	if duplicate {
		b = append(b, headerReplayed+": true\r\n"...)
	}
	b = appendTail(b)
	mark := len(b)
	b = appendPublishResponse(b, id, channel)
	return fillLength(b, mark)
}

// appendProblem appends the whole HTTP/1.1 answer of problem p, as problem.Write sends it.
func appendProblem(b []byte, p *problem.Details) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(p.Status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(p.Status)...)
	b = append(b, "\r\nCache-Control: no-store\r\nContent-Type: "+problem.ContentType+"\r\n"...)
	if secs := p.RetryAfterSeconds(); secs > 0 {
		b = append(b, "Retry-After: "...)
		b = strconv.AppendInt(b, int64(secs), 10)
		b = append(b, "\r\n"...)
	}
	b = appendTail(b)
	mark := len(b)
	b = append(b, p.JSON()...)
	return fillLength(b, mark)
}

// contentLengthDigits is the room left for the Content-Length value: bodies here are far below
// 10^7 bytes.
const contentLengthDigits = 7

// appendTail appends the headers every answer ends with: Vary (the CORS middleware's, sent on
// every answer of the route), Date, and a Content-Length whose value fillLength writes.
func appendTail(b []byte) []byte {
	b = append(b, "Vary: Origin\r\nDate: "...)
	b = append(b, httpDate()...)
	b = append(b, "\r\nContent-Length: "...)
	b = append(b, "       \r\n\r\n"...)
	return b
}

// fillLength writes the length of the body (from mark to the end) into the Content-Length
// placeholder appendTail left before it, and closes the gap of unused digits.
func fillLength(b []byte, mark int) []byte {
	var digits [contentLengthDigits]byte
	n := strconv.AppendInt(digits[:0], int64(len(b)-mark), 10)
	start := mark - len("\r\n\r\n") - contentLengthDigits
	copy(b[start:], n)
	return append(b[:start+len(n)], b[start+contentLengthDigits:]...)
}

// dateCache holds the Date header value of the current second.
var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	unix int64
	text string
}

// httpDate returns the current time in the HTTP date format, formatted once per second.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.unix == now.Unix() {
		return d.text
	}
	d := &cachedDate{unix: now.Unix(), text: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.text
}
