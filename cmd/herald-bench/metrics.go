package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// metricSet is one scrape of a Prometheus text exposition: every series by its full name
// (`name` or `name{labels}`), and the sum of the series of each metric name.
type metricSet struct {
	series map[string]float64
	byName map[string]float64
}

// get returns the sum over every series of a metric name (0 when absent).
func (m metricSet) get(name string) float64 { return m.byName[name] }

// parseMetrics reads the text format: `name{label="value",...} value [timestamp]` lines,
// with # comments. Label values may hold spaces, braces and escaped quotes.
func parseMetrics(r io.Reader) (metricSet, error) {
	m := metricSet{series: map[string]float64{}, byName: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, series, rest, err := splitSeries(line)
		if err != nil {
			return m, fmt.Errorf("metrics line %d: %w", n, err)
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return m, fmt.Errorf("metrics line %d: no value", n)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return m, fmt.Errorf("metrics line %d: value %q: %w", n, fields[0], err)
		}
		m.series[series] = v
		m.byName[name] += v
	}
	return m, sc.Err()
}

// splitSeries cuts a sample line into the metric name, the series (name and labels) and the rest.
func splitSeries(line string) (name, series, rest string, err error) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return "", "", "", errors.New("no value")
	}
	name = line[:i]
	if name == "" {
		return "", "", "", errors.New("no metric name")
	}
	if line[i] != '{' {
		return name, name, line[i:], nil
	}
	inQuote, escaped := false, false
	for j := i + 1; j < len(line); j++ {
		c := line[j]
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == '}' && !inQuote:
			return name, line[:j+1], line[j+1:], nil
		}
	}
	return "", "", "", errors.New("unterminated label set")
}

// scrapeMetrics fetches and parses base + /metrics.
func scrapeMetrics(ctx context.Context, base string) (metricSet, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/metrics", nil)
	if err != nil {
		return metricSet{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return metricSet{}, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return metricSet{}, fmt.Errorf("scrape /metrics: status %d", resp.StatusCode)
	}
	return parseMetrics(resp.Body)
}

// gatewaySample is what the bench reads about the gateway at one moment.
type gatewaySample struct {
	RSS         float64 `json:"rss_bytes"`                // /proc/PID/status VmRSS; 0 without a PID
	HeapInuse   float64 `json:"heap_inuse_bytes"`         // go_memstats_heap_inuse_bytes
	Goroutines  float64 `json:"goroutines"`               // go_goroutines
	CPU         float64 `json:"cpu_seconds"`              // /proc/PID/stat, else process_cpu_seconds_total
	Connections float64 `json:"connections"`              // herald_connections, all transports
	Deliveries  float64 `json:"deliveries_total"`         // herald_deliveries_total
	Published   float64 `json:"published_total"`          // herald_messages_published_total
	SlowCloses  float64 `json:"slow_consumer_closes"`     // herald_slow_consumer_disconnects_total
	At          int64   `json:"at_unix_ns"`               // when it was taken
	Metrics     bool    `json:"metrics_ok"`               // /metrics answered
	ProcOK      bool    `json:"proc_ok"`                  // /proc/PID answered
	MachineBusy float64 `json:"machine_busy_cpu_seconds"` // every process, from /proc/stat
	Err         string  `json:"error,omitempty"`          // why a source failed
	PID         int     `json:"pid,omitempty"`            // the gateway's process, when known
}

// sampleGateway scrapes /metrics and, when pid > 0, /proc/PID.
func sampleGateway(ctx context.Context, base string, pid int) gatewaySample {
	s := gatewaySample{At: time.Now().UnixNano(), PID: pid}
	s.MachineBusy, _, _ = machineCPU()
	m, err := scrapeMetrics(ctx, base)
	if err == nil {
		s.Metrics = true
		s.HeapInuse = m.get("go_memstats_heap_inuse_bytes")
		s.Goroutines = m.get("go_goroutines")
		s.CPU = m.get("process_cpu_seconds_total")
		s.Connections = m.get("herald_connections")
		s.Deliveries = m.get("herald_deliveries_total")
		s.Published = m.get("herald_messages_published_total")
		s.SlowCloses = m.get("herald_slow_consumer_disconnects_total")
	} else {
		s.Err = err.Error()
	}
	if pid > 0 {
		rss, rerr := procRSS(pid)
		cpu, cerr := procCPU(pid)
		if rerr == nil && cerr == nil {
			s.ProcOK = true
			s.RSS, s.CPU = rss, cpu
		} else {
			s.Err = strings.TrimPrefix(s.Err+"; "+errors.Join(rerr, cerr).Error(), "; ")
		}
	}
	return s
}
