package broker

import (
	"errors"
	"strconv"
	"strings"
)

// ID is a message's position in its channel's log: the Unix time in milliseconds when it was
// stored and a sequence number that orders messages stored in the same millisecond. The Valkey
// broker's stream entry ids have exactly this shape, and so do the memory broker's.
//
// The zero ID ("0-0", also written "0") is the position before the first message of any channel.
type ID struct {
	Ms  uint64
	Seq uint64
}

// MaxID is the largest id ("18446744073709551615-18446744073709551615"). ParseID accepts it like
// any other: as a position it lies past the end of every log (no id follows it), so a resume from
// it is an empty page that cannot be proven complete, as from any id newer than the log's newest.
var MaxID = ID{Ms: ^uint64(0), Seq: ^uint64(0)}

// ErrBadID reports text that is not an id.
var ErrBadID = errors.New("malformed message id")

// ParseID reads "<ms>-<seq>" or a bare "<ms>" (sequence 0); "0" is the zero ID.
func ParseID(s string) (ID, error) {
	if s == "" || len(s) > 41 {
		return ID{}, ErrBadID
	}
	msText, seqText, hasSeq := strings.Cut(s, "-")
	ms, err := parseDecimal(msText)
	if err != nil {
		return ID{}, ErrBadID
	}
	var seq uint64
	if hasSeq {
		if seq, err = parseDecimal(seqText); err != nil {
			return ID{}, ErrBadID
		}
	}
	return ID{Ms: ms, Seq: seq}, nil
}

// parseDecimal accepts only plain decimal digits: no sign, no spaces, no "0x".
func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, ErrBadID
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrBadID
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// String formats the id as "<ms>-<seq>".
func (id ID) String() string {
	return string(id.AppendTo(make([]byte, 0, 24)))
}

// AppendTo appends the id's text to b, for encoders that avoid an allocation per id.
func (id ID) AppendTo(b []byte) []byte {
	b = strconv.AppendUint(b, id.Ms, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10)
}

// IsZero reports whether id is the position before every message.
func (id ID) IsZero() bool { return id.Ms == 0 && id.Seq == 0 }

// Compare returns -1, 0 or +1 as id is before, equal to or after other.
func (id ID) Compare(other ID) int {
	switch {
	case id.Ms < other.Ms:
		return -1
	case id.Ms > other.Ms:
		return 1
	case id.Seq < other.Seq:
		return -1
	case id.Seq > other.Seq:
		return 1
	}
	return 0
}

// Less reports whether id comes before other.
func (id ID) Less(other ID) bool { return id.Compare(other) < 0 }

// Next returns the smallest id after id. MaxID has none: its Next wraps around to the zero ID.
func (id ID) Next() ID {
	if id.Seq == ^uint64(0) {
		return ID{Ms: id.Ms + 1}
	}
	return ID{Ms: id.Ms, Seq: id.Seq + 1}
}
