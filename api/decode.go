package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// decodeBody reads a JSON request body of at most limit bytes into v. It answers 415 for a
// Content-Type other than application/json, 413 past the limit (enforced while reading), and 400
// for malformed JSON (invalid-json) or JSON of the wrong shape: unknown fields, wrong types
// (invalid-request).
func (s *server) decodeBody(c echo.Context, limit int64, v any) error {
	body, err := s.readBody(c, limit)
	if err != nil {
		return err
	}
	defer body.release()
	return body.decode(v)
}

// bodyProblem maps an error from reading or decoding a JSON body.
func bodyProblem(err error) error {
	var (
		mb  *http.MaxBytesError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mb):
		return err // handleError answers 413
	case errors.As(err, &ute):
		where := ute.Field
		if where == "" {
			where = "the body"
		}
		return badRequest(typeInvalidRequest, fmt.Sprintf("%s must be a JSON %s, not %s", where, jsonKind(ute.Type.Kind()), ute.Value))
	case err != nil && strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest(typeInvalidRequest, strings.TrimPrefix(err.Error(), "json: "))
	case errors.Is(err, io.EOF):
		return badRequest(typeInvalidJSON, "the body is empty")
	}
	return badRequest(typeInvalidJSON, "the body is not valid JSON")
}

// jsonKind names a Go kind as the JSON type a client should send.
func jsonKind(kind reflect.Kind) string {
	switch kind {
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Bool:
		return "boolean"
	}
	return "value"
}

// checkMessage validates a message's data (present, within the size limit, UTF-8; its JSON
// syntax was checked when the body was parsed) and event name.
func (s *server) checkMessage(data json.RawMessage, event string) *problem.Details {
	switch {
	case len(data) == 0:
		return badRequest(typeMissingData, `"data" is required (any JSON value)`)
	case len(data) > s.maxData:
		return problem.New(http.StatusRequestEntityTooLarge, typeMessageTooLarge,
			fmt.Sprintf("the message data is %d bytes; the limit is %d", len(data), s.maxData))
	case !broker.DataIsUTF8(data):
		// The parsers let any bytes through inside JSON strings; see broker.DataIsUTF8.
		return badRequest(typeInvalidData, "data is not valid UTF-8")
	case event != "" && !broker.ValidEvent(event):
		return badRequest(typeInvalidEvent, "an event name is 1-64 characters of A-Z a-z 0-9 _ . : -")
	}
	return nil
}

// invalidChannel is the 400 for a malformed channel name.
func invalidChannel() *problem.Details {
	return badRequest(typeInvalidChannel, "a channel name is 1-255 characters of A-Z a-z 0-9 _ . : @ / = + -")
}
