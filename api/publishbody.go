package api

import "bytes"

// parsePublish is the fast path for the body of POST /v1/channels/{channel}/messages in its
// usual form: one JSON object with the member "data" (any JSON value) and optionally "event" (a
// string of printable ASCII without escapes), each spelled exactly so and present once, with
// nothing but white space around the object. data is the raw text of the value, a slice of b.
//
// For anything else it returns ok false, and the caller decodes the body with encoding/json,
// which answers the established errors. So the fast path must never accept what encoding/json
// would refuse, and must give what encoding/json would give for what it accepts: the value is
// checked against the JSON grammar in full (RFC 8259; like encoding/json, bytes of 0x80 and
// above inside strings are taken as they are). FuzzParsePublish holds it to that.
func parsePublish(b []byte) (data []byte, event string, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, "", false
	}
	i = skipSpace(b, i+1)
	var haveData, haveEvent bool
	for {
		switch {
		case bytes.HasPrefix(b[i:], []byte(`"data"`)) && !haveData:
			i, haveData = i+len(`"data"`), true
			if i, ok = skipColon(b, i); !ok {
				return nil, "", false
			}
			end, ok := skipValue(b, i, 0)
			if !ok {
				return nil, "", false
			}
			data, i = b[i:end], end
		case bytes.HasPrefix(b[i:], []byte(`"event"`)) && !haveEvent:
			i, haveEvent = i+len(`"event"`), true
			if i, ok = skipColon(b, i); !ok {
				return nil, "", false
			}
			if event, i, ok = plainString(b, i); !ok {
				return nil, "", false
			}
		default: // another member, a repeated one, an escaped name, or no member at all
			return nil, "", false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, "", false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return nil, "", false
		}
		i = skipSpace(b, i+1)
	}
	if !haveData || skipSpace(b, i+1) != len(b) {
		return nil, "", false
	}
	return data, event, true
}

// maxFastDepth bounds the nesting of arrays and objects the fast path checks; deeper data goes
// to encoding/json, which has its own limit.
const maxFastDepth = 64

// skipSpace returns the index of the first byte at or after i that is not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipColon skips white space, a colon and white space from i.
func skipColon(b []byte, i int) (int, bool) {
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return 0, false
	}
	return skipSpace(b, i+1), true
}

// plainString reads the string at i when it holds only printable ASCII and no escapes (what
// encoding/json decodes to the same bytes), and returns it and the index after it.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}

// skipValue checks the JSON value that starts at i (no white space before it) and returns the
// index just after it. depth is the number of arrays and objects around it.
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '{' || c == '[':
		if depth >= maxFastDepth {
			return 0, false
		}
		return skipContainer(b, i, depth)
	case c == '"':
		return skipString(b, i)
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	case c == '-' || ('0' <= c && c <= '9'):
		return skipNumber(b, i)
	}
	return 0, false
}

// skipContainer checks the object or array that starts at i.
func skipContainer(b []byte, i, depth int) (int, bool) {
	closer, object := byte(']'), b[i] == '{'
	if object {
		closer = '}'
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1, true
	}
	for {
		var ok bool
		if object {
			if i >= len(b) || b[i] != '"' {
				return 0, false
			}
			if i, ok = skipString(b, i); !ok {
				return 0, false
			}
			if i, ok = skipColon(b, i); !ok {
				return 0, false
			}
		}
		if i, ok = skipValue(b, i, depth+1); !ok {
			return 0, false
		}
		i = skipSpace(b, i)
		switch {
		case i >= len(b):
			return 0, false
		case b[i] == closer:
			return i + 1, true
		case b[i] != ',':
			return 0, false
		}
		i = skipSpace(b, i+1)
	}
}

// skipString checks the string that starts at i (at its opening quote).
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			j++
			if j >= len(b) {
				return 0, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					return 0, false
				}
				for _, h := range b[j+1 : j+5] {
					if !isHex(h) {
						return 0, false
					}
				}
				j += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// skipLiteral checks that the literal lit starts at i.
func skipLiteral(b []byte, i int, lit string) (int, bool) {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return 0, false
	}
	return i + len(lit), true
}

// skipNumber checks the number that starts at i: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return 0, false
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		if i+1 >= len(b) || !isDigit(b[i+1]) {
			return 0, false
		}
		i = skipDigits(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return 0, false
		}
		i = skipDigits(b, i)
	}
	return i, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func skipDigits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}
