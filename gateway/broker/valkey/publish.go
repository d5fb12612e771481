package valkey

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/herald-gateway/herald/gateway/broker"
)

// Publish stores one message with one script call (one round trip; see publish.lua) and
// announces it on the channel's shard. Concurrent publishes to one channel share script calls
// (see coalesce.go). Errors reaching Valkey wrap broker.ErrUnavailable; the publish may then
// have been stored or not, and is safe to retry with the same idempotency key.
func (b *Broker) Publish(ctx context.Context, req broker.PublishRequest) (broker.PublishResult, error) {
	if err := b.checkOpen(); err != nil {
		return broker.PublishResult{}, err
	}
	if err := validate(&req); err != nil {
		return broker.PublishResult{}, fmt.Errorf("valkey broker: publish: %w", err)
	}
	return b.coalesce(ctx, req)
}

// PublishBatch stores several messages: one script call per channel, all pipelined, so a
// batch costs one round trip per Valkey node involved. Each channel's messages are stored in
// request order by a single atomic script run; a failure of that run is reported for every
// message of the channel (messages before the failure may have been stored: retry with the
// same idempotency keys).
func (b *Broker) PublishBatch(ctx context.Context, reqs []broker.PublishRequest) ([]broker.PublishResult, []error) {
	results := make([]broker.PublishResult, len(reqs))
	errs := make([]error, len(reqs))
	if err := b.checkOpen(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return results, errs
	}
	type group struct {
		channel string
		idx     []int
	}
	var groups []group
	byChannel := make(map[string]int)
	for i := range reqs {
		if err := validate(&reqs[i]); err != nil {
			errs[i] = fmt.Errorf("valkey broker: publish: %w", err)
			continue
		}
		g, ok := byChannel[reqs[i].Channel]
		if !ok {
			g = len(groups)
			byChannel[reqs[i].Channel] = g
			groups = append(groups, group{channel: reqs[i].Channel})
		}
		groups[g].idx = append(groups[g].idx, i)
	}
	if len(groups) == 0 {
		return results, errs
	}
	calls := make([]call, len(groups))
	for gi, g := range groups {
		msgs := make([]scriptMessage, len(g.idx))
		for j, i := range g.idx {
			msgs[j] = newScriptMessage(&reqs[i])
		}
		calls[gi] = b.publishCall(g.channel, msgs)
	}
	opCtx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	for gi, res := range publishScript.execMulti(opCtx, b.client, calls) {
		g := groups[gi]
		out := make([]broker.PublishResult, len(g.idx))
		err := decodePublished(res, out)
		if err != nil {
			err = b.wrap(ctx, "publish", err)
		}
		for j, i := range g.idx {
			results[i], errs[i] = out[j], err
		}
	}
	return results, errs
}

// validate checks what the broker relies on: the channel name is safe inside a hash tag, the
// event name holds no newline, the data is one JSON value in UTF-8 (delivered verbatim to encoders
// that embed it, WebSocket text frames among them).
func validate(req *broker.PublishRequest) error {
	switch {
	case !broker.ValidChannel(req.Channel):
		return fmt.Errorf("%w: %q", errBadChannel, req.Channel)
	case req.Event != "" && !broker.ValidEvent(req.Event):
		return fmt.Errorf("%w: %q", errBadEvent, req.Event)
	case !broker.ValidData(req.Data):
		return errBadData
	}
	return nil
}

var (
	errBadChannel = errors.New("invalid channel name")
	errBadEvent   = errors.New("invalid event name")
	errBadData    = errors.New("message data is not one JSON value in UTF-8")
)

// scriptMessage is one message as publish.lua takes it.
type scriptMessage struct {
	event string
	// data is a copy of the request's Data: a command may still be queued for writing after
	// a timed-out Publish has returned and its caller has reused the buffer.
	data string
	key  string // idempotency key, "" for none
}

func newScriptMessage(r *broker.PublishRequest) scriptMessage {
	return scriptMessage{event: r.Event, data: string(r.Data), key: r.IdempotencyKey}
}

// publishCall builds the arguments of publish.lua for msgs, all to channel. Keys and arguments
// share one backing array.
func (b *Broker) publishCall(channel string, msgs []scriptMessage) call {
	size, ttl := b.scriptArg.retention(b.retention.For(channel))
	nKeys := 1
	for _, m := range msgs {
		if m.key != "" {
			nKeys++
		}
	}
	all := make([]string, nKeys+5+3*len(msgs))
	keys, args := all[:1:nKeys], all[nKeys:nKeys+5]
	keys[0] = b.streamKey(channel)
	args[0] = size
	args[1] = ttl
	args[2] = b.scriptArg.window
	args[3] = b.liveChannel(channel)
	args[4] = strconv.Itoa(len(msgs))
	for _, m := range msgs {
		hasKey := "0"
		if m.key != "" {
			hasKey = "1"
			keys = append(keys, b.idemKey(channel, m.key))
		}
		args = append(args, hasKey, m.event, m.data)
	}
	return call{keys: keys, args: args}
}

// publishArgs holds publish.lua's numeric arguments as text, formatted when the broker is made
// rather than on every publish.
type publishArgs struct {
	window string                         // the idempotency window in ms
	limits map[broker.Retention][2]string // MAXLEN and TTL in ms of each retention in the policy
}

func newPublishArgs(p broker.RetentionPolicy, window time.Duration) publishArgs {
	a := publishArgs{window: strconv.FormatInt(max(window.Milliseconds(), 1), 10),
		limits: make(map[broker.Retention][2]string, 1+len(p.Rules))}
	a.limits[p.Default] = formatRetention(p.Default)
	for _, r := range p.Rules {
		a.limits[r.Retention] = formatRetention(r.Retention)
	}
	return a
}

// retention returns MAXLEN and the TTL in ms for r.
func (a publishArgs) retention(r broker.Retention) (size, ttl string) {
	f, ok := a.limits[r]
	if !ok { // not from the policy the broker was made with; cannot happen, but stay correct
		f = formatRetention(r)
	}
	return f[0], f[1]
}

func formatRetention(r broker.Retention) [2]string {
	return [2]string{strconv.Itoa(max(r.Size, 1)), strconv.FormatInt(max(r.TTL.Milliseconds(), 1), 10)}
}

// decodePublished reads publish.lua's reply, one {id, duplicate} per message, into out.
func decodePublished(res valkey.ValkeyResult, out []broker.PublishResult) error {
	items, err := res.ToArray()
	if err != nil {
		return err
	}
	if len(items) != len(out) {
		return fmt.Errorf("publish script answered %d results for %d messages", len(items), len(out))
	}
	for i := range items {
		pair, err := items[i].ToArray()
		if err != nil || len(pair) != 2 {
			return errors.New("malformed publish script reply")
		}
		idText, err1 := pair[0].ToString()
		dup, err2 := pair[1].ToInt64()
		if err1 != nil || err2 != nil {
			return errors.New("malformed publish script reply")
		}
		id, err := broker.ParseID(idText)
		if err != nil {
			return fmt.Errorf("publish script answered id %q: %w", idText, err)
		}
		out[i] = broker.PublishResult{ID: id, Duplicate: dup == 1}
	}
	return nil
}
