package valkey

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/valkey-io/valkey-go"

	"github.com/herald-gateway/herald/gateway/broker"
)

// History reads a channel's log with one read-only script call (history.lua) that returns the
// page, the last id and the first retained entry's id and predecessor atomically; Complete is
// decided from those as the package doc's "Continuity" describes.
func (b *Broker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryPage, error) {
	if err := b.checkOpen(); err != nil {
		return broker.HistoryPage{}, err
	}
	if !broker.ValidChannel(channel) {
		return broker.HistoryPage{}, fmt.Errorf("valkey broker: history: %w: %q", errBadChannel, channel)
	}
	opCtx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	page, err := b.history(opCtx, channel, q)
	if err != nil {
		return broker.HistoryPage{}, b.wrap(ctx, "history", err)
	}
	return page, nil
}

// logState is what history.lua says about a stream besides the page.
type logState struct {
	exists    bool
	first     broker.ID
	firstPrev broker.ID
	hasPrev   bool // false for an entry written without field p (not by this package)
	last      broker.ID
}

// gapAfter says what, if anything, is missing from the log after since (see the package doc,
// "Continuity"). A position that is not on the stream's chain of ids (lostLog) needs the epoch
// to tell why, which the caller reads.
func (s logState) gapAfter(since broker.ID) (gap broker.GapReason, lostLog bool) {
	switch {
	case !s.exists:
		if since.IsZero() {
			return broker.GapNone, false
		}
		return broker.GapExpired, true
	case s.hasPrev && s.firstPrev == since:
		return broker.GapNone, false // since is exactly where retention begins
	case !since.Less(s.first) && !s.last.Less(since):
		return broker.GapNone, false // since is inside the retained log
	case since.IsZero() || !s.hasPrev || since.Less(s.firstPrev):
		return broker.GapTrimmed, false // messages after since were trimmed away
	case s.last.Less(since):
		return broker.GapBrokerReset, false // not a position of this stream's ids
	}
	return broker.GapExpired, true // between the newest trimmed id and the first: another log's
}

func (b *Broker) history(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryPage, error) {
	limit := max(q.Limit, 0)
	mode := "-"
	switch {
	case q.Newest && q.StartOnly:
		mode = "s"
	case limit > 0 && q.Newest:
		mode = "r"
	case limit > 0:
		mode = "f"
	}
	start := "-"
	switch {
	case q.Since == broker.MaxID:
		// No entry can follow it, and Valkey refuses the exclusive bound "(" of the largest
		// id (it has no successor): read only the log's state.
		mode = "-"
	case !q.Since.IsZero():
		start = "(" + q.Since.String()
	}
	res := historyScript.exec(ctx, b.client, call{
		keys: []string{b.streamKey(channel)},
		args: []string{mode, start, strconv.Itoa(limit + 1), strconv.Itoa(max(q.MaxBytes, 0))},
	})
	state, raw, note, err := decodeHistory(res)
	if err != nil {
		return broker.HistoryPage{}, err
	}
	entries, err := decodeEntries(raw)
	if err != nil {
		return broker.HistoryPage{}, err
	}
	page := broker.HistoryPage{LastID: state.last}
	gap, lostLog := state.gapAfter(q.Since)
	if lostLog || !state.exists {
		// An empty channel's position is the epoch, and a client may resume from it: complete
		// while nothing was trimmed since (and the epoch is still the same: no data was lost).
		// A position from a log that is gone is from before the epoch when Valkey lost its
		// data since (the epoch went with it), and from an expired log otherwise.
		epoch, err := b.epoch(ctx)
		if err != nil {
			return broker.HistoryPage{}, err
		}
		if !state.exists {
			page.LastID = epoch
		}
		switch {
		case q.Since == epoch && (!state.exists || (state.hasPrev && state.firstPrev.IsZero())):
			gap = broker.GapNone
		case q.Since == epoch:
			gap = broker.GapTrimmed
		case lostLog && q.Since.Less(epoch):
			gap = broker.GapBrokerReset
		}
	}
	page.Gap = gap
	if q.Newest && q.StartOnly {
		page.Start = q.Since
		if note != "" {
			if page.Start, err = broker.ParseID(note); err != nil {
				return broker.HistoryPage{}, errBadHistoryReply
			}
			if page.Gap == broker.GapNone {
				page.Gap = broker.GapReplayCap
			}
		}
		page.Complete = page.Gap == broker.GapNone
		return page, nil
	}
	if note == "cut" {
		page.More = true
	}
	if len(entries) > limit {
		entries = entries[:limit]
		if q.Newest {
			if page.Gap == broker.GapNone {
				page.Gap = broker.GapReplayCap // the older ones were skipped
			}
		} else {
			page.More = true
		}
	}
	page.Complete = page.Gap == broker.GapNone
	if q.Newest {
		slices.Reverse(entries)
	}
	if len(entries) > 0 {
		page.Messages = make([]broker.Message, len(entries))
		for i, e := range entries {
			page.Messages[i] = e.message(channel)
		}
	}
	return page, nil
}

var errBadHistoryReply = errors.New("malformed history script reply")

// epoch returns the broker's epoch (see epoch.lua). It is read only on the rare paths that need
// it (an empty channel, a resume from an empty channel's position), so it costs no round trip
// on the common ones.
func (b *Broker) epoch(ctx context.Context) (broker.ID, error) {
	text, err := epochScript.exec(ctx, b.client, call{keys: []string{b.epochKey()}}).ToString()
	if err != nil {
		return broker.ID{}, err
	}
	id, err := broker.ParseID(text)
	if err != nil {
		return broker.ID{}, errBadHistoryReply
	}
	return id, nil
}

// decodeHistory reads history.lua's reply: {} or {first id, first prev, last id, page, note}.
func decodeHistory(res valkey.ValkeyResult) (logState, []valkey.ValkeyMessage, string, error) {
	items, err := res.ToArray()
	if err != nil {
		return logState{}, nil, "", err
	}
	if len(items) == 0 {
		return logState{}, nil, "", nil
	}
	if len(items) != 5 {
		return logState{}, nil, "", errBadHistoryReply
	}
	note, err := items[4].ToString()
	if err != nil {
		return logState{}, nil, "", errBadHistoryReply
	}
	var texts [3]string
	for i := range texts {
		if texts[i], err = items[i].ToString(); err != nil {
			return logState{}, nil, "", errBadHistoryReply
		}
	}
	s := logState{exists: true}
	var err1, err2, err3 error
	s.first, err1 = broker.ParseID(texts[0])
	if texts[1] != "" {
		s.firstPrev, err2 = broker.ParseID(texts[1])
		s.hasPrev = true
	}
	s.last, err3 = broker.ParseID(texts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return logState{}, nil, "", errBadHistoryReply
	}
	page, err := items[3].ToArray()
	if err != nil {
		return logState{}, nil, "", errBadHistoryReply
	}
	return s, page, note, nil
}
