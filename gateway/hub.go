package gateway

import (
	"context"
	"errors"
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/metrics"
)

// The hub maps channels to the local subscriptions of this node and fans messages out to them.
//
// Invariants:
//   - Per channel, messages reach each subscription in id order, each once: one dispatcher
//     goroutine owns each channel (chosen by hash); a split fan-out finishes before the next
//     message starts; the seam (subscribe, replay, goLive) buffers live messages until the
//     replay is written, and afterwards drops those the replay covered (the floor).
//   - The fan-out backlog is bounded in deliveries: Deliver waits when it is full.
//   - The node's interest in a channel (broker.Subscribe) is confirmed before any history read of
//     a subscription to it, so a message is either in the history read or arrives live.
//   - Lock order: shard.mu, then channelState.mu, then subscription.mu, then a connection's write
//     lock. Nothing called under these locks blocks on the network: connection writes are
//     non-blocking.

// sinkKind says which wire shape a subscription needs.
type sinkKind uint8

const (
	kindWS sinkKind = iota
	kindSSE
	kindPoll
	kindHTTP // not a subscriber: a keep-alive HTTP connection of a publisher (see AdoptHTTP)
)

// sink receives a subscription's messages. deliver must not block: it writes what the socket
// takes and queues the rest, or closes a connection whose queue overflowed.
type sink interface {
	// deliver writes ds, consecutive messages of sub's channel in id order, with one write where
	// the wire shape allows. v is the caller's scratch space for gathering the write, empty on
	// the call and left empty; the sink must keep neither v nor the ds slice after returning.
	deliver(sub *subscription, ds []*delivery, v *iovecs)
	// gap tells the client that messages of sub's channel were lost on their way to this node,
	// and why (see broker.Handler's Gap). Like deliver, it must not block.
	gap(sub *subscription, reason broker.GapReason)
}

// maxPending bounds the live messages buffered while a subscription's replay is written; the
// hub's pendingBytes bounds their size.
const maxPending = 10000

// subscription is one connection's interest in one channel. (Fields are ordered to avoid
// padding: see TestSessionSizes.)
type subscription struct {
	ch    *channelState
	sink  sink
	index int // position in ch.subs; guarded by ch.mu

	floor broker.ID // the replay covered ids up to floor; written before live is set

	// pos is the id of the newest message written on this subscription. The owning connection
	// guards it (SSE: its write lock, which also orders the cursor it encodes).
	pos broker.ID

	pending      []*delivery
	pendingBytes int         // wire size of pending; guarded by mu
	mu           sync.Mutex  // guards pending, pendingBytes and overflow until live
	live         atomic.Bool // set once the replay is written; then offers go straight to the sink
	kind         sinkKind
	// overflow says pending overflowed (and was dropped) since the replay's current history read
	// began (see beginRead): that read may not hold everything that was dropped.
	overflow bool
}

