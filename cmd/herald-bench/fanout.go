package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

const fanoutDoc = `Open N WebSocket (or SSE) subscribers on one channel, then publish through the HTTP API at
R messages/s for T seconds, each message carrying its send time (unix ns) in its data.

Reports deliveries per second, delivery latency (send to receipt, p50/p99/p99.9/max), messages
lost and duplicated per subscriber (ids must strictly increase, counts must match the accepted
publishes), the gateway's CPU time per delivery, and the bench's own CPU so that a run limited by
the bench says so. --rate 0 publishes flat out with --publishers concurrent publishers.`

type fanoutResult struct {
	Scenario     string            `json:"scenario"`
	Args         []string          `json:"args"`
	Machine      machine           `json:"machine"`
	Connect      connectResult     `json:"connect"`
	Rate         float64           `json:"rate"`
	Publishers   int               `json:"publishers"`
	Seconds      float64           `json:"publish_seconds"`
	Accepted     uint64            `json:"accepted"`
	Statuses     map[int]uint64    `json:"publish_statuses"`
	PubErrors    map[string]uint64 `json:"publish_errors,omitempty"`
	PublishLat   latencySummary    `json:"publish_request_latency"`
	MaxLagMs     float64           `json:"publish_max_lag_ms"`
	Deliveries   uint64            `json:"deliveries"`
	Expected     uint64            `json:"expected_deliveries"`
	PerSecond    float64           `json:"deliveries_per_second"`
	Latency      latencySummary    `json:"latency"`
	Lost         uint64            `json:"lost"`
	LossySubs    int               `json:"subscribers_with_loss"`
	Dups         uint64            `json:"duplicated"`
	Extra        uint64            `json:"extra"`
	Closes       map[string]int    `json:"lost_after_subscribe,omitempty"`
	Complete     bool              `json:"all_delivered"`
	TimedOut     bool              `json:"drain_timed_out"`
	Wall         float64           `json:"wall_seconds"`
	GatewayCPU   float64           `json:"gateway_cpu_seconds"`
	CPUPerDeliv  float64           `json:"gateway_cpu_us_per_delivery"`
	GatewayDeliv float64           `json:"gateway_deliveries_metric"`
	BenchCPU     float64           `json:"bench_cpu_seconds"`
	GatewayCore  float64           `json:"gateway_cores"`
	BenchCores   float64           `json:"bench_cores"`
	OtherCores   float64           `json:"other_processes_cores"`
	Notes        []string          `json:"notes,omitempty"`
}

