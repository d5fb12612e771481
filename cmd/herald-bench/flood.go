package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

const floodDoc = `Connection flood: open N WebSocket upgrade attempts from several source addresses, as fast as
--rate and --concurrency allow, and hold every one that is upgraded. Counts the answers by status
(101, 503, 429, ...) or by failure (reset, timeout, refused, eof); meanwhile GETs /healthz every
--health-every on a connection of its own and reports its latency and failures. After closing
everything, measures the time until a fresh upgrade succeeds again (recovery).

The bench holds every upgraded connection in this process: N plus --concurrency must stay under
its descriptor limit (ulimit -n).`

type floodResult struct {
	Scenario   string             `json:"scenario"`
	Args       []string           `json:"args"`
	Machine    machine            `json:"machine"`
	Sources    []string           `json:"sources"`
	Attempts   int                `json:"attempts"`
	Seconds    float64            `json:"seconds"`
	PerSecond  float64            `json:"attempts_per_second"`
	Answers    map[string]int     `json:"answers"` // by status code, or failure
	Upgrade    latencySummary     `json:"upgrade_latency"`
	Held       int                `json:"held"`
	Health     healthSummary      `json:"healthz"`
	Recovered  bool               `json:"recovered"`
	Recovery   float64            `json:"recovery_seconds"`
	RecTries   int                `json:"recovery_attempts"`
	RecAnswers map[string]int     `json:"recovery_answers,omitempty"`
	Refusals   map[string]float64 `json:"gateway_refusals,omitempty"` // herald_connection_refusals_total deltas
	PeakConns  float64            `json:"gateway_peak_connections"`
}

// healthSummary is what the /healthz probe saw during the flood and the recovery.
type healthSummary struct {
	Requests int            `json:"requests"`
	Failures int            `json:"failures"`
	Latency  latencySummary `json:"latency"`
}

// floodConfig is one run's settings.
type floodConfig struct {
	sources     []string
	n, conc     int
	rate        float64
	hold        time.Duration
	timeout     time.Duration
	healthEvery time.Duration
	recoveryMax time.Duration
}

func runFlood(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("flood", floodDoc, stderr)
	f := addCommonFlags(fs, false)
	var c floodConfig
	sources := fs.String("sources", "127.0.0.2-127.0.0.9", "source addresses, as a range 127.0.0.2-127.0.0.9 or a comma list; attempt i comes from source i % len")
	fs.IntVar(&c.n, "connections", 4000, "upgrade attempts")
	fs.Float64Var(&c.rate, "rate", 0, "attempts started per second over all sources; 0: as fast as --concurrency allows")
	fs.IntVar(&c.conc, "concurrency", 256, "attempts in flight at once")
	fs.DurationVar(&c.hold, "hold", time.Second, "keep the upgraded connections this long after the last attempt")
	fs.DurationVar(&c.timeout, "attempt-timeout", 5*time.Second, "time one attempt may take from connect to the answer's head")
	fs.DurationVar(&c.healthEvery, "health-every", 100*time.Millisecond, "interval of the /healthz probe")
	fs.DurationVar(&c.recoveryMax, "recovery-max", 30*time.Second, "give up waiting for a fresh upgrade to succeed after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if c.sources, err = parseSourceIPs(*sources); err != nil {
		return err
	}
	if len(c.sources) == 0 || c.n <= 0 || c.conc <= 0 || c.rate < 0 || c.healthEvery <= 0 {
		return fmt.Errorf("--sources, --connections, --concurrency and --health-every must be given and positive")
	}
	if err := checkDescriptors(c.n + c.conc + 64); err != nil {
		return err
	}
	e, err := f.resolve(stderr)
	if err != nil {
		return err
	}
	m0, err := scrapeMetrics(ctx, f.url)
	if err != nil {
		return fmt.Errorf("gateway not reachable: %w", err)
	}
	res := floodResult{Scenario: "flood", Args: redactArgs(os.Args[1:]), Machine: thisMachine(), Sources: c.sources, Attempts: c.n}
	fl := &flooder{cfg: c, host: strings.TrimPrefix(f.url, "http://"), token: e.token, answers: map[string]int{}, lat: newHistogram()}
	probe := startHealthProbe(ctx, f.url, c.healthEvery)
	peak := startConnWatch(ctx, f.url, e.pid)

	start := time.Now()
	fl.run(ctx, e.pr)
	res.Seconds = time.Since(start).Seconds()
	res.PerSecond = float64(c.n) / res.Seconds
	res.Answers, res.Upgrade, res.Held = fl.answers, summarize(fl.lat), len(fl.held)
	e.pr.printf("flood: %d attempts in %.1f s: %s; holding %d for %v", c.n, res.Seconds, countsText(fl.answers), len(fl.held), c.hold)
	_ = waitCtx(ctx, c.hold)
	res.PeakConns = peak()
	fl.closeAll()

	rec := fl.recover(ctx)
	res.Recovered, res.Recovery, res.RecTries, res.RecAnswers = rec.ok, rec.seconds, rec.tries, rec.answers
	e.pr.printf("recovery: %v after %.2f s, %d attempts", rec.ok, rec.seconds, rec.tries)
	res.Health = probe()
	if m1, err := scrapeMetrics(ctx, f.url); err == nil {
		res.Refusals = seriesDelta(m0, m1, "herald_connection_refusals_total")
	}
	return output(stdout, f.jsonOut, res, floodRows(res))
}

// checkDescriptors fails when this process may not open need descriptors.
func checkDescriptors(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if uint64(need) > lim.Cur {
		return fmt.Errorf("--connections plus --concurrency need about %d descriptors; the limit is %d (ulimit -n)", need, lim.Cur)
	}
	return nil
}

