package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// workerArg is the hidden subcommand a worker process runs.
const workerArg = "__worker"

// fleet is the coordinator's handle on its workers: in-process with one worker, child
// processes (the bench re-executed) with more.
type fleet struct {
	links    []*workerLink
	children bool // the workers are child processes
}

type workerLink struct {
	enc  *json.Encoder
	dec  *json.Decoder
	stop func() error

	mu   sync.Mutex
	last reply // newest progress line
}

// startFleet starts procs workers.
func startFleet(procs int) (*fleet, error) {
	f := &fleet{}
	if procs <= 1 {
		cmdR, cmdW := io.Pipe()
		repR, repW := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			err := serveWorker(cmdR, repW)
			repW.CloseWithError(errors.Join(err, io.EOF))
		}()
		f.links = append(f.links, &workerLink{
			enc: json.NewEncoder(cmdW), dec: json.NewDecoder(repR),
			stop: func() error { cmdW.Close(); <-done; return nil },
		})
		return f, nil
	}
	f.children = true
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for --procs: %w", err)
	}
	for range procs {
		cmd := exec.Command(exe, workerArg)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			f.close()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			f.close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.close()
			return nil, fmt.Errorf("start worker: %w", err)
		}
		f.links = append(f.links, &workerLink{
			enc: json.NewEncoder(in), dec: json.NewDecoder(bufio.NewReader(out)),
			stop: func() error { in.Close(); return cmd.Wait() },
		})
	}
	return f, nil
}

// do sends each worker its command (build(i)) and waits for all final replies. When show is
// set, it prints the summed progress through pr every second.
func (f *fleet) do(build func(i int) command, pr *progress, show func(sum reply) string) ([]reply, error) {
	out := make([]reply, len(f.links))
	errs := make([]error, len(f.links))
	var wg sync.WaitGroup
	for i, l := range f.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = l.call(build(i))
		}()
	}
	stop := make(chan struct{})
	if show != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					pr.printf("%s", show(f.progressSum()))
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	return out, errors.Join(errs...)
}

// all sends the same command to every worker.
func (f *fleet) all(cmd command) ([]reply, error) {
	return f.do(func(int) command { return cmd }, nil, nil)
}

func (l *workerLink) call(cmd command) (reply, error) {
	if err := l.enc.Encode(cmd); err != nil {
		return reply{}, fmt.Errorf("worker: send %s: %w", cmd.Op, err)
	}
	for {
		var r reply
		if err := l.dec.Decode(&r); err != nil {
			return reply{}, fmt.Errorf("worker: %s: %w", cmd.Op, err)
		}
		if !r.Done {
			l.mu.Lock()
			l.last = r
			l.mu.Unlock()
			continue
		}
		l.mu.Lock()
		l.last = r
		l.mu.Unlock()
		if r.Err != "" {
			return r, errors.New("worker: " + r.Err)
		}
		return r, nil
	}
}

func (f *fleet) progressSum() reply {
	var s reply
	for _, l := range f.links {
		l.mu.Lock()
		s.Synced += l.last.Synced
		s.Failed += l.last.Failed
		s.Received += l.last.Received
		l.mu.Unlock()
	}
	return s
}

// close ends every worker, which closes its connections.
func (f *fleet) close() {
	_, _ = f.all(command{Op: "quit"})
	for _, l := range f.links {
		_ = l.stop()
	}
}

// merge sums the workers' replies of one command.
func merge(rs []reply) (sum reply, lat, catchup *histogram) {
	lat, catchup = newHistogram(), newHistogram()
	sum.Errors, sum.Closes, sum.Resumed = map[string]int{}, map[string]int{}, map[string]int{}
	sum.MinCount = ^uint32(0)
	allDone := true
	for _, r := range rs {
		sum.Synced += r.Synced
		sum.Failed += r.Failed
		sum.Received += r.Received
		sum.Open += r.Open
		sum.Dropped += r.Dropped
		sum.Dups += r.Dups
		sum.Gaps += r.Gaps
		sum.Lost += r.Lost
		sum.LossyClients += r.LossyClients
		sum.Extra += r.Extra
		sum.MinCount = min(sum.MinCount, r.MinCount)
		sum.MaxCount = max(sum.MaxCount, r.MaxCount)
		sum.LastRecv = max(sum.LastRecv, r.LastRecv)
		sum.CPU += r.CPU
		if r.DoneAt == 0 {
			allDone = false
		}
		sum.DoneAt = max(sum.DoneAt, r.DoneAt)
		for k, v := range r.Errors {
			sum.Errors[k] += v
		}
		for k, v := range r.Closes {
			sum.Closes[k] += v
		}
		for k, v := range r.Resumed {
			sum.Resumed[k] += v
		}
		if r.Latency != nil {
			lat.mergeWire(*r.Latency)
		}
		if r.Catchup != nil {
			catchup.mergeWire(*r.Catchup)
		}
	}
	if !allDone {
		sum.DoneAt = 0
	}
	if len(rs) == 0 {
		sum.MinCount = 0
	}
	return sum, lat, catchup
}

// workerCPU is the workers' CPU seconds in rs, or 0 when the only worker runs in the
// coordinator's process (processCPU counts it already).
func (f *fleet) workerCPU(rs []reply) float64 {
	if !f.children {
		return 0
	}
	var s float64
	for _, r := range rs {
		s += r.CPU
	}
	return s
}
