package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"
)

const idleDoc = `Open N subscribers (WebSocket or SSE) spread over K channels, wait until the gateway's memory
is steady, and report its RSS, Go heap and goroutines before and after, per connection.

RSS and CPU come from /proc/PID (--pid, or found from --url's port when the gateway is local);
heap and goroutines from /metrics. Run it against a fresh gateway: "before" is its baseline.
A gateway serving N connections needs more than N open files (ulimit -n).`

type idleResult struct {
	Scenario  string         `json:"scenario"`
	Args      []string       `json:"args"`
	Machine   machine        `json:"machine"`
	Connect   connectResult  `json:"connect"`
	Channels  int            `json:"channels"`
	Before    gatewaySample  `json:"before"`
	After     gatewaySample  `json:"after"`
	Settle    float64        `json:"settle_seconds"`
	Open      int            `json:"open_at_end"`
	Closes    map[string]int `json:"lost_after_subscribe,omitempty"`
	PerConn   perConn        `json:"per_connection"`
	AfterGC   *gatewaySample `json:"after_gc,omitempty"`
	PerConnGC *perConn       `json:"per_connection_after_gc,omitempty"`
	BenchCPU  float64        `json:"bench_cpu_seconds"`
	BenchProc int            `json:"bench_procs"`
}

type perConn struct {
	RSS        float64 `json:"rss_bytes"`
	Heap       float64 `json:"heap_inuse_bytes"`
	Goroutines float64 `json:"goroutines"`
}

func runIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("idle", idleDoc, stderr)
	f := addCommonFlags(fs, true)
	n := fs.Int("n", 1000, "subscribers to open")
	channels := fs.Int("channels", 100, "channels the subscribers are spread over (subscriber i on channel i % K)")
	settleMin := fs.Duration("settle", 30*time.Second, "wait at least this long after the last subscribe before measuring (the Go scavenger returns\nthe memory of the connect burst to the OS over tens of seconds)")
	settleMax := fs.Duration("settle-max", 60*time.Second, "measure after this long even if memory is still moving")
	hold := fs.Duration("hold", 0, "keep the connections open this long after measuring (to take a heap profile, say)")
	debugURL := fs.String("debug-url", "", "the gateway's pprof address (--debug-listen), as http://127.0.0.1:6060: after measuring, force a\nGC through /debug/pprof/heap?gc=1, wait --gc-settle and measure again (live memory without GC slack)")
	gcSettle := fs.Duration("gc-settle", 20*time.Second, "with --debug-url: wait this long after the forced GC")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n <= 0 || *channels <= 0 {
		return fmt.Errorf("-n and --channels must be positive")
	}
	e, err := f.resolve(stderr)
	if err != nil {
		return err
	}
	if e.pid == 0 {
		e.pr.printf("no gateway PID (--pid): RSS will not be measured")
	}
	res := idleResult{Scenario: "idle", Args: redactArgs(os.Args[1:]), Machine: thisMachine(), Channels: *channels}
	res.Before = sampleGateway(ctx, f.url, e.pid)
	if !res.Before.Metrics {
		return fmt.Errorf("gateway not reachable: %s", res.Before.Err)
	}
	names := make([]string, *channels)
	run := runName()
	for i := range names {
		names[i] = fmt.Sprintf("bench:idle:%s:%d", run, i)
	}
	fl, conn, err := e.connect(*n, names, false, false)
	if err != nil {
		return err
	}
	defer fl.close()
	res.Connect = conn
	res.BenchProc = conn.Procs

	start := time.Now()
	res.After = settle(ctx, e, *settleMin, *settleMax)
	res.Settle = time.Since(start).Seconds()
	reps, err := fl.all(command{Op: "stats"})
	if err != nil {
		return err
	}
	sum, _, _ := merge(reps)
	res.Open, res.Closes = sum.Open, sum.Closes
	res.BenchCPU = benchCPU(fl, reps)
	res.PerConn = perConnOf(res.Before, res.After, conn.Synced)
	if *debugURL != "" {
		if err := forceGC(ctx, *debugURL); err != nil {
			return err
		}
		e.pr.printf("forced a GC on the gateway; measuring again in %v", *gcSettle)
		_ = waitCtx(ctx, *gcSettle)
		s := sampleGateway(ctx, f.url, e.pid)
		pc := perConnOf(res.Before, s, conn.Synced)
		res.AfterGC, res.PerConnGC = &s, &pc
	}
	if err := output(stdout, f.jsonOut, res, idleRows(res)); err != nil {
		return err
	}
	if *hold > 0 {
		e.pr.printf("holding %d connections for %v", res.Open, *hold)
		_ = waitCtx(ctx, *hold)
	}
	return nil
}

