// Package broker defines how herald stores and distributes messages: the Broker interface, the
// in-memory broker that is the embedded default, and the rules every broker must follow (checked
// by the conformance suite in package brokertest).
//
// A broker owns the per-channel log. Publish assigns each message an id strictly greater than
// every earlier id of its channel and stores it before returning. History reads the log after an
// id and says whether it can prove that nothing after that id was lost. Every published message
// of a channel the node has declared interest in (Subscribe) reaches the node's Handler, per
// channel in id order.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Message is one stored message.
type Message struct {
	Channel string
	ID      ID
	// Event is the publisher's optional event name ("" for none).
	Event string
	// Data is the message body: one valid JSON value, stored and delivered verbatim.
	Data json.RawMessage
}

// PublishRequest is one message to store.
type PublishRequest struct {
	Channel string
	Event   string
	Data    json.RawMessage
	// IdempotencyKey, when not empty, makes the publish safe to retry: a second publish to the
	// same channel with the same key within the broker's idempotency window stores nothing and
	// returns the first publish's id.
	IdempotencyKey string
}

// PublishResult tells where a message was stored.
type PublishResult struct {
	ID ID
	// Duplicate is true when the idempotency key had been seen: nothing new was stored and ID is
	// the id the first publish got.
	Duplicate bool
}

// HistoryQuery selects messages from a channel's log.
type HistoryQuery struct {
	// Since is an exclusive lower bound: only messages with an id greater than Since are returned.
	// The zero ID means "from the oldest retained message".
	Since ID
	// Limit is the most messages to return; 0 returns none (the answer then only carries LastID
	// and Complete).
	Limit int
	// Newest, when more than Limit messages follow Since, returns the newest Limit of them instead
	// of the oldest, and then Complete is false (the older ones were skipped). Replays use it.
	Newest bool
	// MaxBytes, when positive, bounds a forward page by size: its messages' Data and Event add
	// up to at most MaxBytes, except that a page holds at least one message. A page it cut has
	// More set. It keeps the memory of one read bounded whatever the messages' sizes, so replays,
	// long-polls and history pages are read in pieces. Ignored with Newest.
	MaxBytes int
	// StartOnly, with Newest, asks only where the newest Limit messages after Since begin,
	// without reading them: the page has no Messages, Start is the position to read them
	// forward from (Since itself when no more than Limit follow it) and Gap is what Newest would
	// say. A replay that pages forward through a long backlog uses it to skip what Newest skips.
	StartOnly bool
}

// MessageBytes is a message's size as MaxBytes counts it.
func MessageBytes(m Message) int { return len(m.Data) + len(m.Event) }

// HistoryPage is the answer to a HistoryQuery.
type HistoryPage struct {
	// Messages are in id order, oldest first.
	Messages []Message
	// Complete is true when the broker can prove that no message after Since is missing from the
	// log: nothing after Since was trimmed (by size or age), the log was not lost (a restart
	// without its data), and Newest did not skip any. With Since zero it means nothing was ever
	// trimmed from the log.
	Complete bool
	// Gap says why the page is not Complete (GapNone exactly when it is). When several reasons
	// hold, the one about the log (trimmed, expired, broker reset) wins over GapReplayCap.
	Gap GapReason
	// More is true when messages after the last one returned exist (only for !Newest).
	More bool
	// Start answers a StartOnly query: read forward from it (exclusive) to get the newest Limit
	// messages after Since. Zero for other queries.
	Start ID
	// LastID is the id of the channel's newest message at the time of the read. A subscriber
	// that read the page is caught up to LastID, and resuming from it later is exact.
	//
	// For a channel without messages LastID is the broker's epoch: an id below every id the
	// broker will assign and not below any it assigned before it last lost its data (a memory
	// broker's start, a Valkey that came back empty). Resuming from the epoch is complete while
	// the broker keeps its data; after a loss the epoch moves on, so the old one reads as a gap.
	// (The zero ID would not do: "0" means "everything retained", which is complete by
	// definition, and would hide messages lost in a restart.)
	LastID ID
}

