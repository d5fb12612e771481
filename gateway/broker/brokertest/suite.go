// Package brokertest is the conformance suite of herald's brokers: the behaviour a user of a
// broker.Broker relies on, checked the same way against the memory broker, a Valkey server and
// a Valkey Cluster.
//
// A broker's own test calls Run (or RunConfig) with a constructor:
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T, opts brokertest.Options) broker.Broker {
//			return memory.New(memory.Options{Handler: opts.Handler, Retention: opts.Retention,
//				IdempotencyWindow: opts.IdempotencyWindow})
//		})
//	}
//
// The helpers (Recorder, Eventually, ChannelName) are exported for brokers' own tests.
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker"
)

// Options is what a case needs its broker configured with. The suite always fills every field.
type Options struct {
	// Handler receives deliveries; the suite passes a *Recorder.
	Handler broker.Handler
	// Retention is the history policy.
	Retention broker.RetentionPolicy
	// IdempotencyWindow is how long idempotency keys are remembered.
	IdempotencyWindow time.Duration
}

// NewBroker returns a fresh broker for one case. It is called once per case, on the case's own
// *testing.T; the suite closes the broker when the case ends (possibly after the case already
// did, so Close must tolerate a second call). Brokers that share a store between cases (a real
// Valkey server) need no cleaning between them: every case uses channel names of its own, unique
// per process as well (ChannelName).
type NewBroker func(t *testing.T, opts Options) broker.Broker

// Config describes where a broker may legitimately differ from the exact rules.
type Config struct {
	// ApproximateTrim says the broker trims by size approximately (Valkey's MAXLEN ~): it keeps
	// at least Retention.Size messages and at most TrimSlack more.
	ApproximateTrim bool
	// TrimSlack is how many messages beyond Retention.Size an approximate broker may keep; 0
	// means 100 (Valkey's default stream-node-max-entries: it trims whole nodes).
	TrimSlack int
	// LinkOutage, for brokers whose nodes share a store over a network link (Valkey), returns a
	// second broker on the store of the case's brokers, configured with opts, and a function
	// that cuts its link to the store until the returned restore is called. Nil for brokers
	// without such a link (memory): the LiveGap case then checks that no gap is ever reported.
	LinkOutage func(t *testing.T, opts Options) (b broker.Broker, cut func() (restore func()))
}

// defaultTrimSlack matches Valkey's stream-node-max-entries default.
const defaultTrimSlack = 100

// Defaults the suite configures brokers with, unless a case needs otherwise. The TTL is short
// enough that a shared Valkey server does not keep test channels for a day.
var (
	defaultRetention = broker.Retention{Size: 1000, TTL: 10 * time.Minute}
	defaultWindow    = 10 * time.Minute
)

// Run runs every case against brokers that trim exactly.
func Run(t *testing.T, newBroker NewBroker) {
	RunConfig(t, Config{}, newBroker)
}

// RunConfig runs every case, each as a subtest with a fresh broker.
func RunConfig(t *testing.T, cfg Config, newBroker NewBroker) {
	if cfg.ApproximateTrim && cfg.TrimSlack <= 0 {
		cfg.TrimSlack = defaultTrimSlack
	}
	if !cfg.ApproximateTrim {
		cfg.TrimSlack = 0
	}
	s := &suite{cfg: cfg, newBroker: newBroker}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
}

// cases is the suite, in the order it runs.
var cases = []struct {
	name string
	run  func(t *testing.T, s *suite)
}{
	{"PublishIDs", testPublishIDs},
	{"ConcurrentPublishers", testConcurrentPublishers},
	{"Delivery", testDelivery},
	{"DeliveryConcurrent", testDeliveryConcurrent},
	{"SubscribeCounted", testSubscribeCounted},
	{"IdempotentRetry", testIdempotentRetry},
	{"IdempotencyPerChannel", testIdempotencyPerChannel},
	{"IdempotencyConcurrent", testIdempotencyConcurrent},
	{"IdempotencyWindow", testIdempotencyWindow},
	{"HistorySince", testHistorySince},
	{"HistoryPaging", testHistoryPaging},
	{"HistoryNewest", testHistoryNewest},
	{"HistoryMaxBytes", testHistoryMaxBytes},
	{"HistoryStartOnly", testHistoryStartOnly},
	{"HistoryLimitZero", testHistoryLimitZero},
	{"HistoryUnusedChannel", testHistoryUnusedChannel},
	{"HistoryEpoch", testHistoryEpoch},
	{"HistorySinceBeforeLog", testHistorySinceBeforeLog},
	{"HistorySinceAfterLast", testHistorySinceAfterLast},
	{"TrimContinuity", testTrimContinuity},
	{"TTLExpiry", testTTLExpiry},
	{"LiveGap", testLiveGap},
	{"PublishBatch", testPublishBatch},
	{"BadInput", testBadInput},
	{"Closed", testClosed},
	{"Ready", testReady},
}

type suite struct {
	cfg       Config
	newBroker NewBroker
}

// env is one case's broker and what the case checks it with.
type env struct {
	t   *testing.T
	ctx context.Context
	b   broker.Broker
	rec *Recorder
	cfg Config
}

// start makes the case's broker. Zero fields of opts get the suite's defaults.
func (s *suite) start(t *testing.T, opts Options) *env {
	t.Helper()
	rec := &Recorder{}
	opts.Handler = rec
	if opts.Retention.Default == (broker.Retention{}) {
		opts.Retention.Default = defaultRetention
	}
	if opts.IdempotencyWindow == 0 {
		opts.IdempotencyWindow = defaultWindow
	}
	b := s.newBroker(t, opts)
	if b == nil {
		t.Fatal("the constructor returned a nil broker")
	}
	t.Cleanup(func() { _ = b.Close() })
	return &env{t: t, ctx: t.Context(), b: b, rec: rec, cfg: s.cfg}
}