// flooder runs the attempts. answers, lat and held are guarded by mu.
type flooder struct {
	cfg         floodConfig
	host, token string

	mu      sync.Mutex
	answers map[string]int
	lat     *histogram
	held    []net.Conn
}

// run starts the attempts, paced by the rate and bounded by the concurrency, and waits for all.
func (fl *flooder) run(ctx context.Context, pr *progress) {
	sem := make(chan struct{}, fl.cfg.conc)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < fl.cfg.n && ctx.Err() == nil; i++ {
		if fl.cfg.rate > 0 {
			due := start.Add(time.Duration(float64(i) / fl.cfg.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				_ = waitCtx(ctx, d)
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(src string) {
			defer func() { <-sem; wg.Done() }()
			fl.attempt(ctx, src)
		}(fl.cfg.sources[i%len(fl.cfg.sources)])
		if (i+1)%1000 == 0 {
			pr.printf("flood: %d attempts started", i+1)
		}
	}
	wg.Wait()
}

// attempt makes one upgrade from src and records its answer; an upgraded connection is kept.
func (fl *flooder) attempt(ctx context.Context, src string) {
	t0 := time.Now()
	c, answer := upgradeOnce(ctx, fl.host, fl.token, src, fl.cfg.timeout)
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.answers[answer]++
	if c != nil {
		fl.lat.Record(int64(time.Since(t0)))
		fl.held = append(fl.held, c)
	}
}

// closeAll closes the connections held.
func (fl *flooder) closeAll() {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for _, c := range fl.held {
		_ = c.Close()
	}
	fl.held = nil
}

type recovery struct {
	ok      bool
	seconds float64
	tries   int
	answers map[string]int
}

// recover tries a fresh upgrade every 50 ms, from each source in turn, until one is upgraded.
func (fl *flooder) recover(ctx context.Context) recovery {
	r := recovery{answers: map[string]int{}}
	start := time.Now()
	for time.Since(start) < fl.cfg.recoveryMax && ctx.Err() == nil {
		c, answer := upgradeOnce(ctx, fl.host, fl.token, fl.cfg.sources[r.tries%len(fl.cfg.sources)], fl.cfg.timeout)
		r.tries++
		r.answers[answer]++
		if c != nil {
			_ = c.Close()
			r.ok, r.seconds = true, time.Since(start).Seconds()
			return r
		}
		_ = waitCtx(ctx, 50*time.Millisecond)
	}
	r.seconds = time.Since(start).Seconds()
	return r
}

// wsUpgradeRequest is a bare upgrade of /v1/ws with the credential, no frame behind it.
func wsUpgradeRequest(host, token string) []byte {
	b := make([]byte, 0, 256+len(token))
	b = append(b, "GET /v1/ws HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: aGVyYWxkLWJlbmNoLWtleQ==\r\n"...)
	b = appendAuth(b, token)
	return append(b, "\r\n"...)
}

// upgradeOnce connects from src, asks for an upgrade and reads the answer's head. It returns the
// connection when it was upgraded (101), and the answer: the status code, or the failure's class.
func upgradeOnce(ctx context.Context, host, token, src string, timeout time.Duration) (net.Conn, string) {
	c, err := dialTCP(ctx, host, dialOpts{source: src, timeout: timeout})
	if err != nil {
		return nil, failureClass(err)
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	status, err := upgradeExchange(c, wsUpgradeRequest(host, token))
	if err != nil {
		c.Close()
		return nil, failureClass(err)
	}
	if status != 101 {
		c.Close()
		return nil, fmt.Sprint(status)
	}
	_ = c.SetDeadline(time.Time{})
	return c, "101"
}

// upgradeExchange writes req and reads until the response head is complete. Bytes after the
// head (the first frames) are left unread in the socket.
func upgradeExchange(c net.Conn, req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if status, hn, herr := responseHead(buf); herr != nil || hn > 0 {
			return status, herr
		}
		if err != nil {
			return 0, err
		}
	}
}

// failureClass names why an attempt got no answer: reset, timeout, refused, eof, no-port,
// descriptors, or error.
func failureClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return "eof"
	case isErrno(err, syscall.ECONNRESET) || isErrno(err, syscall.EPIPE):
		return "reset"
	case isErrno(err, syscall.ECONNREFUSED):
		return "refused"
	case isErrno(err, syscall.EADDRNOTAVAIL):
		return "no-port"
	case isErrno(err, syscall.EMFILE) || isErrno(err, syscall.ENFILE):
		return "descriptors"
	case asNetError(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error"
}

func floodRows(r floodResult) [][2]string {
	rec := "NO"
	if r.Recovered {
		rec = fmt.Sprintf("%.2f s (%d attempts)", r.Recovery, r.RecTries)
	}
	return [][2]string{
		{"scenario", fmt.Sprintf("flood, %d upgrade attempts from %d sources", r.Attempts, len(r.Sources))},
		{"attempts", fmt.Sprintf("%.1f s, %.0f/s", r.Seconds, r.PerSecond)},
		{"answers", countsText(r.Answers)},
		{"upgrade latency", r.Upgrade.String()},
		{"held, gateway peak", fmt.Sprintf("%d held, %.0f gateway connections at most", r.Held, r.PeakConns)},
		{"gateway refusals", countsText(roundCounts(r.Refusals))},
		{"healthz", fmt.Sprintf("%s; %d of %d failed", r.Health.Latency, r.Health.Failures, r.Health.Requests)},
		{"recovery", rec},
		{"command", "herald-bench " + strings.Join(r.Args, " ")},
	}
}

// roundCounts turns counter deltas into whole counts for countsText.
func roundCounts(m map[string]float64) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = int(v + 0.5)
	}
	return out
}
