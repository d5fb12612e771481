package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const stormDoc = `Reconnect storm: N subscribers connect and subscribe, all drop at once (TCP reset), M
messages are published to each channel, then all reconnect at once resuming after the last id
they saw (WebSocket "since", SSE Last-Event-ID). Reports the time until every client had all M
messages, the spread of per-client catch-up times, and lost and duplicated messages.`

type stormResult struct {
	Scenario     string         `json:"scenario"`
	Args         []string       `json:"args"`
	Machine      machine        `json:"machine"`
	Connect      connectResult  `json:"connect"`
	Channels     int            `json:"channels"`
	Messages     int            `json:"messages_per_channel"`
	Dropped      int            `json:"dropped"`
	Published    uint64         `json:"published"`
	Resubscribed int64          `json:"resubscribed"`
	ResumeFailed int64          `json:"resume_failed"`
	ResumeErrors map[string]int `json:"resume_attempt_errors,omitempty"`
	ResubSeconds float64        `json:"all_resubscribed_seconds"`
	CaughtUp     bool           `json:"all_caught_up"`
	Seconds      float64        `json:"all_caught_up_seconds"`
	PerClient    latencySummary `json:"per_client_catch_up"`
	Received     uint64         `json:"received"`
	Lost         uint64         `json:"lost"`
	LossyClients int            `json:"clients_with_loss"`
	Dups         uint64         `json:"duplicated"`
	Extra        uint64         `json:"extra"`
	Gaps         uint64         `json:"gaps"`
	Closes       map[string]int `json:"lost_after_subscribe,omitempty"`
	GatewayCPU   float64        `json:"gateway_cpu_seconds"`
	BenchCPU     float64        `json:"bench_cpu_seconds"`
}

func runStorm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("storm", stormDoc, stderr)
	f := addCommonFlags(fs, true)
	n := fs.Int("n", 1000, "subscribers")
	messages := fs.Int("messages", 50, "messages published to each channel while the subscribers are away (at most the gateway's --history-size and --replay-cap)")
	channels := fs.Int("channels", 1, "channels the subscribers are spread over")
	conc := fs.Int("publishers", 8, "concurrent publishers for the missed messages")
	wait := fs.Duration("wait", 60*time.Second, "give up waiting for the catch-up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n <= 0 || *messages <= 0 || *channels <= 0 || *conc <= 0 {
		return fmt.Errorf("-n, --messages, --channels and --publishers must be positive")
	}
	e, err := f.resolve(stderr)
	if err != nil {
		return err
	}
	res := stormResult{Scenario: "storm", Args: redactArgs(os.Args[1:]), Machine: thisMachine(), Channels: *channels, Messages: *messages}
	base := sampleGateway(ctx, f.url, e.pid)
	if !base.Metrics {
		return fmt.Errorf("gateway not reachable: %s", base.Err)
	}
	names := make([]string, *channels)
	run := runName()
	for i := range names {
		names[i] = fmt.Sprintf("bench:storm:%s:%d", run, i)
	}
	fl, conn, err := e.connect(*n, names, false, false)
	if err != nil {
		return err
	}
	defer fl.close()
	res.Connect = conn

	reps, err := fl.all(command{Op: "drop"})
	if err != nil {
		return err
	}
	sum, _, _ := merge(reps)
	res.Dropped = sum.Dropped
	e.pr.printf("dropped %d connections; waiting for the gateway to notice", res.Dropped)
	waitGatewayConns(ctx, e, base.Connections, 10*time.Second)

	for _, ch := range names {
		load := &pubLoad{cfg: pubConfig{url: f.url, token: e.token, channel: ch, conc: min(*conc, *messages), count: int64(*messages)}}
		pub, err := load.run(ctx)
		if err != nil {
			return err
		}
		res.Published += pub.Accepted
	}
	e.pr.printf("published %d messages; all %d clients resume now", res.Published, res.Dropped)

	g0 := sampleGateway(ctx, f.url, e.pid)
	cpu0 := benchCPU(fl, reps)
	t0 := time.Now().UnixNano()
	reps, err = fl.do(func(int) command {
		return command{Op: "resume", Expect: uint32(*messages), Start: t0}
	}, e.pr, func(s reply) string {
		return fmt.Sprintf("resume: %d/%d resubscribed, %d failed, %d messages received", s.Synced, res.Dropped, s.Failed, s.Received)
	})
	if err != nil {
		return err
	}
	sum, _, _ = merge(reps)
	res.ResubSeconds = float64(time.Now().UnixNano()-t0) / 1e9
	res.Resubscribed, res.ResumeFailed, res.ResumeErrors = sum.Synced, sum.Failed, sum.Errors
	reps, err = fl.do(func(int) command {
		return command{Op: "wait", WaitFor: int64(*wait)}
	}, e.pr, func(s reply) string {
		return fmt.Sprintf("catch-up: %d/%d messages", s.Received, uint64(res.Dropped)*uint64(*messages))
	})
	if err != nil {
		return err
	}
	g1 := sampleGateway(ctx, f.url, e.pid)
	cpu1 := benchCPU(fl, reps)
	sum, _, catchup := merge(reps)
	res.CaughtUp = sum.DoneAt != 0 && sum.Lost == 0
	if sum.DoneAt != 0 {
		res.Seconds = float64(sum.DoneAt-t0) / 1e9
	}
	res.PerClient = summarize(catchup)
	res.Received, res.Lost, res.LossyClients, res.Dups, res.Extra = sum.Received, sum.Lost, sum.LossyClients, sum.Dups, sum.Extra
	res.Gaps, res.Closes = sum.Gaps, sum.Closes
	res.GatewayCPU, res.BenchCPU = g1.CPU-g0.CPU, cpu1-cpu0
	return output(stdout, f.jsonOut, res, stormRows(res))
}