// offer hands ds (consecutive messages of the channel, in id order) to the subscription:
// straight to the sink once live, buffered before.
func (s *subscription) offer(ds []*delivery, v *iovecs) {
	if !s.live.Load() {
		s.mu.Lock()
		if !s.live.Load() {
			s.buffer(ds)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
	s.deliverLive(ds, v)
}

// buffer adds ds to pending. Past maxPending messages or the hub's pendingBytes, everything
// buffered is dropped and overflow set: every dropped message is in the channel's log (the
// broker stores before it delivers), so the replay reads it from there instead (see
// continueReplay); a long replay to a slow reader then holds at most the bound, whatever is
// published meanwhile. s.mu must be held.
func (s *subscription) buffer(ds []*delivery) {
	limit := s.ch.pendingBytes
	for _, d := range ds {
		size := d.wireSize(s.kind)
		if len(s.pending) >= maxPending || (s.pendingBytes+size > limit && len(s.pending) > 0) {
			clear(s.pending)
			s.pending, s.pendingBytes, s.overflow = s.pending[:0], 0, true
		}
		s.pending = append(s.pending, d)
		s.pendingBytes += size
	}
}

// deliverLive passes ds on, less the messages the replay already covered: the dispatcher may lag
// behind the broker, so messages older than the replay's end can still be on their way.
func (s *subscription) deliverLive(ds []*delivery, v *iovecs) {
	for len(ds) > 0 && !s.floor.Less(ds[0].msg.ID) {
		ds = ds[1:]
	}
	if len(ds) > 0 {
		s.sink.deliver(s, ds, v)
	}
}

// channelState is a channel with local subscribers.
type channelState struct {
	name string
	// pendingBytes bounds the live bytes each subscription buffers during its replay (the
	// hub's, copied here so that an offer reaches it without another pointer).
	pendingBytes int
	// refs counts subscriptions and acquisitions in progress; guarded by the shard's mu.
	refs int
	// ready is closed once the broker confirmed (or refused, err) the node's interest.
	ready chan struct{}
	err   error

	mu   sync.RWMutex // guards subs, nWS, nSSE
	subs []*subscription
	nWS  int
	nSSE int

	// lastID is the newest id dispatched; only the channel's dispatcher touches it.
	lastID broker.ID
}

type hubShard struct {
	mu       sync.Mutex
	channels map[string]*channelState
}

const hubShards = 64

// Hub is the node's channel registry and fan-out.
type Hub struct {
	broker  broker.Broker
	metrics *metrics.Metrics
	// pendingBytes bounds the live bytes a subscription buffers while its replay is written.
	pendingBytes int
	seed         maphash.Seed
	shards       [hubShards]hubShard

	queues  []chan dispatchItem
	backlog *backlog         // bounds the deliveries waiting in queues
	chunks  chan fanOutChunk // parts of a large channel's fan-out, for the helpers
	done    chan struct{}    // closed to stop the dispatchers
	// helpersDone stops the fan-out helpers, once the dispatchers (which wait for them) stopped.
	helpersDone chan struct{}
	dispatchers sync.WaitGroup
	workers     sync.WaitGroup // fan-out helpers and background unsubscribes
}

// fanOutChunk is a slice of one channel's subscriptions that a helper writes deliveries to.
type fanOutChunk struct {
	subs []*subscription
	ds   []*delivery
	wg   *sync.WaitGroup
}

// parallelFanOut is the subscriber count from which one message's fan-out is split across
// cores: below it the hand-off costs more than it saves.
const parallelFanOut = 512

// dispatchItem is a message for a channel's subscribers, or the news that some were lost.
type dispatchItem struct {
	msg  broker.Message
	gap  broker.GapReason // not GapNone: a gap notice (msg has only the channel)
	cost int              // backlog taken for it, given back once it is fanned out
}

// dispatchQueue is how many messages may wait per dispatcher before Deliver blocks (and with it
// the publisher: a bounded backlog rather than unbounded latency).
const dispatchQueue = 4096

func newHub(m *metrics.Metrics, backlogLimit int) *Hub {
	h := &Hub{metrics: m, seed: maphash.MakeSeed(), done: make(chan struct{}), helpersDone: make(chan struct{}),
		backlog: newBacklog(backlogLimit)}
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*channelState)
	}
	n := runtime.GOMAXPROCS(0)
	h.queues = make([]chan dispatchItem, n)
	for i := range h.queues {
		h.queues[i] = make(chan dispatchItem, dispatchQueue)
		h.dispatchers.Add(1)
		go h.dispatch(h.queues[i])
	}
	h.chunks = make(chan fanOutChunk, n)
	for range n - 1 {
		h.workers.Add(1)
		go h.fanOutHelper()
	}
	return h
}

func (h *Hub) fanOutHelper() {
	defer h.workers.Done()
	var v iovecs
	for {
		select {
		case c := <-h.chunks:
			for _, sub := range c.subs {
				sub.offer(c.ds, &v)
			}
			c.wg.Done()
		case <-h.helpersDone:
			return
		}
	}
}

func (h *Hub) hash(channel string) uint64 { return maphash.String(h.seed, channel) }

func (h *Hub) shard(channel string) *hubShard {
	return &h.shards[h.hash(channel)%hubShards]
}

