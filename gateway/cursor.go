package gateway

import (
	"errors"
	"strings"

	"github.com/herald-gateway/herald/gateway/broker"
)

// A cursor is the resume position of a stream that may carry several channels (SSE's
// Last-Event-ID, long-poll's since): one message id per channel, in the order the channels are
// named in the request, joined by commas. With one channel it is just that channel's message id,
// so single-channel clients see plain ids. Clients echo it back unchanged; EventSource reconnects
// with the same URL, so the order is stable. A client that adds a channel to a resuming stream
// leaves its element empty ("5-1,,7-0"): that channel starts live, the others resume. herald
// itself always writes an id for every channel.

// maxCursorLen bounds what is parsed: 128 channels of 41-byte ids and commas.
const maxCursorLen = 128 * 42

var errBadCursor = errors.New("malformed cursor")

// parseCursor reads a cursor for n channels. A nil position means live only.
func parseCursor(s string, n int) ([]*broker.ID, error) {
	if s == "" || len(s) > maxCursorLen || strings.Count(s, ",") != n-1 {
		return nil, errBadCursor
	}
	out := make([]*broker.ID, 0, n)
	for part := range strings.SplitSeq(s, ",") {
		if part == "" {
			out = append(out, nil)
			continue
		}
		id, err := broker.ParseID(part)
		if err != nil {
			return nil, errBadCursor
		}
		out = append(out, &id)
	}
	return out, nil
}

// appendCursor appends the cursor of the given subscriptions' positions.
func appendCursor(b []byte, subs []*subscription) []byte {
	for i, sub := range subs {
		if i > 0 {
			b = append(b, ',')
		}
		b = sub.pos.AppendTo(b)
	}
	return b
}

// requestChannels reads the channel query parameters: at least one, at most max, each valid,
// duplicates dropped (keeping the first).
func requestChannels(values []string, maxChannels int) ([]string, *requestError) {
	if len(values) == 0 {
		return nil, badRequest("missing-channel", "name at least one channel: ?channel=orders:42")
	}
	if len(values) > maxChannels {
		return nil, badRequest("too-many-channels", "at most "+itoa(maxChannels)+" channels per connection")
	}
	seen := make(map[string]bool, len(values))
	out := values[:0:0]
	for _, ch := range values {
		if !broker.ValidChannel(ch) {
			return nil, badRequest("invalid-channel", "invalid channel name "+quote(ch)+": use 1-255 of A-Z a-z 0-9 _ . : @ / = + -")
		}
		if !seen[ch] {
			seen[ch] = true
			out = append(out, ch)
		}
	}
	return out, nil
}
