package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The smoke tests run amplify and flood with tiny numbers against the real `herald serve`.

const smokeSecret = "bench-smoke-secret-0123456789abcdef01234"

var (
	smokeBuild    sync.Once
	smokeBinary   string
	smokeBuildErr error
)

// smokeHerald builds the herald binary once per test run.
func smokeHerald(t *testing.T) string {
	t.Helper()
	smokeBuild.Do(func() {
		dir, err := os.MkdirTemp("", "herald-bench-smoke")
		if err != nil {
			smokeBuildErr = err
			return
		}
		smokeBinary = filepath.Join(dir, "herald")
		out, err := exec.Command("go", "build", "-o", smokeBinary, "github.com/herald-gateway/herald/cmd/herald").CombinedOutput()
		if err != nil {
			smokeBuildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if smokeBuildErr != nil {
		t.Fatal(smokeBuildErr)
	}
	return smokeBinary
}

// smokeServe starts `herald serve` on a free loopback port with the smoke secret and extra
// arguments, and returns its base URL and PID.
func smokeServe(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin := smokeHerald(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin, append([]string{"serve", "--listen", addr, "--jwt-secret", smokeSecret}, args...)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, cmd.Process.Pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald not ready at %s: %v; logs: %s", addr, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// smokeRun runs a herald-bench command with --json and decodes its result into v.
func smokeRun(t *testing.T, v any, args ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append(args, "--json", "--quiet"), &stdout, &stderr); code != 0 {
		t.Fatalf("herald-bench %v: exit %d: %s", args, code, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		t.Fatalf("result: %v: %s", err, stdout.String())
	}
}

func TestSmokeAmplify(t *testing.T) {
	base, pid := smokeServe(t)
	for _, kind := range amplifyCases {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			clients, channels := 3, 2
			var r amplifyResult
			smokeRun(t, &r, "amplify", "--url", base, "--secret", smokeSecret, "--pid", fmt.Sprint(pid),
				"--case", kind, "--clients", fmt.Sprint(clients), "--channels", fmt.Sprint(channels),
				"--messages", "30", "--size", "2000", "--batch", "7",
				"--pause", "100ms", "--settle", "500ms", "--every", "100ms", "--after", "200ms")
			if r.Case != kind || r.Published != 60 || r.Opened != clients || len(r.OpenErrors) != 0 {
				t.Fatalf("case %q, published %d, opened %d, errors %v", r.Case, r.Published, r.Opened, r.OpenErrors)
			}
			h := r.Hold
			if !r.Before.ProcOK || r.Before.RSS <= 0 || h.PeakRSS < r.Before.RSS || h.Samples < 2 || r.AfterClose.RSS <= 0 {
				t.Fatalf("before %+v, hold %+v, after %+v", r.Before, h, r.AfterClose)
			}
			if h.Growth != h.PeakRSS-r.Before.RSS || h.PerClient*float64(clients) != h.Growth {
				t.Fatalf("growth %v, per client %v, peak %v, before %v", h.Growth, h.PerClient, h.PeakRSS, r.Before.RSS)
			}
		})
	}
}

func TestSmokeFlood(t *testing.T) {
	// 4 sources of 4 connections each fit under the node's 20: every refusal is per address.
	base, _ := smokeServe(t, "--max-connections", "20", "--max-connections-per-ip", "4")
	var r floodResult
	smokeRun(t, &r, "flood", "--url", base, "--secret", smokeSecret, "--sources", "127.0.0.2-127.0.0.5",
		"--connections", "40", "--concurrency", "8", "--hold", "100ms", "--health-every", "20ms")
	sum := 0
	for _, n := range r.Answers {
		sum += n
	}
	if sum != r.Attempts || r.Attempts != 40 {
		t.Fatalf("answers %v add up to %d, attempts %d", r.Answers, sum, r.Attempts)
	}
	if r.Answers["101"] != 16 || r.Answers["429"] != 24 || r.Held != 16 {
		t.Fatalf("answers %v, held %d; want 16 upgraded and 24 refused with 429", r.Answers, r.Held)
	}
	// The recovery probe may be refused too while the node still releases the held connections'
	// slots (the janitor does it after the close): the gateway counts those as well.
	if want := 24 + r.RecAnswers["429"]; r.Refusals["address_connections"] != float64(want) {
		t.Fatalf("gateway refusals %v, want address_connections=%d (24 + recovery refusals %v)", r.Refusals, want, r.RecAnswers)
	}
	if !r.Recovered || r.RecTries < 1 {
		t.Fatalf("recovery: %+v", r)
	}
	if r.Health.Failures != 0 || r.Health.Latency.Count != uint64(r.Health.Requests) {
		t.Fatalf("healthz: %+v", r.Health)
	}
}
