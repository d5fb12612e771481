package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pubConfig describes a publishing load: C keep-alive publishers, paced or flat out, for a
// duration or until a number of messages was accepted.
type pubConfig struct {
	url, token, channel string
	conc                int
	rate                float64       // messages per second over all publishers; 0: as fast as accepted
	duration            time.Duration // 0: until count
	count               int64         // stop once this many were accepted; 0: by duration
	pad                 int           // extra bytes of data per message
}

// pubResult is what the publishers saw.
type pubResult struct {
	Accepted uint64
	Statuses map[int]uint64    // answers by HTTP status, 201 included
	Errors   map[string]uint64 // requests that got no answer, by cause
	Lat      *histogram        // request latency (ns), answered requests
	Start    int64             // unix ns of the first send
	End      int64             // unix ns of the last answer
	MaxLag   time.Duration     // paced: how far the sends fell behind the schedule at worst
}

// pubLoad runs the publishers; Accepted is readable while it runs.
type pubLoad struct {
	cfg      pubConfig
	Accepted atomic.Uint64
	Rejected atomic.Uint64 // non-2xx answers and errors
	tickets  atomic.Int64
	seq      atomic.Int64
}

type pubJob struct {
	due int64 // unix ns the send was scheduled for
}

// run publishes until the duration passed or count messages were accepted.
func (pl *pubLoad) run(ctx context.Context) (pubResult, error) {
	cfg := pl.cfg
	var deadline time.Time
	if cfg.duration > 0 {
		deadline = time.Now().Add(cfg.duration)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var jobs chan pubJob
	if cfg.rate > 0 {
		jobs = make(chan pubJob, cfg.conc)
		go pl.schedule(ctx, jobs, deadline)
	}
	parts := make([]pubResult, cfg.conc)
	errs := make([]error, cfg.conc)
	var wg sync.WaitGroup
	for i := range cfg.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i], errs[i] = pl.publisher(ctx, jobs, deadline)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return pubResult{}, err
	}
	return mergePub(parts), nil
}

// schedule hands out sends at the configured rate until the deadline.
func (pl *pubLoad) schedule(ctx context.Context, jobs chan<- pubJob, deadline time.Time) {
	defer close(jobs)
	period := float64(time.Second) / pl.cfg.rate
	start := time.Now()
	for k := 0; ; k++ {
		due := start.Add(time.Duration(float64(k) * period))
		if !deadline.IsZero() && due.After(deadline) {
			return
		}
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		select {
		case jobs <- pubJob{due: due.UnixNano()}:
		case <-ctx.Done():
			return
		}
	}
}

// publisher is one publishing goroutine with its own connection and statistics.
func (pl *pubLoad) publisher(ctx context.Context, jobs <-chan pubJob, deadline time.Time) (pubResult, error) {
	cfg := pl.cfg
	res := pubResult{Statuses: map[int]uint64{}, Errors: map[string]uint64{}, Lat: newHistogram()}
	p, err := newPublisher(cfg.url, cfg.token, cfg.channel, cfg.pad)
	if err != nil {
		return res, err
	}
	defer p.close()
	for ctx.Err() == nil {
		var due int64
		if jobs != nil {
			j, ok := <-jobs
			if !ok {
				break
			}
			due = j.due
		} else if !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		if cfg.count > 0 && pl.tickets.Add(1) > cfg.count {
			break
		}
		status, sent, err := p.publish(pl.seq.Add(1))
		done := time.Now().UnixNano()
		if res.Start == 0 || sent < res.Start {
			res.Start = sent
		}
		res.End = max(res.End, done)
		if due != 0 {
			res.MaxLag = max(res.MaxLag, time.Duration(sent-due))
		}
		if err != nil {
			res.Errors[errCause(err)]++
		} else {
			res.Statuses[status]++
			res.Lat.Record(done - sent)
		}
		if err == nil && status/100 == 2 {
			res.Accepted++
			pl.Accepted.Add(1)
			continue
		}
		pl.Rejected.Add(1)
		if cfg.count > 0 {
			pl.tickets.Add(-1) // try this message again
		}
		if err != nil || status == 429 || status == 503 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return res, nil
}

func mergePub(parts []pubResult) pubResult {
	r := pubResult{Statuses: map[int]uint64{}, Errors: map[string]uint64{}, Lat: newHistogram()}
	for _, p := range parts {
		r.Accepted += p.Accepted
		for k, v := range p.Statuses {
			r.Statuses[k] += v
		}
		for k, v := range p.Errors {
			r.Errors[k] += v
		}
		r.Lat.Merge(p.Lat)
		if p.Start != 0 && (r.Start == 0 || p.Start < r.Start) {
			r.Start = p.Start
		}
		r.End = max(r.End, p.End)
		r.MaxLag = max(r.MaxLag, p.MaxLag)
	}
	return r
}

// errCause names a transport error briefly ("dial: ECONNREFUSED", "read: EOF").
func errCause(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		var errno syscall.Errno
		if errors.As(op.Err, &errno) {
			return op.Op + ": " + errName(errno)
		}
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}
