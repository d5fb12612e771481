package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// headerReplayed marks a publish answer that repeats an earlier publish with the same
// Idempotency-Key: nothing new was stored.
const headerReplayed = "Idempotent-Replayed"

// publishRequest is the body of POST /v1/channels/{channel}/messages.
type publishRequest struct {
	Data  json.RawMessage `json:"data"`
	Event string          `json:"event"`
}

// publishResponse tells where a message was stored.
type publishResponse struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
}

// publish is POST /v1/channels/{channel}/messages: store one message. It answers 201 with the
// message's id; a retry with the same Idempotency-Key by the same credential (see
// auth.Claims.IdempotencyKey) answers 201 with the first id again and the header
// Idempotent-Replayed: true, and stores nothing. A credential over its publish rate gets the
// 429 of problem.RateLimited, and nothing is stored.
func (s *server) publish(c echo.Context) (err error) {
	defer s.countPublishError(&err)
	claims, err := s.authenticate(c)
	if err != nil {
		return err
	}
	channel, err := channelParam(c)
	if err != nil {
		return err
	}
	if !claims.CanPublish(channel) {
		return forbidden("publishing", channel)
	}
	key, err := idempotencyKey(c.Request().Header)
	if err != nil {
		return err
	}
	body, err := s.readBody(c, int64(s.maxData+envelopeRoom))
	if err != nil {
		return err
	}
	defer body.release()
	msg, usual, err := publishMessage(body)
	if err != nil {
		return err
	}
	if p := s.checkMessage(msg.Data, msg.Event); p != nil {
		return p
	}
	// The rate is checked last of all checks, so that only a publish that would be stored
	// spends a token, and before the wait for the fan-out, so that a refused one waits for nothing.
	if p := s.limiter.Take(claims.Identity(), 1); p != nil {
		return p
	}
	ctx := c.Request().Context()
	if err := s.awaitFanOut(ctx); err != nil {
		return err
	}
	// msg.Data may point into the pooled body buffer: brokers do not keep Data after Publish
	// returns (see broker.Broker).
	res, err := s.broker.Publish(ctx, broker.PublishRequest{
		Channel: channel, Event: msg.Event, Data: msg.Data, IdempotencyKey: claims.IdempotencyKey(key),
	})
	if err != nil {
		return s.brokerProblem(ctx, err)
	}
	if !res.Duplicate {
		s.metrics.Published.Inc()
	}
	// A body of the usual form says the next publish on this connection likely has the fast
	// path's shape too; hand the connection to the epoll core for those.
	if usual && s.adoptConnection(c, res.ID, channel, res.Duplicate) {
		return nil
	}
	if res.Duplicate {
		c.Response().Header().Set(headerReplayed, "true")
	}
	// The answer is built in the body's buffer, which the message no longer needs.
	out := appendPublishResponse(body.bytes()[:0], res.ID, channel)
	w := c.Response()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, err = w.Write(out)
	return err
}

// publishMessage reads the message out of a publish body: by parsePublish when the body has
// the usual form (usual is then true), else by encoding/json (with its errors for bad input).
// Data may be a slice of the body's buffer.
func publishMessage(body requestBody) (msg publishRequest, usual bool, err error) {
	if body.err == nil {
		if data, event, ok := parsePublish(body.bytes()); ok {
			return publishRequest{Data: data, Event: event}, true, nil
		}
	}
	err = body.decode(&msg)
	return msg, false, err
}

// appendPublishResponse appends the JSON of publishResponse{id, channel} to b, byte for byte
// what writeJSON writes for it (newline included), without reflection.
func appendPublishResponse(b []byte, id broker.ID, channel string) []byte {
	b = append(b, `{"id":"`...)
	b = id.AppendTo(b)
	b = append(b, `","channel":`...)
	b = appendJSONString(b, channel)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string, as an encoder without HTML escaping writes it.
// Channel names never need escapes; anything that might is left to encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s) // a string always encodes
			return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// countPublishError counts a failed publish request in herald_publish_errors_total. An error
// writing the answer of a successful publish (the client left) is not a failed publish.
func (s *server) countPublishError(err *error) {
	if *err == nil {
		// The common case returns before the errors.As targets below, which escape to the
		// heap, are allocated.
		return
	}
	var (
		p  *problem.Details
		mb *http.MaxBytesError
	)
	switch {
	case errors.As(*err, &p):
		s.metrics.PublishErrors.WithLabelValues(publishErrorReason(p)).Inc()
	case errors.As(*err, &mb):
		s.metrics.PublishErrors.WithLabelValues("too_large").Inc()
	}
}

// channelParam reads and checks the {channel} path segment. A channel name holding "/" is sent
// percent-encoded (%2F); Echo hands the segment over still encoded in that case.
func channelParam(c echo.Context) (string, error) {
	channel, err := url.PathUnescape(c.Param("channel"))
	if err != nil || !broker.ValidChannel(channel) {
		return "", invalidChannel()
	}
	return channel, nil
}

// maxIdempotencyKey is the longest Idempotency-Key accepted.
const maxIdempotencyKey = 255

// idempotencyKey reads the optional Idempotency-Key header: 1-255 printable ASCII characters.
func idempotencyKey(h http.Header) (string, error) {
	values := h.Values("Idempotency-Key")
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) > 1:
		return "", badRequest(typeInvalidIdempotency, "send one Idempotency-Key header")
	}
	if err := checkIdempotencyKey(values[0]); err != nil {
		return "", err
	}
	return values[0], nil
}

// checkIdempotencyKey checks one Idempotency-Key value: 1-255 printable ASCII characters.
func checkIdempotencyKey(key string) error {
	if len(key) == 0 || len(key) > maxIdempotencyKey {
		return badRequest(typeInvalidIdempotency, "an Idempotency-Key is 1-255 printable ASCII characters")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return badRequest(typeInvalidIdempotency, "an Idempotency-Key is 1-255 printable ASCII characters")
		}
	}
	return nil
}

// writeJSON answers v as JSON, without escaping HTML characters (<, >, &) in strings.
func writeJSON(c echo.Context, status int, v any) error {
	w := c.Response()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
