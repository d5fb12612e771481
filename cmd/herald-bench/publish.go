package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const publishDoc = `Run C concurrent keep-alive publishers against POST /v1/channels/{channel}/messages for T
seconds, optionally with M WebSocket (or SSE) subscribers on the channel, and report accepted
publishes per second, request latency (p50/p99/p99.9) and answers by status. With subscribers it
also checks that each got every accepted message once.`

type publishResult struct {
	Scenario    string            `json:"scenario"`
	Args        []string          `json:"args"`
	Machine     machine           `json:"machine"`
	Publishers  int               `json:"publishers"`
	Subscribers int               `json:"subscribers"`
	Connect     *connectResult    `json:"connect,omitempty"`
	Seconds     float64           `json:"seconds"`
	Accepted    uint64            `json:"accepted"`
	PerSecond   float64           `json:"accepted_per_second"`
	Statuses    map[int]uint64    `json:"statuses"`
	Errors      map[string]uint64 `json:"errors,omitempty"`
	Latency     latencySummary    `json:"request_latency"`
	Deliveries  uint64            `json:"deliveries,omitempty"`
	Lost        uint64            `json:"lost"`
	Dups        uint64            `json:"duplicated"`
	TimedOut    bool              `json:"drain_timed_out,omitempty"`
	LossySubs   int               `json:"subscribers_with_loss,omitempty"`
	// Closes are subscriber connections the gateway ended during the run, by reason. With
	// --resume=false the bench does not resume them: a "slow_consumer" close (4008) means the
	// bench read too slowly, and the messages after it count as lost for that subscriber. With
	// --resume (the default) they resume at once and count in Resumed instead.
	Closes      map[string]int `json:"lost_after_subscribe,omitempty"`
	Resumed     map[string]int `json:"resumed_after_close,omitempty"`
	Gaps        uint64         `json:"gaps_reported,omitempty"` // resumes the gateway said were not complete
	GatewayCPU  float64        `json:"gateway_cpu_seconds"`
	CPUPerPub   float64        `json:"gateway_cpu_us_per_publish"`
	BenchCPU    float64        `json:"bench_cpu_seconds"`
	GatewayCore float64        `json:"gateway_cores"`
	BenchCores  float64        `json:"bench_cores"`
	OtherCores  float64        `json:"other_processes_cores"`
	Notes       []string       `json:"notes,omitempty"`
}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("publish", publishDoc, stderr)
	f := addCommonFlags(fs, true)
	conc := fs.Int("publishers", 64, "concurrent keep-alive publishers")
	dur := fs.Duration("duration", 10*time.Second, "how long to publish")
	subs := fs.Int("subscribers", 0, "subscribers on the channel while publishing")
	drain := fs.Duration("drain", 30*time.Second, "with subscribers: wait at most this long for them to have every message")
	channel := fs.String("channel", "", "channel to publish to (default bench:publish:<unique>)")
	pad := fs.Int("pad", 0, "extra bytes of data per message")
	resume := fs.Bool("resume", true, "with subscribers: one the gateway closes (4008 when the bench reads too slowly)\nresumes at once from its last id, as the SDKs do; false: it counts as lost")
	api := fs.String("api", apiHerald, "publish API: herald, or centrifugo to measure that peer on this machine\n(POST /api/publish with --token as X-API-Key; no subscribers; /metrics needs prometheus enabled)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *api == apiCentrifugo && *subs > 0 {
		return fmt.Errorf("--api centrifugo: --subscribers is for herald only")
	}
	if *conc <= 0 || *dur <= 0 || *subs < 0 {
		return fmt.Errorf("--publishers and --duration must be positive")
	}
	if *channel == "" {
		*channel = "bench:publish:" + runName()
	}
	e, err := f.resolve(stderr)
	if err != nil {
		return err
	}
	res := publishResult{Scenario: "publish", Args: redactArgs(os.Args[1:]), Machine: thisMachine(), Publishers: *conc, Subscribers: *subs}
	if g := sampleGateway(ctx, f.url, e.pid); !g.Metrics {
		return fmt.Errorf("gateway not reachable: %s", g.Err)
	}
	var fl *fleet
	var reps []reply
	if *subs > 0 {
		var conn connectResult
		if fl, conn, err = e.connect(*subs, []string{*channel}, false, *resume); err != nil {
			return err
		}
		defer fl.close()
		res.Connect = &conn
		if reps, err = fl.all(command{Op: "reset"}); err != nil {
			return err
		}
	}
	cpu0 := processCPU()
	if fl != nil {
		cpu0 += fl.workerCPU(reps)
	}
	g0 := sampleGateway(ctx, f.url, e.pid)
	load := &pubLoad{cfg: pubConfig{url: f.url, token: e.token, channel: *channel, api: *api, conc: *conc, duration: *dur, pad: *pad}}
	pub, err := publishWithProgress(ctx, e, fl, load)
	if err != nil {
		return err
	}
	g1 := sampleGateway(ctx, f.url, e.pid)
	cpu1 := processCPU()
	if fl != nil {
		waitFor := int64(*drain)
		if pub.Accepted == 0 {
			waitFor = 0
		}
		reps, err := fl.all(command{Op: "wait", Expect: uint32(pub.Accepted), Start: pub.Start, WaitFor: waitFor})
		if err != nil {
			return err
		}
		sum, _, _ := merge(reps)
		res.Deliveries, res.Lost, res.Dups, res.TimedOut = sum.Received, sum.Lost, sum.Dups, sum.DoneAt == 0
		res.LossySubs, res.Closes, res.Resumed, res.Gaps = sum.LossyClients, sum.Closes, sum.Resumed, sum.Gaps
		cpu1 += fl.workerCPU(reps)
	}
	fillPublish(&res, pub, g0, g1, cpu1-cpu0)
	return output(stdout, f.jsonOut, res, publishRows(res))
}