// Handler receives the messages of channels the node has declared interest in. Deliver is called
// for each channel in id order and never concurrently for the same channel; it must not block for
// long (it hands the message to the fan-out and returns).
//
// Gap tells the Handler that the broker could not hand it every message of a channel: after an
// outage of the link between this node and the store, messages published meanwhile were no
// longer in the log (trimmed, expired or lost with it). The reason is GapLinkLost. Gap is called
// in the channel's delivery order, before the first message delivered after the gap, and never
// concurrently with Deliver for the same channel; like Deliver it must not block. A broker
// without such a link (the memory broker) never calls it.
type Handler interface {
	Deliver(msg Message)
	Gap(channel string, reason GapReason)
}

// Broker stores messages and distributes them to every node. Implementations are safe for
// concurrent use.
type Broker interface {
	// Publish stores one message and hands it to every interested node. It does not keep
	// req.Data (nor anything sharing its memory) past its return: callers reuse the buffer.
	Publish(ctx context.Context, req PublishRequest) (PublishResult, error)
	// PublishBatch stores several messages. Each result or error is for the request at the same
	// index; messages to the same channel are stored in request order.
	PublishBatch(ctx context.Context, reqs []PublishRequest) ([]PublishResult, []error)
	// History reads a channel's log. A channel without a log answers an empty page whose
	// LastID is the epoch; it is complete for Since zero or the epoch, and incomplete for any
	// other Since (the position the client holds came from a log that is gone).
	History(ctx context.Context, channel string, q HistoryQuery) (HistoryPage, error)
	// Subscribe declares this node's interest in a channel; it returns once every message
	// published after it returns is sure to reach the Handler. Calls are counted: the interest
	// ends when Unsubscribe has been called as many times.
	Subscribe(ctx context.Context, channel string) error
	// Unsubscribe withdraws one Subscribe.
	Unsubscribe(ctx context.Context, channel string) error
	// Ready reports whether the broker can serve publishes now (nil) or why not.
	Ready(ctx context.Context) error
	// Close releases the broker's resources. The broker must not be used afterwards.
	Close() error
}

// Errors a broker returns; callers test them with errors.Is.
var (
	// ErrUnavailable means the store cannot be reached now; the operation may be retried later
	// (with the same idempotency key for a publish).
	ErrUnavailable = errors.New("broker unavailable")
	// ErrClosed means the broker was closed.
	ErrClosed = errors.New("broker closed")
)

// Retention is how much history a channel keeps.
type Retention struct {
	// Size is the most messages kept per channel (approximately, for Valkey).
	Size int
	// TTL is how long a channel's log lives after its last publish.
	TTL time.Duration
}

// RetentionRule applies a Retention to channels whose name starts with Prefix.
type RetentionRule struct {
	Prefix string
	Retention
}

// RetentionPolicy picks the retention of a channel: the rule with the longest matching prefix,
// or Default.
type RetentionPolicy struct {
	Default Retention
	Rules   []RetentionRule
}

// WithDefaults returns p with zero sizes and TTLs filled in: the Default's from
// DefaultRetention, the rules' from the Default. The rules slice is copied, so the caller's is
// never changed.
func (p RetentionPolicy) WithDefaults() RetentionPolicy {
	if p.Default.Size <= 0 {
		p.Default.Size = DefaultRetention.Size
	}
	if p.Default.TTL <= 0 {
		p.Default.TTL = DefaultRetention.TTL
	}
	rules := make([]RetentionRule, len(p.Rules))
	for i, r := range p.Rules {
		if r.Size <= 0 {
			r.Size = p.Default.Size
		}
		if r.TTL <= 0 {
			r.TTL = p.Default.TTL
		}
		rules[i] = r
	}
	p.Rules = rules
	return p
}

// For returns the retention of channel.
func (p RetentionPolicy) For(channel string) Retention {
	best, bestLen := p.Default, -1
	for _, r := range p.Rules {
		if len(r.Prefix) > bestLen && len(channel) >= len(r.Prefix) && channel[:len(r.Prefix)] == r.Prefix {
			best, bestLen = r.Retention, len(r.Prefix)
		}
	}
	return best
}

// DefaultRetention is herald's default: 1000 messages, kept 24 hours after the last publish.
var DefaultRetention = Retention{Size: 1000, TTL: 24 * time.Hour}

// DefaultIdempotencyWindow is how long idempotency keys are remembered by default.
const DefaultIdempotencyWindow = 24 * time.Hour
