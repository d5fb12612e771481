package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// Problem types (the "type" member of every error document). Clients switch on them; the
// OpenAPI document lists them.
const (
	typeNotFound           = "not-found"
	typeMethodNotAllowed   = "method-not-allowed"
	typeUnsupportedMedia   = "unsupported-media-type"
	typeRequestTooLarge    = "request-too-large"
	typeRequestTimeout     = "request-timeout"
	typeMessageTooLarge    = "message-too-large"
	typeBatchTooLarge      = "batch-too-large"
	typeInvalidJSON        = "invalid-json"
	typeInvalidRequest     = "invalid-request"
	typeInvalidChannel     = "invalid-channel"
	typeInvalidEvent       = "invalid-event"
	typeMissingData        = "missing-data"
	typeInvalidData        = "invalid-data"
	typeInvalidIdempotency = "invalid-idempotency-key"
	typeInvalidSince       = "invalid-since"
	typeInvalidLimit       = "invalid-limit"
	typeUnauthorized       = problem.TypeUnauthorized
	typeInvalidToken       = problem.TypeInvalidToken
	typeTokenExpired       = problem.TypeTokenExpired
	typeForbidden          = problem.TypeForbidden
	typeOriginNotAllowed   = problem.TypeOriginNotAllowed
	typeUnavailable        = problem.TypeUnavailable
	typeBacklogged         = "backlogged"
	typeRateLimited        = problem.TypeRateLimited
	typeNotReady           = "not-ready"
	typeInternal           = "internal"
)

// handleError is Echo's HTTPErrorHandler: it answers every error as a problem document. Handlers
// return *problem.Details for errors the client caused; anything else is logged and answered
// as a 500 that tells nothing about the internals.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	problem.Write(c.Response(), s.toProblem(err, c))
}

// toProblem turns an error from a handler or from Echo's router into a problem document.
func (s *server) toProblem(err error, c echo.Context) *problem.Details {
	var (
		p  *problem.Details
		he *echo.HTTPError
		mb *http.MaxBytesError
	)
	r := c.Request()
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &mb):
		return problem.New(http.StatusRequestEntityTooLarge, typeRequestTooLarge,
			"the request body is larger than this route accepts")
	case errors.As(err, &he) && he.Code == http.StatusNotFound:
		return problem.New(http.StatusNotFound, typeNotFound, "no route "+r.Method+" "+r.URL.Path)
	case errors.As(err, &he) && he.Code == http.StatusMethodNotAllowed:
		// Echo's router has set the Allow header.
		return problem.New(http.StatusMethodNotAllowed, typeMethodNotAllowed,
			r.Method+" is not allowed on "+r.URL.Path)
	case errors.As(err, &he) && he.Code < http.StatusInternalServerError:
		return problem.New(he.Code, "http-error", http.StatusText(he.Code))
	}
	s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	return problem.New(http.StatusInternalServerError, typeInternal, "the server could not complete the request")
}

// brokerProblem maps a broker error: a store that cannot be reached now (or a closed broker, or
// a deadline that ran out) is the 503 of problem.StoreUnavailable, which the client may retry
// after a second; anything else is a 500. The store's error text is logged, never sent.
func (s *server) brokerProblem(ctx context.Context, err error) *problem.Details {
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded) {
		s.log.WarnContext(ctx, "message store unavailable", "err", err)
		return problem.StoreUnavailable()
	}
	s.log.ErrorContext(ctx, "broker call failed", "err", err)
	return problem.New(http.StatusInternalServerError, typeInternal, "the server could not complete the request")
}

// awaitFanOut holds a publish while this node's fan-out is saturated (see
// Gateway.AwaitFanOutRoom), and answers 429 if it stays saturated for Options.FanOutWait.
func (s *server) awaitFanOut(ctx context.Context) *problem.Details {
	if s.gateway == nil || s.gateway.AwaitFanOutRoom(ctx, s.fanOutWait) {
		return nil
	}
	p := problem.New(http.StatusTooManyRequests, typeBacklogged,
		"this node cannot deliver messages as fast as they are published; retry (with the same Idempotency-Key) shortly")
	p.RetryAfter = time.Second
	return p
}

// publishErrorReason is the herald_publish_errors_total label for a failed publish.
func publishErrorReason(p *problem.Details) string {
	switch p.Type {
	case typeUnauthorized, typeInvalidToken, typeTokenExpired:
		return "unauthorized"
	case typeForbidden, typeOriginNotAllowed:
		return "forbidden"
	case typeRequestTooLarge, typeMessageTooLarge, typeBatchTooLarge:
		return "too_large"
	case typeUnavailable:
		return "unavailable"
	case typeBacklogged:
		return "backlogged"
	case typeRateLimited:
		return "rate_limited"
	case typeInternal:
		return "internal"
	}
	return "invalid"
}

// badRequest is a 400 problem.
func badRequest(typ, detail string) *problem.Details {
	return problem.New(http.StatusBadRequest, typ, detail)
}