func runFanout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fanout", fanoutDoc, stderr)
	f := addCommonFlags(fs, true)
	n := fs.Int("n", 1000, "subscribers, all on one channel")
	rate := fs.Float64("rate", 5, "messages per second; 0: as fast as the API accepts (saturation)")
	dur := fs.Duration("duration", 30*time.Second, "how long to publish")
	conc := fs.Int("publishers", 0, "concurrent keep-alive publishers (default 4, or 16 with --rate 0)")
	drain := fs.Duration("drain", 30*time.Second, "after publishing, wait at most this long for every subscriber to have every message")
	channel := fs.String("channel", "", "channel to use (default bench:fanout:<unique>, so no history is shared between runs)")
	pad := fs.Int("pad", 0, "extra bytes of data per message")
	svg := fs.String("svg", "", "write a CDF of delivery latency to this SVG file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n <= 0 || *rate < 0 || *dur <= 0 {
		return fmt.Errorf("-n and --duration must be positive, --rate not negative")
	}
	if *conc <= 0 {
		*conc = 4
		if *rate == 0 {
			*conc = 16
		}
	}
	if *channel == "" {
		*channel = "bench:fanout:" + runName()
	}
	e, err := f.resolve(stderr)
	if err != nil {
		return err
	}
	res := fanoutResult{Scenario: "fanout", Args: redactArgs(os.Args[1:]), Machine: thisMachine(), Rate: *rate, Publishers: *conc}
	if g := sampleGateway(ctx, f.url, e.pid); !g.Metrics {
		return fmt.Errorf("gateway not reachable: %s", g.Err)
	}
	fl, conn, err := e.connect(*n, []string{*channel}, true, false)
	if err != nil {
		return err
	}
	defer fl.close()
	res.Connect = conn
	if conn.Synced == 0 {
		return fmt.Errorf("no subscriber got subscribed: %s", countsText(conn.Errors))
	}
	_ = waitCtx(ctx, time.Second)

	reps, err := fl.all(command{Op: "reset"})
	if err != nil {
		return err
	}
	cpu0 := benchCPU(fl, reps)
	g0 := sampleGateway(ctx, f.url, e.pid)
	load := &pubLoad{cfg: pubConfig{url: f.url, token: e.token, channel: *channel, conc: *conc, rate: *rate, duration: *dur, pad: *pad}}
	pub, err := publishWithProgress(ctx, e, fl, load)
	if err != nil {
		return err
	}
	e.pr.printf("published %d; waiting for every subscriber to have them all", pub.Accepted)
	waitFor := int64(*drain)
	if pub.Accepted == 0 {
		waitFor = 0
	}
	reps, err = fl.do(func(int) command {
		return command{Op: "wait", Expect: uint32(pub.Accepted), Start: pub.Start, WaitFor: waitFor}
	}, e.pr, func(s reply) string {
		return fmt.Sprintf("drain: %d/%d deliveries", s.Received, pub.Accepted*uint64(conn.Synced))
	})
	if err != nil {
		return err
	}
	g1 := sampleGateway(ctx, f.url, e.pid)
	cpu1 := benchCPU(fl, reps)
	sum, lat, _ := merge(reps)
	fillFanout(&res, pub, sum, lat, g0, g1, cpu1-cpu0, uint64(conn.Synced))
	if *svg != "" {
		title := fmt.Sprintf("herald fan-out: %d subscribers, %s", conn.Synced, rateText(*rate))
		if err := writeCDF(*svg, title, lat); err != nil {
			return err
		}
		e.pr.printf("wrote %s", *svg)
	}
	return output(stdout, f.jsonOut, res, fanoutRows(res))
}

// publishWithProgress runs the publishers and prints accepted publishes and deliveries every second.
func publishWithProgress(ctx context.Context, e *env, fl *fleet, load *pubLoad) (pubResult, error) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastAcc, lastDel uint64
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			acc := load.Accepted.Load()
			var del uint64
			if fl != nil {
				if reps, err := fl.all(command{Op: "progress"}); err == nil {
					s, _, _ := merge(reps)
					del = s.Received
				}
			}
			e.pr.printf("publish: accepted %d (+%d/s), rejected %d, deliveries %d (+%d/s)",
				acc, acc-lastAcc, load.Rejected.Load(), del, del-lastDel)
			lastAcc, lastDel = acc, del
		}
	}()
	res, err := load.run(ctx)
	close(done)
	wg.Wait()
	return res, err
}

func fillFanout(res *fanoutResult, pub pubResult, sum reply, lat *histogram, g0, g1 gatewaySample, benchCPU float64, subs uint64) {
	res.Accepted, res.Statuses, res.PubErrors = pub.Accepted, pub.Statuses, pub.Errors
	res.PublishLat = summarize(pub.Lat)
	res.MaxLagMs = float64(pub.MaxLag) / 1e6
	res.Seconds = float64(pub.End-pub.Start) / 1e9
	res.Deliveries, res.Expected = sum.Received, pub.Accepted*subs
	res.Latency = summarize(lat)
	res.Lost, res.LossySubs, res.Dups, res.Extra, res.Closes = sum.Lost, sum.LossyClients, sum.Dups, sum.Extra, sum.Closes
	res.Complete = sum.Lost == 0 && sum.DoneAt != 0
	res.TimedOut = sum.DoneAt == 0
	end := max(sum.LastRecv, pub.End)
	if span := float64(end-pub.Start) / 1e9; span > 0 {
		res.PerSecond = float64(sum.Received) / span
	}
	res.Wall = float64(g1.At-g0.At) / 1e9
	res.GatewayCPU = g1.CPU - g0.CPU
	res.GatewayDeliv = g1.Deliveries - g0.Deliveries
	if sum.Received > 0 {
		res.CPUPerDeliv = res.GatewayCPU / float64(sum.Received) * 1e6
	}
	res.BenchCPU = benchCPU
	if res.Wall > 0 {
		res.GatewayCore = res.GatewayCPU / res.Wall
		res.BenchCores = res.BenchCPU / res.Wall
	}
	res.OtherCores = max(0, (g1.MachineBusy-g0.MachineBusy)/max(res.Wall, 1e-9)-res.GatewayCore-res.BenchCores)
	res.Notes = cpuNotes(res.GatewayCore, res.BenchCores, res.OtherCores)
	if res.Rate > 0 && res.MaxLagMs > 1000/res.Rate {
		res.Notes = append(res.Notes, fmt.Sprintf("publishers fell behind the schedule by up to %.1f ms", res.MaxLagMs))
	}
	if !g0.ProcOK {
		res.Notes = append(res.Notes, "gateway CPU from process_cpu_seconds_total (10 ms resolution)")
	}
}

