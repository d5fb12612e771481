package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// What the flood watches while it runs: /healthz over a connection of its own, and the
// gateway's connection count.

// startHealthProbe GETs /healthz every interval over one keep-alive connection until the
// returned function is called; that function stops the probe and returns what it saw. A request
// fails when it errs, answers other than 200, or takes longer than two seconds.
func startHealthProbe(ctx context.Context, base string, every time.Duration) func() healthSummary {
	ctx, cancel := context.WithCancel(ctx)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	h := newHistogram()
	var sum healthSummary
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			t0 := time.Now()
			ok := healthOnce(ctx, client, base)
			if ctx.Err() != nil {
				return // the probe was stopped mid-request: not a failure of the gateway
			}
			sum.Requests++
			if ok {
				h.Record(int64(time.Since(t0)))
			} else {
				sum.Failures++
			}
			_ = waitCtx(ctx, every-time.Since(t0))
		}
	}()
	return func() healthSummary {
		cancel()
		<-done
		sum.Latency = summarize(h)
		return sum
	}
}

func healthOnce(ctx context.Context, client *http.Client, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// startConnWatch samples the gateway's connection count every 250 ms until the returned
// function is called; that function returns the largest count seen.
func startConnWatch(ctx context.Context, base string, pid int) func() float64 {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	peak := 0.0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if s := sampleGateway(ctx, base, pid); s.Metrics {
				mu.Lock()
				peak = max(peak, s.Connections)
				mu.Unlock()
			}
			_ = waitCtx(ctx, 250*time.Millisecond)
		}
	}()
	return func() float64 {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// seriesDelta returns, for every series of the metric name in after, how much it grew since
// before, keyed by its labels: the value of a single label (node_full for
// name{reason="node_full"}), else the label list. Series that did not grow are left out.
func seriesDelta(before, after metricSet, name string) map[string]float64 {
	out := map[string]float64{}
	for series, v := range after.series {
		labels, ok := strings.CutPrefix(series, name+"{")
		if !ok {
			continue
		}
		if d := v - before.series[series]; d > 0 {
			out[labelKey(strings.TrimSuffix(labels, "}"))] = d
		}
	}
	return out
}

// labelKey is the value of a single label, unquoted, or the labels as they are.
func labelKey(labels string) string {
	_, v, ok := strings.Cut(labels, "=")
	if !ok || strings.Contains(v, ",") {
		return labels
	}
	if u, err := strconv.Unquote(v); err == nil {
		return u
	}
	return labels
}

func isErrno(err error, no syscall.Errno) bool {
	var e syscall.Errno
	return errors.As(err, &e) && e == no
}

func asNetError(err error, target *net.Error) bool { return errors.As(err, target) }
