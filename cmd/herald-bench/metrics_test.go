package main

import (
	"strings"
	"testing"
)

const exposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 48
# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
go_memstats_heap_inuse_bytes 3.842048e+06
process_cpu_seconds_total 12.34
herald_connections{transport="poll"} 0
herald_connections{transport="sse"} 2000
herald_connections{transport="websocket"} 15000
herald_disconnects_total{reason="a } tricky\" value"} 7 1732700000000
weird_metric{a="x y",b="{z}"} +Inf
nan_metric NaN

herald_deliveries_total 1.5e+06
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"go_goroutines":                48,
		"go_memstats_heap_inuse_bytes": 3842048,
		"process_cpu_seconds_total":    12.34,
		"herald_connections":           17000, // summed over transports
		"herald_disconnects_total":     7,
		"herald_deliveries_total":      1.5e6,
		"absent":                       0,
	} {
		if got := m.get(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := m.series[`herald_connections{transport="sse"}`]; got != 2000 {
		t.Errorf("sse series = %v", got)
	}
	if _, ok := m.series[`weird_metric{a="x y",b="{z}"}`]; !ok {
		t.Errorf("label values with spaces and braces not parsed: %v", m.series)
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for _, bad := range []string{"novalue\n", `x{a="b" 1` + "\n", "x notanumber\n", "{a=\"b\"} 1\n"} {
		if _, err := parseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestProcParsers(t *testing.T) {
	rss, err := parseVmRSS([]byte("Name:\therald\nVmPeak:\t  99999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"))
	if err != nil || rss != 20480*1024 {
		t.Errorf("VmRSS = %v, %v", rss, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("missing VmRSS: no error")
	}
	// Field 2 may hold spaces and parentheses; utime and stime are fields 14 and 15.
	stat := "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 123 456 789"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 3.0 {
		t.Errorf("stat CPU = %v, %v; want 3.0", cpu, err)
	}
}

func TestMachineCPU(t *testing.T) {
	busy, total, err := parseMachineCPU([]byte("cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil || busy != 1.6 || total != 9.8 {
		t.Errorf("busy %v total %v err %v; want 1.6 and 9.8", busy, total, err)
	}
}

func TestSourceIPsAndRedaction(t *testing.T) {
	ips, err := parseSourceIPs("127.0.0.1-127.0.0.3,127.0.0.9")
	if err != nil || strings.Join(ips, " ") != "127.0.0.1 127.0.0.2 127.0.0.3 127.0.0.9" {
		t.Errorf("parseSourceIPs = %v, %v", ips, err)
	}
	for _, bad := range []string{"127.0.0.3-127.0.0.1", "x", "127.0.0.1-127.0.1.1"} {
		if _, err := parseSourceIPs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	got := strings.Join(redactArgs([]string{"fanout", "--token", "abc", "--secret=s3", "-n", "5", "-token=x"}), " ")
	if want := "fanout --token <redacted> --secret=<redacted> -n 5 -token=<redacted>"; got != want {
		t.Errorf("redactArgs = %s, want %s", got, want)
	}
}
