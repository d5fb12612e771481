package broker

import (
	"encoding/json"
	"unicode/utf8"
)

// MaxChannelLen is the longest channel name in bytes.
const MaxChannelLen = 255

// MaxEventLen is the longest event name in bytes.
const MaxEventLen = 64

// ValidChannel reports whether name is a channel name: 1-255 bytes of [A-Za-z0-9_.:@/=+-].
// Such names need no escaping in JSON, URLs' path segments, SSE fields or Valkey hash tags, which
// the encoders rely on.
func ValidChannel(name string) bool {
	if len(name) == 0 || len(name) > MaxChannelLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !channelByte[name[i]] {
			return false
		}
	}
	return true
}

// ValidEvent reports whether name is an event name: 1-64 bytes of [A-Za-z0-9_.:-]. The empty
// string (no event name) is checked by callers; it is allowed on publish.
func ValidEvent(name string) bool {
	if len(name) == 0 || len(name) > MaxEventLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isAlnum(c) || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// ValidData reports whether data can be a message's data: one JSON value (RFC 8259) in valid
// UTF-8. Brokers check it on every publish.
func ValidData(data []byte) bool { return DataIsUTF8(data) && json.Valid(data) }

// DataIsUTF8 reports whether data is valid UTF-8: the half of ValidData that JSON parsers leave
// out (encoding/json, and the API's fast path, take bytes of 0x80 and above inside strings as they
// are). Data is delivered verbatim inside WebSocket text frames, and a client must fail a
// connection whose text frame is not UTF-8 (RFC 6455, section 8.1): one such message would close
// every WebSocket subscriber that receives or resumes over it. Layers that have parsed the data
// already check this instead of parsing it again.
func DataIsUTF8(data []byte) bool { return utf8.Valid(data) }

var channelByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = isAlnum(byte(c))
	}
	for _, c := range []byte("_.:@/=+-") {
		t[c] = true
	}
	return t
}()

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