func perConnOf(before, after gatewaySample, conns int64) perConn {
	if conns <= 0 {
		return perConn{}
	}
	k := float64(conns)
	return perConn{
		RSS:        (after.RSS - before.RSS) / k,
		Heap:       (after.HeapInuse - before.HeapInuse) / k,
		Goroutines: (after.Goroutines - before.Goroutines) / k,
	}
}

// forceGC makes the gateway collect garbage: /debug/pprof/heap?gc=1 runs runtime.GC first.
func forceGC(ctx context.Context, debugURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(debugURL, "/")+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("--debug-url: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("--debug-url: status %d", resp.StatusCode)
	}
	return nil
}

// settle samples the gateway every second until its RSS (or heap, without a PID) moved less than
// 1% over the last three samples, after min and at most max.
func settle(ctx context.Context, e *env, minWait, maxWait time.Duration) gatewaySample {
	start := time.Now()
	var hist []float64
	for {
		s := sampleGateway(ctx, e.f.url, e.pid)
		v := s.RSS
		if e.pid == 0 {
			v = s.HeapInuse
		}
		hist = append(hist, v)
		e.pr.printf("settle: rss %s heap %s goroutines %.0f connections %.0f", bytesText(s.RSS), bytesText(s.HeapInuse), s.Goroutines, s.Connections)
		el := time.Since(start)
		if el >= maxWait || ctx.Err() != nil || el >= minWait && steady(hist) {
			return s
		}
		_ = waitCtx(ctx, time.Second)
	}
}

func steady(h []float64) bool {
	if len(h) < 3 {
		return false
	}
	last := h[len(h)-3:]
	lo, hi := math.Min(last[0], math.Min(last[1], last[2])), math.Max(last[0], math.Max(last[1], last[2]))
	return hi-lo <= 0.01*hi
}

func idleRows(r idleResult) [][2]string {
	rows := [][2]string{
		{"scenario", fmt.Sprintf("idle %s, %d subscribers over %d channels", r.Connect.Transport, r.Connect.Requested, r.Channels)},
		{"subscribed", fmt.Sprintf("%d (failed %d) in %.1f s, %d procs", r.Connect.Synced, r.Connect.Failed, r.Connect.Seconds, r.Connect.Procs)},
	}
	if len(r.Connect.Errors) > 0 {
		rows = append(rows, [2]string{"attempt errors", countsText(r.Connect.Errors)})
	}
	rows = append(rows,
		[2]string{"open at end", fmt.Sprintf("%d (lost after subscribe: %s)", r.Open, countsText(r.Closes))},
		[2]string{"gateway connections", fmt.Sprintf("%.0f -> %.0f", r.Before.Connections, r.After.Connections)},
		[2]string{"gateway", "before / after / per connection"},
	)
	if r.Before.ProcOK {
		rows = append(rows, [2]string{"RSS", fmt.Sprintf("%s / %s / %s", bytesText(r.Before.RSS), bytesText(r.After.RSS), bytesText(r.PerConn.RSS))})
	} else {
		rows = append(rows, [2]string{"RSS", "not measured (no --pid)"})
	}
	rows = append(rows,
		[2]string{"Go heap in use", fmt.Sprintf("%s / %s / %s", bytesText(r.Before.HeapInuse), bytesText(r.After.HeapInuse), bytesText(r.PerConn.Heap))},
		[2]string{"goroutines", fmt.Sprintf("%.0f / %.0f / %.4f", r.Before.Goroutines, r.After.Goroutines, r.PerConn.Goroutines)},
		[2]string{"settled after", fmt.Sprintf("%.1f s", r.Settle)},
	)
	if g, pc := r.AfterGC, r.PerConnGC; g != nil {
		rows = append(rows,
			[2]string{"after a forced GC", "after / per connection"},
			[2]string{"RSS", fmt.Sprintf("%s / %s", bytesText(g.RSS), bytesText(pc.RSS))},
			[2]string{"Go heap in use", fmt.Sprintf("%s / %s", bytesText(g.HeapInuse), bytesText(pc.Heap))},
		)
	}
	rows = append(rows,
		[2]string{"bench CPU", fmt.Sprintf("%.2f s", r.BenchCPU)},
		[2]string{"command", "herald-bench " + strings.Join(r.Args, " ")},
	)
	return rows
}