// Deliver implements broker.Handler: it queues msg for its channel's dispatcher.
func (h *Hub) Deliver(msg broker.Message) { h.enqueue(dispatchItem{msg: msg}) }

// Gap implements broker.Handler: the channel's live subscribers are told, in order with its
// messages, that some were lost, and why.
func (h *Hub) Gap(channel string, reason broker.GapReason) {
	if reason == broker.GapNone {
		reason = broker.GapLinkLost // a notice must say something; the only live gap there is
	}
	h.enqueue(dispatchItem{msg: broker.Message{Channel: channel}, gap: reason})
}

func (h *Hub) enqueue(item dispatchItem) {
	cost := 1
	if item.gap == broker.GapNone {
		cost = h.Subscribers(item.msg.Channel)
	}
	item.cost = h.backlog.acquire(cost)
	q := h.queues[h.hash(item.msg.Channel)%uint64(len(h.queues))]
	select {
	case q <- item:
	case <-h.done:
		h.backlog.release(item.cost)
	}
}

// Batching: a dispatcher takes every item waiting in its queue (up to maxBatchItems) at once and
// fans out each channel's run of messages together, so a subscriber gets the messages that piled
// up while the previous fan-out ran in one write instead of one write each. At a low rate nothing
// waits and every message goes out alone, at once; under load the cost per delivery falls as the
// queue grows, which is what keeps latency bounded at saturation.
const (
	// maxBatchItems bounds the items a dispatcher takes in one round.
	maxBatchItems = 256
	// maxRunBytes bounds the message data written to a subscriber in one run, so one write stays
	// well inside a socket's send buffer rather than ending in the queue.
	maxRunBytes = 128 << 10
)

// dispatchRound is a dispatcher's reusable working space.
type dispatchRound struct {
	items []dispatchItem
	next  []int          // index of the next item of the same channel, or -1
	last  map[string]int // while linking: the latest item of each channel
	heads []int          // the first item of each channel, in order
	msgs  []broker.Message
	ds    []*delivery
	v     iovecs
}

func (h *Hub) dispatch(q chan dispatchItem) {
	defer h.dispatchers.Done()
	r := &dispatchRound{last: make(map[string]int)}
	for {
		select {
		case item := <-q:
			r.items = append(r.items[:0], item)
		more:
			for len(r.items) < maxBatchItems {
				select {
				case item := <-q:
					r.items = append(r.items, item)
				default:
					break more
				}
			}
			h.runRound(r)
		case <-h.done:
			return
		}
	}
}

// runRound handles the items of one round channel by channel. The items of one channel keep
// their order (messages and gap notices alike); channels are independent of each other.
func (h *Hub) runRound(r *dispatchRound) {
	n := len(r.items)
	r.next = slices.Grow(r.next[:0], n)[:n]
	r.heads = r.heads[:0]
	for i := range r.items {
		r.next[i] = -1
		if prev, ok := r.last[r.items[i].msg.Channel]; ok {
			r.next[prev] = i
		} else {
			r.heads = append(r.heads, i)
		}
		r.last[r.items[i].msg.Channel] = i
	}
	clear(r.last)
	for _, head := range r.heads {
		channel := r.items[head].msg.Channel
		r.msgs = r.msgs[:0]
		size := 0
		for j := head; j >= 0; j = r.next[j] {
			it := &r.items[j]
			gap := it.gap != broker.GapNone
			if gap || (size+len(it.msg.Data) > maxRunBytes && len(r.msgs) > 0) {
				h.fanOut(r, channel)
				r.msgs, size = r.msgs[:0], 0
			}
			if gap {
				h.reportGap(channel, it.gap)
				continue
			}
			r.msgs = append(r.msgs, it.msg)
			size += len(it.msg.Data)
		}
		h.fanOut(r, channel)
	}
	cost := 0
	for i := range r.items {
		cost += r.items[i].cost
		r.items[i] = dispatchItem{} // let the messages go
	}
	clear(r.msgs[:cap(r.msgs)])
	h.backlog.release(cost)
}

