package brokertest_test

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/brokertest"
	"github.com/herald-gateway/herald/gateway/broker/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestApproximateTrim runs the suite's approximate-trim path against a broker that keeps up to
// 37 messages more than asked, as loose as Valkey's MAXLEN ~ may be.
func TestApproximateTrim(t *testing.T) {
	brokertest.RunConfig(t, brokertest.Config{ApproximateTrim: true, TrimSlack: 50},
		func(t *testing.T, opts brokertest.Options) broker.Broker {
			policy := opts.Retention
			policy.Default.Size += 37
			return memory.New(memory.Options{Handler: opts.Handler, Retention: policy, IdempotencyWindow: opts.IdempotencyWindow})
		})
}

func TestChannelName(t *testing.T) {
	a, b := brokertest.ChannelName(t, "x"), brokertest.ChannelName(t, "y")
	if a == b || !broker.ValidChannel(a) || !strings.HasSuffix(a, ".x") {
		t.Errorf("ChannelName: %q and %q", a, b)
	}
	t.Run("a name with spaces and {braces} "+strings.Repeat("long", 100), func(t *testing.T) {
		if name := brokertest.ChannelName(t, "z"); !broker.ValidChannel(name) || name == a {
			t.Errorf("ChannelName in a subtest: %q", name)
		}
	})
}

func TestRecorder(t *testing.T) {
	var r brokertest.Recorder
	r.Deliver(broker.Message{Channel: "c", ID: broker.ID{Ms: 1}})
	r.Deliver(broker.Message{Channel: "c", ID: broker.ID{Ms: 2}})
	r.Deliver(broker.Message{Channel: "d", ID: broker.ID{Ms: 1}})
	if got := r.Wait(t, "c", 2, 0); len(got) != 2 {
		t.Errorf("Wait: %d messages", len(got))
	}
	if got := r.WaitID(t, "d", broker.ID{Ms: 1}, 0); len(got) != 1 {
		t.Errorf("WaitID: %d messages", len(got))
	}
	r.Check(t)
	// A duplicate or a step back is a contract violation that Check reports.
	r.Deliver(broker.Message{Channel: "c", ID: broker.ID{Ms: 2}})
	r.Deliver(broker.Message{Channel: "c", ID: broker.ID{Ms: 1}})
	var tb recordingTB
	r.Check(&tb)
	if len(tb.errors) != 2 {
		t.Errorf("Check reported %q; want 2 violations", tb.errors)
	}
}

// recordingTB collects what a helper reports instead of failing the test.
type recordingTB struct {
	testing.TB // nil: only the methods below may be called
	errors     []string
}

func (*recordingTB) Helper()              {}
func (tb *recordingTB) Error(args ...any) { tb.errors = append(tb.errors, fmt.Sprint(args...)) }
