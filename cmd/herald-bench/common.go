package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/herald-gateway/herald/api/auth"
)

// benchFlags are the flags every subcommand shares.
type benchFlags struct {
	url       string
	token     string
	secret    string
	jsonOut   bool
	quiet     bool
	pid       int
	procs     int
	loops     int
	sourceIPs string
	dialConc  int
	retries   int
	timeout   time.Duration
	transport string
	readTick  time.Duration
}

// maxConnsPerProc keeps a worker process under the 20,000 open-file limit with room to spare.
const maxConnsPerProc = 15000

func addCommonFlags(fs *flag.FlagSet, subscribers bool) *benchFlags {
	f := &benchFlags{}
	fs.StringVar(&f.url, "url", "http://127.0.0.1:8080", "the gateway's base URL")
	fs.StringVar(&f.token, "token", os.Getenv("HERALD_TOKEN"), "JWT or API key for subscribing and publishing (default $HERALD_TOKEN)")
	fs.StringVar(&f.secret, "secret", "", "the gateway's HMAC secret (--jwt-secret): mint a token allowing subscribe and publish on \"*\"")
	fs.BoolVar(&f.jsonOut, "json", false, "print the result as one JSON object instead of a table")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	fs.IntVar(&f.pid, "pid", 0, "the gateway's PID, for its RSS and CPU from /proc (default: the process listening on --url's port, when it is local and readable)")
	if !subscribers {
		return f
	}
	fs.IntVar(&f.procs, "procs", 0, fmt.Sprintf("worker processes that hold the subscribers (default: one per %d connections; 1 runs them in this process)", maxConnsPerProc))
	fs.IntVar(&f.loops, "loops", 0, "epoll loops (goroutines reading sockets) per worker process (default: CPUs / procs, at least 1)")
	fs.StringVar(&f.sourceIPs, "source-ips", "", "local addresses to connect from, as a range 127.0.0.1-127.0.0.8 or a comma list;\neach gives ~28k ports towards one gateway address (default: the kernel's choice)")
	fs.IntVar(&f.dialConc, "dial-concurrency", 1000, "connection attempts in flight per worker process (connect, handshake, subscribe)")
	fs.IntVar(&f.retries, "retries", 3, "retries of a failed connection attempt, with jittered backoff from 100 ms")
	fs.DurationVar(&f.timeout, "connect-timeout", 30*time.Second, "time one attempt may take from connect to subscribed")
	fs.StringVar(&f.transport, "transport", "ws", "subscriber transport: ws or sse")
	fs.DurationVar(&f.readTick, "read-tick", 0, "after reading, wait this long before asking epoll again, so that events gather\n"+
		"instead of each waking a sleeping loop; on one machine the gateway's write pays for\n"+
		"every such wake-up (0: wait in epoll_wait, woken by every event)")
	return f
}

// env is a run's resolved settings.
type env struct {
	f       *benchFlags
	token   string
	pid     int
	sources []string
	pr      *progress
}

func (f *benchFlags) resolve(stderr io.Writer) (*env, error) {
	e := &env{f: f, token: f.token, pid: f.pid, pr: &progress{w: stderr, quiet: f.quiet, start: time.Now()}}
	if f.secret != "" {
		tok, err := auth.MintHMAC([]byte(f.secret), auth.MintClaims{Subject: "herald-bench",
			Subscribe: []string{"*"}, Publish: []string{"*"}, TTL: 24 * time.Hour})
		if err != nil {
			return nil, err
		}
		e.token = tok
	}
	if f.transport != "" && f.transport != "ws" && f.transport != "sse" {
		return nil, fmt.Errorf("--transport %q: use ws or sse", f.transport)
	}
	u, err := url.Parse(f.url)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return nil, fmt.Errorf("--url %q: want http://host:port", f.url)
	}
	if e.pid == 0 && isLocal(u.Hostname()) {
		if port, err := strconv.Atoi(u.Port()); err == nil {
			e.pid, _ = pidListening(port)
		}
	}
	if e.sources, err = parseSourceIPs(f.sourceIPs); err != nil {
		return nil, err
	}
	return e, nil
}

func isLocal(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// parseSourceIPs reads "127.0.0.1-127.0.0.8" or "127.0.0.1,127.0.0.2".
func parseSourceIPs(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		first, last, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a := net.ParseIP(first).To4()
		if a == nil {
			return nil, fmt.Errorf("--source-ips: %q is not an IPv4 address", first)
		}
		if !isRange {
			out = append(out, a.String())
			continue
		}
		b := net.ParseIP(last).To4()
		if b == nil || a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || b[3] < a[3] {
			return nil, fmt.Errorf("--source-ips: %q is not a range within one /24", part)
		}
		for i := int(a[3]); i <= int(b[3]); i++ {
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(i)).String())
		}
	}
	return out, nil
}

