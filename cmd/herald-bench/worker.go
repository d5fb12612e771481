package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"golang.org/x/sys/unix"
)

// A worker holds a share of the subscriber connections in a few epoll loops and answers the
// coordinator's commands, one JSON line each way (progress lines, then one final line per
// command). With --procs 1 it runs in the coordinator's process over in-memory pipes; otherwise
// the bench re-executes itself as `herald-bench __worker` so that each process stays under the
// open-file limit.

// command is what the coordinator asks of a worker.
type command struct {
	Op string `json:"op"` // connect, reset, progress, wait, stats, drop, resume, quit

	// connect
	URL       string   `json:"url,omitempty"`
	Token     string   `json:"token,omitempty"`
	SSE       bool     `json:"sse,omitempty"`
	From      int      `json:"from,omitempty"` // run-wide numbers [From, To) of this worker's connections
	To        int      `json:"to,omitempty"`
	Channels  []string `json:"channels,omitempty"` // connection i subscribes to Channels[i % len]
	SourceIPs []string `json:"source_ips,omitempty"`
	DialConc  int      `json:"dial_conc,omitempty"`
	Loops     int      `json:"loops,omitempty"`
	ReadTick  int64    `json:"read_tick,omitempty"` // ns; see --read-tick
	Retries   int      `json:"retries,omitempty"`
	Timeout   int64    `json:"timeout,omitempty"` // ns, per connection attempt
	Latency   bool     `json:"latency,omitempty"` // record delivery latency
	// Resume: a subscriber the gateway closes (4008 slow consumer, for one) connects again at
	// once and resumes from its last id, as the SDKs do, instead of counting as lost.
	Resume bool `json:"resume,omitempty"`

	// wait, resume, stats
	Expect  uint32 `json:"expect,omitempty"`   // messages each connection should have
	Start   int64  `json:"start,omitempty"`    // unix ns that catch-up times count from
	WaitFor int64  `json:"wait_for,omitempty"` // ns
}

// reply is a worker's answer; Done marks the final one of a command.
type reply struct {
	Done bool   `json:"done,omitempty"`
	Err  string `json:"err,omitempty"`

	Synced   int64  `json:"synced"`
	Failed   int64  `json:"failed"`
	Received uint64 `json:"received"`
	Open     int    `json:"open,omitempty"`
	Dropped  int    `json:"dropped,omitempty"`

	Dups         uint64         `json:"dups,omitempty"`
	Gaps         uint64         `json:"gaps,omitempty"`
	Lost         uint64         `json:"lost,omitempty"`
	LossyClients int            `json:"lossy_clients,omitempty"`
	Extra        uint64         `json:"extra,omitempty"`
	MinCount     uint32         `json:"min_count,omitempty"`
	MaxCount     uint32         `json:"max_count,omitempty"`
	DoneAt       int64          `json:"done_at,omitempty"`
	LastRecv     int64          `json:"last_recv,omitempty"`
	Errors       map[string]int `json:"errors,omitempty"`
	Closes       map[string]int `json:"closes,omitempty"`
	Resumed      map[string]int `json:"resumed,omitempty"` // with Resume: closes resumed from, by reason
	Latency      *wireHist      `json:"latency,omitempty"`
	Catchup      *wireHist      `json:"catchup,omitempty"`
	CPU          float64        `json:"cpu"` // user+system seconds of the worker's process
}

// worker is the state behind serveWorker.
type worker struct {
	loops []*loop
	out   *json.Encoder
}

// serveWorker reads commands from r and writes replies to w until quit or EOF.
func serveWorker(r io.Reader, w io.Writer) error {
	wk := &worker{out: json.NewEncoder(w)}
	defer wk.shutdown()
	dec := json.NewDecoder(bufio.NewReader(r))
	for {
		var cmd command
		if err := dec.Decode(&cmd); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		rep, err := wk.handle(cmd)
		if err != nil {
			rep = reply{Err: err.Error()}
		}
		rep.Done = true
		rep.CPU = processCPU()
		if err := wk.out.Encode(rep); err != nil {
			return err
		}
		if cmd.Op == "quit" {
			return nil
		}
	}
}

func (wk *worker) handle(cmd command) (reply, error) {
	switch cmd.Op {
	case "connect":
		if err := wk.connect(cmd); err != nil {
			return reply{}, err
		}
		return wk.waitSynced(), nil
	case "reset":
		wk.each(func(l *loop) { l.resetCounts() })
		return reply{}, nil
	case "progress":
		return wk.progress(), nil
	case "wait":
		return wk.wait(cmd), nil
	case "stats":
		return wk.stats(cmd.Expect), nil
	case "drop":
		var rep reply
		wk.each(func(l *loop) { rep.Dropped += l.dropAll() })
		return rep, nil
	case "resume":
		wk.each(func(l *loop) {
			l.resetCounts()
			l.setExpect(cmd.Expect, cmd.Start)
			l.reconnectDropped()
		})
		return wk.waitSynced(), nil
	case "quit":
		return reply{}, nil
	}
	return reply{}, fmt.Errorf("unknown command %q", cmd.Op)
}

// each runs fn on every loop's goroutine, one loop after the other.
func (wk *worker) each(fn func(l *loop)) {
	for _, l := range wk.loops {
		l.call(func() { fn(l) })
	}
}

func (wk *worker) shutdown() {
	for _, l := range wk.loops {
		l.shutdown()
	}
	wk.loops = nil
}