// reportGap tells the channel's live subscriptions that messages were lost. Subscriptions still
// writing their replay need no notice: their history read already shows what the log lacks.
func (h *Hub) reportGap(channel string, reason broker.GapReason) {
	cs := h.lookup(channel)
	if cs == nil {
		return
	}
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	for _, sub := range cs.subs {
		if sub.live.Load() {
			sub.sink.gap(sub, reason)
		}
	}
	h.metrics.Gaps.Inc()
}

func (h *Hub) lookup(channel string) *channelState {
	sh := h.shard(channel)
	sh.mu.Lock()
	cs := sh.channels[channel]
	sh.mu.Unlock()
	return cs
}

// fanOut writes r.msgs, consecutive messages of channel in id order, to the channel's
// subscriptions.
func (h *Hub) fanOut(r *dispatchRound, channel string) {
	if len(r.msgs) == 0 {
		return
	}
	cs := h.lookup(channel)
	if cs == nil {
		return
	}
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	r.ds = r.ds[:0]
	for _, msg := range r.msgs {
		if !cs.lastID.Less(msg.ID) && !cs.lastID.IsZero() {
			continue // already dispatched (a broker's catch-up after an outage may repeat)
		}
		cs.lastID = msg.ID
		r.ds = append(r.ds, newDelivery(msg, cs.nWS > 0, cs.nSSE > 0))
	}
	if len(r.ds) == 0 {
		return
	}
	n := len(cs.subs)
	if n >= parallelFanOut && cap(h.chunks) > 1 {
		h.fanOutParallel(cs.subs, r)
	} else {
		for _, sub := range cs.subs {
			sub.offer(r.ds, &r.v)
		}
	}
	h.metrics.Deliveries.Add(float64(n * len(r.ds)))
	clear(r.ds)
}

// fanOutParallel writes r.ds to subs with the helpers' help, one chunk each, and returns when all
// are written. Each subscription is in one chunk, and the channel's next run starts only after
// this returns, so every subscriber still gets the channel's messages in order. The caller holds
// the channel's read lock, which keeps subs unchanged meanwhile.
func (h *Hub) fanOutParallel(subs []*subscription, r *dispatchRound) {
	parts := cap(h.chunks)
	size := (len(subs) + parts - 1) / parts
	var wg sync.WaitGroup
	for start := size; start < len(subs); start += size {
		wg.Add(1)
		h.chunks <- fanOutChunk{subs: subs[start:min(start+size, len(subs))], ds: r.ds, wg: &wg}
	}
	for _, sub := range subs[:size] {
		sub.offer(r.ds, &r.v)
	}
	wg.Wait()
}

// acquire returns the channel's state with the node's broker interest confirmed, counting one
// reference that release gives back.
func (h *Hub) acquire(ctx context.Context, channel string) (*channelState, error) {
	sh := h.shard(channel)
	sh.mu.Lock()
	cs := sh.channels[channel]
	first := cs == nil
	if first {
		cs = &channelState{name: channel, ready: make(chan struct{}), pendingBytes: h.pendingBytes}
		sh.channels[channel] = cs
		h.metrics.Channels.Inc()
	}
	cs.refs++
	sh.mu.Unlock()

	if first {
		cs.err = h.broker.Subscribe(ctx, channel)
		if cs.err != nil {
			// Forget the state so the next subscriber tries again.
			sh.mu.Lock()
			if sh.channels[channel] == cs {
				delete(sh.channels, channel)
				h.metrics.Channels.Dec()
			}
			sh.mu.Unlock()
		}
		close(cs.ready)
	} else {
		select {
		case <-cs.ready:
		case <-ctx.Done():
			h.release(cs)
			return nil, ctx.Err()
		}
	}
	if cs.err != nil {
		h.release(cs)
		return nil, cs.err
	}
	return cs, nil
}

// release gives back one reference; the last one withdraws the node's broker interest.
func (h *Hub) release(cs *channelState) {
	sh := h.shard(cs.name)
	sh.mu.Lock()
	cs.refs--
	last := cs.refs == 0 && cs.err == nil && sh.channels[cs.name] == cs
	if last {
		delete(sh.channels, cs.name)
		h.metrics.Channels.Dec()
	}
	sh.mu.Unlock()
	if !last {
		return
	}
	// The broker counts Subscribe/Unsubscribe per channel, so this may run after a new state for
	// the same channel subscribed again: the count stays right whatever the order.
	h.workers.Add(1)
	go func() {
		defer h.workers.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.broker.Unsubscribe(ctx, cs.name)
	}()
}

