package broker

// GapReason says why a broker cannot prove that a reader missed nothing: why a HistoryPage is
// not Complete, or why a Handler was told of a Gap. Clients see it as the "reason" of a gap on
// every transport (String is the wire name).
type GapReason uint8

const (
	// GapNone: nothing is missing.
	GapNone GapReason = iota
	// GapTrimmed: messages after the position were dropped by the history size.
	GapTrimmed
	// GapExpired: the log the position came from expired after its TTL of silence (a new log
	// may have started since).
	GapExpired
	// GapBrokerReset: the position came from a log the broker no longer has because it lost its
	// data (a memory broker's restart, a Valkey that came back empty), or it is not a position
	// of this log at all.
	GapBrokerReset
	// GapReplayCap: more messages followed the position than a replay may carry (HistoryQuery's
	// Newest with Limit): only the newest were returned.
	GapReplayCap
	// GapLinkLost: a live subscriber's node lost its link to the broker, and messages published
	// meanwhile could not be recovered from the log.
	GapLinkLost
)

var gapNames = [...]string{"", "trimmed", "expired", "broker_reset", "replay_cap", "link_lost"}

// String returns the reason's wire name ("trimmed", "expired", "broker_reset", "replay_cap",
// "link_lost"), or "" for GapNone.
func (r GapReason) String() string {
	if int(r) < len(gapNames) {
		return gapNames[r]
	}
	return "unknown"
}