// cpuNotes says when the machine was saturated and whether the bench may be the limit.
func cpuNotes(gateway, bench, other float64) []string {
	cpus := float64(runtime.NumCPU())
	var notes []string
	if gateway+bench+other >= 0.85*cpus {
		notes = append(notes, fmt.Sprintf("the machine's %.0f CPUs were nearly saturated: gateway %.2f, bench %.2f, other processes %.2f cores", cpus, gateway, bench, other))
		if bench >= 0.5*gateway {
			notes = append(notes, "the bench used at least half as much CPU as the gateway on the same cores: it is part of the limit")
		}
	}
	return notes
}

func rateText(rate float64) string {
	if rate == 0 {
		return "saturation"
	}
	return fmt.Sprintf("%g msg/s", rate)
}

func fanoutRows(r fanoutResult) [][2]string {
	rows := [][2]string{
		{"scenario", fmt.Sprintf("fanout %s, %d subscribers on one channel, %s, %d publishers", r.Connect.Transport, r.Connect.Requested, rateText(r.Rate), r.Publishers)},
		{"subscribed", fmt.Sprintf("%d (failed %d) in %.1f s, %d procs", r.Connect.Synced, r.Connect.Failed, r.Connect.Seconds, r.Connect.Procs)},
		{"published", fmt.Sprintf("%d accepted in %.1f s (%.0f/s); answers %s; errors %s", r.Accepted, r.Seconds, float64(r.Accepted)/max(r.Seconds, 1e-9), countsText(r.Statuses), countsText(r.PubErrors))},
		{"publish request latency", r.PublishLat.String()},
		{"deliveries", fmt.Sprintf("%d of %d expected, %.0f/s", r.Deliveries, r.Expected, r.PerSecond)},
		{"delivery latency", r.Latency.String()},
		{"lost / duplicated", lossText(r.Lost, r.LossySubs, r.Dups, r.Extra, r.TimedOut)},
		{"connections lost", countsText(r.Closes)},
		{"gateway CPU", fmt.Sprintf("%.2f s = %.2f us per delivery (%.2f cores)", r.GatewayCPU, r.CPUPerDeliv, r.GatewayCore)},
		{"bench CPU", fmt.Sprintf("%.2f s (%.2f cores); other processes %.2f cores", r.BenchCPU, r.BenchCores, r.OtherCores)},
	}
	for _, n := range r.Notes {
		rows = append(rows, [2]string{"note", n})
	}
	return append(rows, [2]string{"command", "herald-bench " + strings.Join(r.Args, " ")})
}

// lossText says how many messages subscribers missed; when the drain timed out, the missing
// ones may still have been on their way.
func lossText(lost uint64, subs int, dups, extra uint64, timedOut bool) string {
	s := fmt.Sprintf("%d lost (%d subscribers), %d duplicated, %d extra", lost, subs, dups, extra)
	if timedOut && lost > 0 {
		s += " (the drain timed out: the missing messages may still have been queued; use a longer --drain)"
	}
	return s
}
