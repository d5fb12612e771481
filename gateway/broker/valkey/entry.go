package valkey

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/valkey-io/valkey-go"

	"github.com/herald-gateway/herald/gateway/broker"
)

// entry is one message as stored or announced, with the id of the entry before it.
type entry struct {
	id, prev broker.ID
	event    string
	data     string
}

func (e entry) message(channel string) broker.Message {
	return broker.Message{Channel: channel, ID: e.id, Event: e.event, Data: deliveredData(e.data)}
}

// deliveredData is a stored message's data as the broker hands it on. A stream may hold data
// that is not UTF-8 inside its JSON strings, stored before publishes were checked for it (see
// broker.DataIsUTF8); each run of such bytes is replaced by one U+FFFD. The JSON stays valid
// (bytes of 0x80 and above can only be inside its strings), and a WebSocket client that resumes
// over the message is not disconnected by it on every retry.
func deliveredData(s string) json.RawMessage {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return json.RawMessage(s)
}

var errBadEntry = errors.New("malformed stream entry")

// decodeLive reads a shard pub/sub payload written by publish.lua: "<id>\n<prev>\n<event>\n<data>".
// Ids and event names never contain a newline; the data may.
func decodeLive(payload string) (entry, error) {
	idText, rest, ok1 := strings.Cut(payload, "\n")
	prevText, rest, ok2 := strings.Cut(rest, "\n")
	event, data, ok3 := strings.Cut(rest, "\n")
	if !ok1 || !ok2 || !ok3 {
		return entry{}, errBadEntry
	}
	id, err1 := broker.ParseID(idText)
	prev, err2 := broker.ParseID(prevText)
	if err1 != nil || err2 != nil {
		return entry{}, errBadEntry
	}
	return entry{id: id, prev: prev, event: event, data: data}, nil
}

// decodeEntries reads an XRANGE/XREVRANGE reply: [[id, [field, value, ...]], ...].
func decodeEntries(msgs []valkey.ValkeyMessage) ([]entry, error) {
	out := make([]entry, 0, len(msgs))
	for i := range msgs {
		e, err := decodeEntry(&msgs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func decodeEntry(m *valkey.ValkeyMessage) (entry, error) {
	pair, err := m.ToArray()
	if err != nil || len(pair) != 2 {
		return entry{}, errBadEntry
	}
	idText, err := pair[0].ToString()
	if err != nil {
		return entry{}, errBadEntry
	}
	var e entry
	if e.id, err = broker.ParseID(idText); err != nil {
		return entry{}, errBadEntry
	}
	fields, err := pair[1].ToArray()
	if err != nil || len(fields)%2 != 0 {
		return entry{}, errBadEntry
	}
	for i := 0; i < len(fields); i += 2 {
		name, err1 := fields[i].ToString()
		value, err2 := fields[i+1].ToString()
		if err1 != nil || err2 != nil {
			return entry{}, errBadEntry
		}
		switch name {
		case "p":
			if e.prev, err = broker.ParseID(value); err != nil {
				return entry{}, errBadEntry
			}
		case "e":
			e.event = value
		case "d":
			e.data = value
		}
	}
	return e, nil
}
