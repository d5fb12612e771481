package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// pubConfig describes a publishing load: C keep-alive publishers, paced or flat out, for a
// duration or until a number of messages was accepted.
type pubConfig struct {
	url, token, channel string
	api                 string // apiHerald (the default) or apiCentrifugo
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

// pubLoops is how many epoll loops share a run's publishers: one. On the 2-core machine, with 64
// publishers flat out, one loop for every CPU cost the bench 40-50% more CPU per request than
// a single loop: each epoll_wait then returns fewer answers, and the loops sleep and wake more.
func pubLoops(conc int) int { return min(conc, 1) }

// run publishes until the duration passed or count messages were accepted.
func (pl *pubLoad) run(ctx context.Context) (pubResult, error) {
	cfg := pl.cfg
	target, err := newPubTarget(cfg.url, cfg.token, cfg.channel, cfg.pad, cfg.api)
	if err != nil {
		return pubResult{}, err
	}
	plan := pubPlan{start: time.Now().UnixNano()}
	if cfg.duration > 0 {
		plan.deadline = plan.start + int64(cfg.duration)
	}
	if cfg.rate > 0 {
		plan.period = float64(time.Second) / cfg.rate
	}
	loops, err := pl.newLoops(target, plan)
	if err != nil {
		return pubResult{}, err
	}
	woken := make(chan struct{})
	stopWaking := context.AfterFunc(ctx, func() {
		defer close(woken)
		for _, l := range loops {
			l.wake()
		}
	})
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(l.run)
	}
	wg.Wait()
	if !stopWaking() {
		<-woken // wake is still writing to the loops' eventfds
	}
	parts := make([]pubResult, len(loops))
	errs := make([]error, len(loops))
	for i, l := range loops {
		l.close()
		parts[i], errs[i] = l.res, l.err
	}
	if err := errors.Join(errs...); err != nil {
		return pubResult{}, err
	}
	return mergePub(parts), nil
}

// newLoops spreads the publishers over pubLoops loops.
func (pl *pubLoad) newLoops(target *pubTarget, plan pubPlan) ([]*pubLoop, error) {
	n := pubLoops(pl.cfg.conc)
	loops := make([]*pubLoop, 0, n)
	for i := range n {
		share := pl.cfg.conc / n
		if i < pl.cfg.conc%n {
			share++
		}
		l, err := newPubLoop(pl, target, plan, share, i, n)
		if err != nil {
			for _, l := range loops {
				l.close()
			}
			return nil, err
		}
		loops = append(loops, l)
	}
	return loops, nil
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