// subscribe adds a buffering subscription to channel. The caller reads history, writes it, then
// calls goLive; or calls remove on failure.
func (h *Hub) subscribe(ctx context.Context, channel string, s sink, kind sinkKind) (*subscription, error) {
	cs, err := h.acquire(ctx, channel)
	if err != nil {
		return nil, err
	}
	sub := &subscription{ch: cs, sink: s, kind: kind}
	cs.mu.Lock()
	sub.index = len(cs.subs)
	cs.subs = append(cs.subs, sub)
	switch kind {
	case kindWS:
		cs.nWS++
	case kindSSE:
		cs.nSSE++
	}
	cs.mu.Unlock()
	if kind != kindPoll {
		h.metrics.Subscriptions.Inc()
	}
	return sub, nil
}

// errPendingOverflow means live messages overflowed the subscription's buffer since the replay's
// current history read began: the read may lack some of them, so the replay reads on.
var errPendingOverflow = errors.New("live messages overflowed during replay")

// beginRead notes that a history read of sub's replay is about to start: a later goLive fails
// if pending overflows before it (see buffer).
func (h *Hub) beginRead(sub *subscription) {
	sub.mu.Lock()
	sub.overflow = false
	sub.mu.Unlock()
}

// goLive delivers the live messages buffered during the replay that are newer than through (the
// last id the replay wrote, or the channel's last id for a live-only subscription) and switches
// the subscription to direct delivery. Call it once a history read that reached the end of the
// log was written. It fails with errPendingOverflow, and leaves the subscription buffering, when
// pending overflowed since that read began (see beginRead): the replay must read on from
// through first.
func (h *Hub) goLive(sub *subscription, through broker.ID) error {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.overflow {
		return errPendingOverflow
	}
	for i, d := range sub.pending {
		if through.Less(d.msg.ID) {
			var v iovecs
			sub.sink.deliver(sub, sub.pending[i:], &v)
			break
		}
	}
	sub.pending, sub.pendingBytes = nil, 0
	sub.floor = through
	sub.live.Store(true)
	return nil
}

// remove takes sub out of its channel and releases the channel. Removing a subscription that was
// removed already does nothing: the counts and the channel's reference are given back once.
func (h *Hub) remove(sub *subscription) {
	cs := sub.ch
	cs.mu.Lock()
	last := len(cs.subs) - 1
	if sub.index > last || cs.subs[sub.index] != sub {
		cs.mu.Unlock()
		return
	}
	moved := cs.subs[last]
	cs.subs[sub.index] = moved
	moved.index = sub.index
	cs.subs[last] = nil
	cs.subs = cs.subs[:last]
	switch sub.kind {
	case kindWS:
		cs.nWS--
	case kindSSE:
		cs.nSSE--
	}
	if cap(cs.subs) > 64 && len(cs.subs) < cap(cs.subs)/4 {
		cs.subs = append([]*subscription(nil), cs.subs...)
	}
	cs.mu.Unlock()
	if sub.kind != kindPoll {
		h.metrics.Subscriptions.Dec()
	}
	sub.mu.Lock()
	sub.pending, sub.pendingBytes = nil, 0
	sub.mu.Unlock()
	h.release(cs)
}

// Subscribers returns the number of local subscriptions to channel (WebSocket and SSE).
func (h *Hub) Subscribers(channel string) int {
	cs := h.lookup(channel)
	if cs == nil {
		return 0
	}
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	return cs.nWS + cs.nSSE
}

// close stops the dispatchers, then the fan-out helpers they may be waiting for, and waits for
// background unsubscribes.
func (h *Hub) close() {
	h.backlog.close()
	close(h.done)
	h.dispatchers.Wait()
	close(h.helpersDone)
	h.workers.Wait()
}
