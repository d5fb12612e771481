package main

import "bytes"

// eventHandler receives complete SSE events. id is nil when the event has no id field, data nil
// when it has no data field; both are valid only during the call. Comments are skipped.
type eventHandler interface {
	onEvent(id, event, data []byte) error
}

// sseDecoder splits an event stream into events. Between reads it keeps only the bytes of an
// incomplete event. herald ends lines with "\n" and sends one data line per event; a second data
// line replaces the first here.
type sseDecoder struct {
	tail []byte
}

var eventEnd = []byte("\n\n")

// feed decodes p, calling h for each complete event.
func (d *sseDecoder) feed(p []byte, h eventHandler) error {
	if len(d.tail) > 0 {
		end := -1
		if d.tail[len(d.tail)-1] == '\n' && len(p) > 0 && p[0] == '\n' {
			end = 0
		} else if i := bytes.Index(p, eventEnd); i >= 0 {
			end = i + 1
		}
		if end < 0 {
			d.tail = append(d.tail, p...)
			return nil
		}
		d.tail = append(d.tail, p[:end+1]...)
		p = p[end+1:]
		err := dispatchEvent(d.tail, h)
		if cap(d.tail) > 512 {
			d.tail = nil
		} else {
			d.tail = d.tail[:0]
		}
		if err != nil {
			return err
		}
	}
	for len(p) > 0 {
		i := bytes.Index(p, eventEnd)
		if i < 0 {
			d.tail = append(d.tail[:0], p...)
			return nil
		}
		if err := dispatchEvent(p[:i+2], h); err != nil {
			return err
		}
		p = p[i+2:]
	}
	return nil
}

// dispatchEvent parses one event block (ending with a blank line) and hands it to h.
func dispatchEvent(block []byte, h eventHandler) error {
	var id, event, data []byte
	for len(block) > 0 {
		line := block
		if i := bytes.IndexByte(block, '\n'); i >= 0 {
			line, block = block[:i], block[i+1:]
		} else {
			block = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "id":
			id = value
			if id == nil {
				id = []byte{}
			}
		case "event":
			event = value
		case "data":
			data = value
			if data == nil {
				data = []byte{}
			}
		}
	}
	if id == nil && data == nil {
		return nil // retry fields and comments only
	}
	return h.onEvent(id, event, data)
}
