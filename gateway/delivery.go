package gateway

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/wsframe"
)

// delivery is one message encoded once per wire shape. The dispatcher builds it once and the
// same read-only slices are written to every subscriber; nothing in it may change afterwards.
type delivery struct {
	msg broker.Message
	// ws is the complete WebSocket text frame {"type":"message",...}.
	ws []byte
	// sse is the SSE event for single-channel streams: "id: <id>\n" followed by sseBody.
	sse []byte
	// sseBody is sse without its id line, for multi-channel streams whose id is a cursor.
	sseBody []byte
}

// wireSize is about what d costs a subscription of kind to hold: its encoded size for that
// transport (a multi-channel SSE stream adds its cursor to the body).
func (d *delivery) wireSize(kind sinkKind) int {
	if kind == kindWS {
		return len(d.ws)
	}
	return len(d.sse)
}

// newDelivery encodes msg for the shapes asked for.
func newDelivery(msg broker.Message, forWS, forSSE bool) *delivery {
	d := &delivery{msg: msg}
	if forWS {
		d.ws = encodeWSMessage(msg)
	}
	if forSSE {
		d.sse, d.sseBody = encodeSSEMessage(msg)
	}
	return d
}

// encodeWSMessage builds the WebSocket frame of a message.
func encodeWSMessage(msg broker.Message) []byte {
	return appendWSMessage(nil, msg)
}

// appendWSMessage appends the WebSocket frame of a message to dst. Channel names, ids and event
// names are restricted to characters that need no JSON escaping; data is valid JSON already.
func appendWSMessage(dst []byte, msg broker.Message) []byte {
	var idBuf [41]byte
	id := msg.ID.AppendTo(idBuf[:0])
	payloadLen := len(`{"type":"message","channel":"","id":"","data":}`) + len(msg.Channel) + len(id) + len(msg.Data)
	if msg.Event != "" {
		payloadLen += len(`,"event":""`) + len(msg.Event)
	}
	dst = slices.Grow(dst, wsframe.HeaderLen(payloadLen)+payloadLen)
	b := wsframe.AppendHeader(dst, ws.OpText, payloadLen)
	b = append(b, `{"type":"message","channel":"`...)
	b = append(b, msg.Channel...)
	b = append(b, `","id":"`...)
	b = append(b, id...)
	b = append(b, '"')
	if msg.Event != "" {
		b = append(b, `,"event":"`...)
		b = append(b, msg.Event...)
		b = append(b, '"')
	}
	b = append(b, `,"data":`...)
	b = append(b, msg.Data...)
	return append(b, '}')
}

// prependHeader turns b, whose first MaxHeaderLen bytes are reserved, into a frame by writing
// the header right before the payload and returning the slice that starts with it.
func prependHeader(b []byte, op ws.OpCode) []byte {
	payload := len(b) - wsframe.MaxHeaderLen
	start := wsframe.MaxHeaderLen - wsframe.HeaderLen(payload)
	wsframe.AppendHeader(b[start:start], op, payload)
	return b[start:]
}

// encodeSSEMessage builds the SSE event of a message and returns it with and without its id line.
func encodeSSEMessage(msg broker.Message) (event, body []byte) {
	b := make([]byte, 0, len("id: \n")+41+sseBodyLen(msg))
	b = append(b, "id: "...)
	b = msg.ID.AppendTo(b)
	b = append(b, '\n')
	bodyStart := len(b)
	b = appendSSEBody(b, msg)
	return b, b[bodyStart:]
}

// sseBodyLen is about the length of a message's SSE event without its id line (its capacity).
func sseBodyLen(msg broker.Message) int {
	return len("event: \n") + len(msg.Event) + len(`data: {"channel":"","id":"","data":}`+"\n\n") +
		len(msg.Channel) + 41 + len(msg.Data)
}

// appendSSEBody appends a message's SSE event without its id line: the event name and the data.
func appendSSEBody(b []byte, msg broker.Message) []byte {
	data := msg.Data
	if bytes.ContainsAny(data, "\r\n") {
		// A line break would end the data field early; JSON allows none outside strings, so
		// compacting removes them all.
		var buf bytes.Buffer
		if json.Compact(&buf, data) == nil {
			data = buf.Bytes()
		}
	}
	if msg.Event != "" {
		b = append(b, "event: "...)
		b = append(b, msg.Event...)
		b = append(b, '\n')
	}
	b = append(b, `data: {"channel":"`...)
	b = append(b, msg.Channel...)
	b = append(b, `","id":"`...)
	b = msg.ID.AppendTo(b)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return append(b, "}\n\n"...)
}
