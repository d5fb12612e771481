package gateway

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// clientFrame is any frame a WebSocket client sends (protocol v1). Fields a type does not use
// are ignored.
type clientFrame struct {
	Type    string          `json:"type"`
	ID      json.Number     `json:"id"`
	Token   string          `json:"token"`
	Channel string          `json:"channel"`
	Since   *string         `json:"since"`
	Event   string          `json:"event"`
	Data    json.RawMessage `json:"data"`
	// IdempotencyKey makes a client publish safe to retry, as the HTTP header does.
	IdempotencyKey string `json:"idempotency_key"`
}

// parseClientFrame decodes a text frame. It rejects anything but one JSON object and ids that
// are not integers (the id is echoed back verbatim, so it must be safe to embed).
func parseClientFrame(p []byte) (clientFrame, error) {
	var f clientFrame
	if err := json.Unmarshal(p, &f); err != nil {
		return f, err
	}
	if f.ID != "" {
		if _, err := strconv.ParseInt(string(f.ID), 10, 64); err != nil {
			return f, errBadFrameID
		}
	}
	return f, nil
}

type frameIDError struct{}

func (frameIDError) Error() string { return `"id" must be an integer` }

var errBadFrameID error = frameIDError{}

// serverFrame builds server -> client frames. Strings it embeds come either from validated
// sources (channel names, ids, codes) or through appendJSONString.
type serverFrame struct{ b []byte }

func newServerFrame(typ string) *serverFrame {
	f := &serverFrame{b: make([]byte, 10, 128)} // room for the frame header
	f.b = append(f.b, `{"type":"`...)
	f.b = append(f.b, typ...)
	f.b = append(f.b, '"')
	return f
}

func (f *serverFrame) id(id json.Number) *serverFrame {
	if id != "" {
		f.b = append(f.b, `,"id":`...)
		f.b = append(f.b, id...)
	}
	return f
}

func (f *serverFrame) str(key, value string) *serverFrame {
	f.b = append(f.b, ',', '"')
	f.b = append(f.b, key...)
	f.b = append(f.b, '"', ':')
	f.b = appendJSONString(f.b, value)
	return f
}

func (f *serverFrame) num(key string, v int64) *serverFrame {
	f.b = append(f.b, ',', '"')
	f.b = append(f.b, key...)
	f.b = append(f.b, '"', ':')
	f.b = strconv.AppendInt(f.b, v, 10)
	return f
}

func (f *serverFrame) boolean(key string, v bool) *serverFrame {
	f.b = append(f.b, ',', '"')
	f.b = append(f.b, key...)
	f.b = append(f.b, '"', ':')
	f.b = strconv.AppendBool(f.b, v)
	return f
}

func (f *serverFrame) msgID(key string, id broker.ID) *serverFrame {
	f.b = append(f.b, ',', '"')
	f.b = append(f.b, key...)
	f.b = append(f.b, `":"`...)
	f.b = id.AppendTo(f.b)
	f.b = append(f.b, '"')
	return f
}

// bytes closes the object and returns the complete WebSocket frame.
func (f *serverFrame) bytes() []byte {
	f.b = append(f.b, '}')
	return prependHeader(f.b, ws.OpText)
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// errorFrame is {"type":"error","id":N,"code":"...","message":"..."}.
func errorFrame(id json.Number, code, message string) []byte {
	return newServerFrame("error").id(id).str("code", code).str("message", message).bytes()
}

// rateLimitedFrame is the error frame of a publish over its credential's rate: code
// "rate-limited", and retry_after_ms, the milliseconds until the credential may publish again.
func rateLimitedFrame(id json.Number, retry time.Duration) []byte {
	ms := max(1, int64((retry+time.Millisecond-1)/time.Millisecond))
	return newServerFrame("error").id(id).str("code", problem.TypeRateLimited).
		str("message", problem.DetailRateLimited).num("retry_after_ms", ms).bytes()
}