// connect starts the loops (once) and spreads the connections [From, To) over them.
func (wk *worker) connect(cmd command) error {
	if len(wk.loops) == 0 {
		opts, err := dialOptionsOf(cmd)
		if err != nil {
			return err
		}
		n := max(cmd.Loops, 1)
		for range n {
			l, err := newLoop(opts, max(cmd.DialConc/n, 1))
			if err != nil {
				return err
			}
			l.recordLatency = cmd.Latency
			wk.loops = append(wk.loops, l)
			go l.run()
		}
	}
	shares := make([][]int, len(wk.loops))
	for i := cmd.From; i < cmd.To; i++ {
		k := i % len(wk.loops)
		shares[k] = append(shares[k], i)
	}
	channels := cmd.Channels
	for k, l := range wk.loops {
		l.call(func() { l.add(shares[k], func(i int) string { return channels[i%len(channels)] }) })
	}
	return nil
}

// dialOptionsOf resolves the gateway's address and the source addresses.
func dialOptionsOf(cmd command) (*dialOptions, error) {
	u, err := url.Parse(cmd.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want http://host:port", cmd.URL)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	addr, err := net.ResolveTCPAddr("tcp4", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	dst := &unix.SockaddrInet4{Port: addr.Port}
	copy(dst.Addr[:], addr.IP.To4())
	opts := &dialOptions{dst: dst, host: u.Host, token: cmd.Token, sse: cmd.SSE,
		timeout: time.Duration(cmd.Timeout), retries: cmd.Retries, readTick: time.Duration(cmd.ReadTick),
		resume: cmd.Resume}
	if opts.timeout <= 0 {
		opts.timeout = 30 * time.Second
	}
	for _, s := range cmd.SourceIPs {
		ip := net.ParseIP(s).To4()
		if ip == nil {
			return nil, fmt.Errorf("source address %q is not IPv4", s)
		}
		sa := &unix.SockaddrInet4{}
		copy(sa.Addr[:], ip)
		opts.sources = append(opts.sources, sa)
	}
	return opts, nil
}

// waitSynced waits until every connection being dialed is subscribed or given up, reporting
// progress every second.
func (wk *worker) waitSynced() reply {
	var target int64
	wk.each(func(l *loop) {
		for _, c := range l.clients {
			if c.state != stClosed && c.state != stDropped {
				target++
			}
		}
	})
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastProgress := time.Now()
	for range tick.C {
		p := wk.progress()
		if p.Synced+p.Failed >= target {
			break
		}
		if time.Since(lastProgress) >= time.Second {
			lastProgress = time.Now()
			_ = wk.out.Encode(p)
		}
	}
	rep := wk.progress()
	rep.Errors = map[string]int{}
	wk.each(func(l *loop) {
		for k, v := range l.errs {
			rep.Errors[k] += v
		}
	})
	return rep
}

// progress reads the loops' counters without stopping them.
func (wk *worker) progress() reply {
	var r reply
	for _, l := range wk.loops {
		r.Synced += l.synced.Load()
		r.Failed += l.failed.Load()
		r.Received += l.received.Load()
	}
	return r
}

// wait sets the expectation (when cmd.Expect > 0) and waits until every connection has it, or
// cmd.WaitFor passed; it answers the stats.
func (wk *worker) wait(cmd command) reply {
	if cmd.Expect > 0 {
		wk.each(func(l *loop) { l.setExpect(cmd.Expect, cmd.Start) })
	}
	deadline := time.Now().Add(time.Duration(cmd.WaitFor))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastProgress := time.Now()
	for range tick.C {
		done := true
		for _, l := range wk.loops {
			if l.doneAt.Load() == 0 {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		if time.Since(lastProgress) >= time.Second {
			lastProgress = time.Now()
			_ = wk.out.Encode(wk.progress())
		}
	}
	var expect uint32
	wk.each(func(l *loop) { expect = l.expect })
	return wk.stats(expect)
}

// stats gathers every loop's counters; expect, when set, is what each connection should have.
func (wk *worker) stats(expect uint32) reply {
	r := reply{Errors: map[string]int{}, Closes: map[string]int{}, Resumed: map[string]int{}, MinCount: ^uint32(0)}
	lat, catchup := newHistogram(), newHistogram()
	doneAll := true
	wk.each(func(l *loop) {
		r.Synced += l.synced.Load()
		r.Failed += l.failed.Load()
		r.Received += l.received.Load()
		r.Dups += l.dups
		r.Gaps += l.gaps
		r.LastRecv = max(r.LastRecv, l.lastRecv)
		if d := l.doneAt.Load(); d == 0 {
			doneAll = false
		} else {
			r.DoneAt = max(r.DoneAt, d)
		}
		for k, v := range l.errs {
			r.Errors[k] += v
		}
		for k, v := range l.closes {
			r.Closes[k] += v
		}
		for k, v := range l.resumed {
			r.Resumed[k] += v
		}
		lat.Merge(l.lat)
		catchup.Merge(l.catchup)
		for _, c := range l.clients {
			if c.fd >= 0 {
				r.Open++
			}
			r.MinCount = min(r.MinCount, c.count)
			r.MaxCount = max(r.MaxCount, c.count)
			if expect == 0 {
				continue
			}
			if c.count < expect {
				r.Lost += uint64(expect - c.count)
				r.LossyClients++
			} else {
				r.Extra += uint64(c.count - expect)
			}
		}
	})
	if !doneAll {
		r.DoneAt = 0
	}
	if r.MinCount == ^uint32(0) {
		r.MinCount = 0
	}
	lw, cw := lat.wire(), catchup.wire()
	r.Latency, r.Catchup = &lw, &cw
	return r
}

// processCPU returns this process's user+system CPU seconds.
func processCPU() float64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
}

func tvSeconds(tv unix.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}
