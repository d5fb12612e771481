package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
)

// observe is the one middleware every request passes through: it recovers a panic in the
// handler and logs the request. It is a single middleware rather than two because Echo wraps
// its global middleware around the matched handler anew for every request, which costs one
// closure allocation per middleware per request.
//
// The log line carries method, path, the query with tokens redacted, status and duration. It
// never logs headers (the Authorization header, cookies). Successful requests are logged at
// debug level, client errors at info and server errors at error. The WebSocket and SSE routes
// are not logged here: the gateway owns those connections and logs their life.
func (s *server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := c.Path(); p == "/v1/ws" || p == "/v1/sse" {
			return s.recoverPanics(next, c)
		}
		start := time.Now()
		if err := s.recoverPanics(next, c); err != nil {
			// Write the error now, so the status below is the one the client gets.
			c.Error(err)
		}
		s.logRequest(c, start)
		return nil
	}
}

// recoverPanics calls next and turns a panic in it into a logged 500 problem instead of a
// dropped connection. http.ErrAbortHandler keeps its meaning (abort the response silently).
func (s *server) recoverPanics(next echo.HandlerFunc, c echo.Context) (err error) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		r := c.Request()
		s.log.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path,
			"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		err = problem.New(http.StatusInternalServerError, typeInternal, "the server could not complete the request")
	}()
	return next(c)
}

// logRequest writes the request's log line (see observe). The level is checked first: the
// attributes (boxed values, the redacted query) are built only when the line is written, and
// successful requests, the bulk of them, are at debug level, which is off by default.
func (s *server) logRequest(c echo.Context, start time.Time) {
	r := c.Request()
	s.logLine(r.Context(), r.Method, r.URL.Path, r.URL.RawQuery, c.Response().Status, start)
}

// logLine writes a request's log line at the level its status calls for (see observe).
func (s *server) logLine(ctx context.Context, method, path, rawQuery string, status int, start time.Time) {
	level := slog.LevelDebug
	switch {
	case status >= 500:
		level = slog.LevelError
	case status >= 400:
		level = slog.LevelInfo
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	s.log.Log(ctx, level, "http request", "method", method, "path", path,
		"query", auth.RedactQuery(rawQuery), "status", status,
		"duration", time.Since(start))
}

// corsHeaders guards a browser-facing route: a request from an origin the policy does not allow
// is refused with 403, and an allowed one gets the CORS response headers (on errors too, so the
// page can read the problem document).
func (s *server) corsHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		s.cors.SetHeaders(c.Response().Header(), r)
		if !s.cors.Allowed(r.Header.Get("Origin")) {
			return problem.OriginNotAllowed()
		}
		return next(c)
	}
}

// preflight answers a CORS preflight (OPTIONS) request: 204 with the preflight headers for an
// allowed origin, 403 for any other.
func (s *server) preflight(c echo.Context) error {
	r := c.Request()
	if !s.cors.Allowed(r.Header.Get("Origin")) {
		c.Response().Header().Add("Vary", "Origin")
		return problem.OriginNotAllowed()
	}
	s.cors.SetPreflightHeaders(c.Response().Header(), r)
	return c.NoContent(http.StatusNoContent)
}