func fillPublish(res *publishResult, pub pubResult, g0, g1 gatewaySample, benchCPU float64) {
	res.Accepted, res.Statuses, res.Errors = pub.Accepted, pub.Statuses, pub.Errors
	res.Seconds = float64(pub.End-pub.Start) / 1e9
	if res.Seconds > 0 {
		res.PerSecond = float64(pub.Accepted) / res.Seconds
	}
	res.Latency = summarize(pub.Lat)
	res.GatewayCPU = g1.CPU - g0.CPU
	if pub.Accepted > 0 {
		res.CPUPerPub = res.GatewayCPU / float64(pub.Accepted) * 1e6
	}
	res.BenchCPU = benchCPU
	if wall := float64(g1.At-g0.At) / 1e9; wall > 0 {
		res.GatewayCore = res.GatewayCPU / wall
		res.BenchCores = benchCPU / wall
		res.OtherCores = max(0, (g1.MachineBusy-g0.MachineBusy)/wall-res.GatewayCore-res.BenchCores)
	}
	res.Notes = cpuNotes(res.GatewayCore, res.BenchCores, res.OtherCores)
}

func publishRows(r publishResult) [][2]string {
	rows := [][2]string{
		{"scenario", fmt.Sprintf("publish, %d publishers, %d subscribers", r.Publishers, r.Subscribers)},
	}
	if r.Connect != nil {
		rows = append(rows, [2]string{"subscribed", fmt.Sprintf("%d (failed %d) in %.1f s", r.Connect.Synced, r.Connect.Failed, r.Connect.Seconds)})
	}
	rows = append(rows,
		[2]string{"accepted", fmt.Sprintf("%d in %.1f s = %.0f/s", r.Accepted, r.Seconds, r.PerSecond)},
		[2]string{"answers", countsText(r.Statuses)},
		[2]string{"errors", countsText(r.Errors)},
		[2]string{"request latency", r.Latency.String()},
	)
	if r.Subscribers > 0 {
		rows = append(rows, [2]string{"deliveries", fmt.Sprintf("%d; %s", r.Deliveries, lossText(r.Lost, r.LossySubs, r.Dups, 0, r.TimedOut))})
		if len(r.Closes) > 0 {
			rows = append(rows, [2]string{"connections lost", countsText(r.Closes) +
				" (not resumed by the bench; slow_consumer: it read too slowly, its lost messages are in the log)"})
		}
		if len(r.Resumed) > 0 {
			rows = append(rows, [2]string{"connections resumed", fmt.Sprintf("%s (closed by the gateway, resumed from the last id); %d resumes told of a gap (more behind than the gateway's --history-size or --replay-cap)", countsText(r.Resumed), r.Gaps)})
		}
	}
	rows = append(rows,
		[2]string{"gateway CPU", fmt.Sprintf("%.2f s = %.1f us per publish (%.2f cores)", r.GatewayCPU, r.CPUPerPub, r.GatewayCore)},
		[2]string{"bench CPU", fmt.Sprintf("%.2f s (%.2f cores); other processes %.2f cores", r.BenchCPU, r.BenchCores, r.OtherCores)},
	)
	for _, n := range r.Notes {
		rows = append(rows, [2]string{"note", n})
	}
	return append(rows, [2]string{"command", "herald-bench " + strings.Join(r.Args, " ")})
}