// connectResult describes how the subscribers got connected.
type connectResult struct {
	Requested int            `json:"requested"`
	Synced    int64          `json:"subscribed"`
	Failed    int64          `json:"failed"`
	Errors    map[string]int `json:"attempt_errors,omitempty"`
	Seconds   float64        `json:"seconds"`
	Procs     int            `json:"procs"`
	Loops     int            `json:"loops_per_proc"`
	Transport string         `json:"transport"`
}

// connect starts the workers and opens n subscribers; subscriber i listens on channels[i%len].
// connect opens n subscribers over the fleet; with resume, one the gateway closes later connects
// again and resumes (command.Resume).
func (e *env) connect(n int, channels []string, latency, resume bool) (*fleet, connectResult, error) {
	f := e.f
	procs := f.procs
	if procs <= 0 {
		procs = max(1, (n+maxConnsPerProc-1)/maxConnsPerProc)
	}
	loops := f.loops
	if loops <= 0 {
		loops = max(1, runtime.NumCPU()/procs)
	}
	res := connectResult{Requested: n, Procs: procs, Loops: loops, Transport: f.transport}
	fl, err := startFleet(procs)
	if err != nil {
		return nil, res, err
	}
	start := time.Now()
	e.pr.printf("connecting %d %s subscribers over %d process(es)", n, f.transport, procs)
	reps, err := fl.do(func(i int) command {
		return command{Op: "connect", URL: f.url, Token: e.token, SSE: f.transport == "sse",
			From: n * i / procs, To: n * (i + 1) / procs, Channels: channels, SourceIPs: e.sources,
			DialConc: f.dialConc, Loops: loops, Retries: f.retries, Timeout: int64(f.timeout), Latency: latency,
			ReadTick: int64(f.readTick), Resume: resume}
	}, e.pr, func(s reply) string {
		return fmt.Sprintf("connect: %d/%d subscribed, %d failed", s.Synced, n, s.Failed)
	})
	if err != nil {
		fl.close()
		return nil, res, err
	}
	sum, _, _ := merge(reps)
	res.Synced, res.Failed, res.Errors = sum.Synced, sum.Failed, sum.Errors
	res.Seconds = time.Since(start).Seconds()
	e.pr.printf("connect: %d/%d subscribed, %d failed in %.1fs", res.Synced, n, res.Failed, res.Seconds)
	return fl, res, nil
}

// progress prints timestamped lines on stderr unless quiet.
type progress struct {
	w     io.Writer
	quiet bool
	start time.Time
	mu    sync.Mutex
}

func (p *progress) printf(format string, args ...any) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// machine describes where the bench ran.
type machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel,omitempty"`
}

func thisMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// output prints v as JSON, or the table rows.
func output(w io.Writer, jsonOut bool, v any, rows [][2]string) error {
	if jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if r[0] == "" {
			fmt.Fprintln(tw)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

// countsText renders a map of counts as "a=1 b=2", sorted; "none" when empty.
func countsText[K comparable, V int | uint64](m map[K]V) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%v=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// latencySummary is a histogram's figures in milliseconds.
type latencySummary struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *histogram) latencySummary {
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return latencySummary{Count: h.Count(), Mean: h.Mean() / 1e6, P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)),
		P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)), Max: ms(h.Max())}
}

func (l latencySummary) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p99 %s  p99.9 %s  max %s  (n=%d)", msText(l.P50), msText(l.P99), msText(l.P999), msText(l.Max), l.Count)
}

func msText(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.2f s", ms/1000)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.3f ms", ms)
}

// bytesText renders a byte count with a binary unit.
func bytesText(b float64) string {
	switch {
	case b >= 1<<30 || b <= -(1<<30):
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20 || b <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10 || b <= -(1<<10):
		return fmt.Sprintf("%.2f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// benchCPU is the bench's own CPU seconds: this process plus its worker processes.
func benchCPU(fl *fleet, reps []reply) float64 {
	return processCPU() + fl.workerCPU(reps)
}

// waitCtx sleeps for d or until ctx ends.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runName returns a channel-name suffix unique to this run, so runs never share history.
func runName() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.Itoa(os.Getpid())
}

// redactArgs returns the arguments with the values of --token and --secret hidden.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	hideNext := false
	for i, a := range args {
		if hideNext {
			out[i], hideNext = "<redacted>", false
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		secret := strings.HasPrefix(a, "-") && (name == "token" || name == "secret")
		switch {
		case secret && hasValue:
			out[i] = a[:strings.Index(a, "=")+1] + "<redacted>"
		case secret:
			out[i], hideNext = a, true
		default:
			out[i] = a
		}
	}
	return out
}