// waitGatewayConns waits until the gateway reports at most want connections, or for limit.
func waitGatewayConns(ctx context.Context, e *env, want float64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s := sampleGateway(ctx, e.f.url, e.pid); s.Metrics && s.Connections <= want {
			return
		}
		_ = waitCtx(ctx, 50*time.Millisecond)
	}
	e.pr.printf("the gateway still counts connections after %v; going on", limit)
}

func stormRows(r stormResult) [][2]string {
	caught := "NO"
	if r.CaughtUp {
		caught = fmt.Sprintf("%.2f s", r.Seconds)
	}
	rows := [][2]string{
		{"scenario", fmt.Sprintf("storm %s, %d subscribers over %d channels, %d missed messages each", r.Connect.Transport, r.Connect.Requested, r.Channels, r.Messages)},
		{"subscribed", fmt.Sprintf("%d (failed %d) in %.1f s, %d procs", r.Connect.Synced, r.Connect.Failed, r.Connect.Seconds, r.Connect.Procs)},
		{"dropped, published", fmt.Sprintf("%d connections, %d messages", r.Dropped, r.Published)},
		{"resubscribed", fmt.Sprintf("%d (failed %d) after %.2f s; attempt errors %s", r.Resubscribed, r.ResumeFailed, r.ResubSeconds, countsText(r.ResumeErrors))},
		{"all caught up after", caught},
		{"per-client catch-up", r.PerClient.String()},
		{"lost / duplicated", fmt.Sprintf("%d lost (%d clients), %d duplicated, %d extra, %d gaps reported", r.Lost, r.LossyClients, r.Dups, r.Extra, r.Gaps)},
		{"connections lost", countsText(r.Closes)},
		{"CPU during resume", fmt.Sprintf("gateway %.2f s, bench %.2f s", r.GatewayCPU, r.BenchCPU)},
		{"command", "herald-bench " + strings.Join(r.Args, " ")},
	}
	return rows
}
