package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

const amplifyDoc = `Memory amplification by clients that do not read: fill K channels with M messages of S bytes
(batch publish), then open N clients that each ask for the whole backlog and never read their
sockets (a small SO_RCVBUF keeps the kernel from absorbing it). Reports the gateway's RSS before,
its peak while the clients hold on, the growth per client, and its RSS a while after they close.

Cases: ws (subscribe with since=0 on channel i % K), sse (one stream of all K channels resumed
from 0), poll (one long-poll of all K channels from 0), history (GET
/v1/channels/{c}/messages?limit=1000 on channel i % K). RSS comes from /proc/PID (--pid, or
found from --url's port when the gateway is local). Start a fresh gateway for each case: the
history of earlier runs stays in its memory.`

// amplifyCases are the ways a client asks for a backlog.
var amplifyCases = []string{"ws", "sse", "poll", "history"}

type amplifyResult struct {
	Scenario    string        `json:"scenario"`
	Args        []string      `json:"args"`
	Machine     machine       `json:"machine"`
	Case        string        `json:"case"`
	Clients     int           `json:"clients"`
	Channels    int           `json:"channels"`
	Messages    int           `json:"messages_per_channel"`
	Size        int           `json:"message_bytes"`
	Published   int           `json:"published"`
	FillSeconds float64       `json:"fill_seconds"`
	Opened      int           `json:"clients_opened"`
	OpenErrors  []string      `json:"open_errors,omitempty"`
	RcvBuf      int           `json:"client_rcvbuf_bytes"`
	Before      gatewaySample `json:"before"`
	Hold        rssSummary    `json:"hold"`
	AfterClose  gatewaySample `json:"after_close"`
	AfterWait   float64       `json:"after_close_seconds"`
	Returned    float64       `json:"returned_fraction"` // of the growth, given back after the close
	SlowCloses  float64       `json:"slow_consumer_closes"`
}

// rssSummary is what the samples taken while the clients held on show.
type rssSummary struct {
	Samples         int     `json:"samples"`
	Seconds         float64 `json:"seconds"`
	PeakRSS         float64 `json:"peak_rss_bytes"`
	PeakHeap        float64 `json:"peak_heap_inuse_bytes"`
	PeakConnections float64 `json:"peak_connections"`
	Growth          float64 `json:"rss_growth_bytes"`
	PerClient       float64 `json:"rss_growth_per_client_bytes"`
}

// amplifyConfig is one run's settings, checked.
type amplifyConfig struct {
	kind                       string
	clients, channels, msgs    int
	size, batch, rcvBuf        int
	pause                      time.Duration
	settle, every, after, wait time.Duration
}

func runAmplify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("amplify", amplifyDoc, stderr)
	f := addCommonFlags(fs, false)
	var c amplifyConfig
	fs.StringVar(&c.kind, "case", "ws", "how the clients ask for the backlog: "+strings.Join(amplifyCases, ", "))
	fs.IntVar(&c.clients, "clients", 20, "clients that do not read")
	fs.IntVar(&c.channels, "channels", 1, "channels filled (sse, poll: every client asks for all of them)")
	fs.IntVar(&c.msgs, "messages", 1000, "messages per channel (at most the gateway's --history-size and --replay-cap)")
	fs.IntVar(&c.size, "size", 60000, "bytes of data per message (a JSON string, quotes included; at most --max-message-bytes)")
	fs.IntVar(&c.batch, "batch", 20, "messages per POST /v1/messages while filling")
	fs.IntVar(&c.rcvBuf, "rcvbuf", 64<<10, "SO_RCVBUF of each client socket, set before connect")
	fs.DurationVar(&c.pause, "pause", time.Second, "wait this long after the fill before measuring \"before\" (the fill's request buffers settle)")
	fs.DurationVar(&c.settle, "settle", 10*time.Second, "how long the clients hold on, the gateway's RSS sampled all along")
	fs.DurationVar(&c.every, "every", 250*time.Millisecond, "sampling interval while the clients hold on")
	fs.DurationVar(&c.after, "after", 10*time.Second, "measure the RSS this long after the clients closed")
	fs.DurationVar(&c.wait, "connect-timeout", 10*time.Second, "time one client may take to connect and send its request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	e, err := f.resolve(stderr)
	if err != nil {
		return err
	}
	if e.pid == 0 {
		return fmt.Errorf("no gateway PID: give --pid (amplify is about the gateway's RSS)")
	}
	res := amplifyResult{Scenario: "amplify", Args: redactArgs(os.Args[1:]), Machine: thisMachine(), Case: c.kind,
		Clients: c.clients, Channels: c.channels, Messages: c.msgs, Size: c.size, RcvBuf: c.rcvBuf}
	if g := sampleGateway(ctx, f.url, e.pid); !g.Metrics {
		return fmt.Errorf("gateway not reachable: %s", g.Err)
	}
	names := make([]string, c.channels)
	run := runName()
	for i := range names {
		names[i] = fmt.Sprintf("bench:amplify:%s:%d", run, i)
	}
	start := time.Now()
	if res.Published, err = fillChannels(ctx, f.url, e.token, names, c.msgs, c.size, c.batch); err != nil {
		return err
	}
	res.FillSeconds = time.Since(start).Seconds()
	e.pr.printf("filled %d channels with %d messages of %d bytes in %.1f s", c.channels, c.msgs, c.size, res.FillSeconds)
	// Let the fill's request buffers settle before "before", so that they are not counted as growth.
	_ = waitCtx(ctx, c.pause)
	res.Before = sampleGateway(ctx, f.url, e.pid)

	conns, errs := openAmplifiers(ctx, f.url, e.token, names, c)
	res.Opened, res.OpenErrors = len(conns), errs
	e.pr.printf("%d/%d %s clients sent their request and read nothing; holding for %v", len(conns), c.clients, c.kind, c.settle)
	samples := holdSampling(ctx, e, c.settle, c.every)
	res.Hold = summarizeHold(res.Before.RSS, samples, len(conns))
	for _, cn := range conns {
		_ = cn.SetLinger(0) // a reset, as a client that goes away with unread data sends anyway
		_ = cn.Close()
	}
	e.pr.printf("closed the clients; measuring again in %v", c.after)
	afterStart := time.Now()
	_ = waitCtx(ctx, c.after)
	res.AfterClose = sampleGateway(ctx, f.url, e.pid)
	res.AfterWait = time.Since(afterStart).Seconds()
	res.Returned = returnedFraction(res.Before.RSS, res.Hold.PeakRSS, res.AfterClose.RSS)
	res.SlowCloses = res.AfterClose.SlowCloses - res.Before.SlowCloses
	return output(stdout, f.jsonOut, res, amplifyRows(res))
}

func (c *amplifyConfig) check() error {
	known := false
	for _, k := range amplifyCases {
		known = known || k == c.kind
	}
	switch {
	case !known:
		return fmt.Errorf("--case %q: use one of %s", c.kind, strings.Join(amplifyCases, ", "))
	case c.clients <= 0 || c.channels <= 0 || c.msgs <= 0 || c.batch <= 0:
		return fmt.Errorf("--clients, --channels, --messages and --batch must be positive")
	case c.size < 2:
		return fmt.Errorf("--size must be at least 2 (the quotes of the JSON string)")
	case c.every <= 0 || c.settle < c.every:
		return fmt.Errorf("--every must be positive and --settle at least --every")
	}
	return nil
}

// holdSampling samples the gateway every interval for d.
func holdSampling(ctx context.Context, e *env, d, every time.Duration) []gatewaySample {
	var out []gatewaySample
	deadline := time.Now().Add(d)
	for {
		s := sampleGateway(ctx, e.f.url, e.pid)
		out = append(out, s)
		if len(out)%max(1, int(time.Second/every)) == 0 {
			e.pr.printf("hold: rss %s heap %s connections %.0f", bytesText(s.RSS), bytesText(s.HeapInuse), s.Connections)
		}
		if time.Now().Add(every).After(deadline) || ctx.Err() != nil {
			return out
		}
		_ = waitCtx(ctx, every)
	}
}

// summarizeHold finds the peaks of the samples and the RSS growth over before, per client.
func summarizeHold(before float64, samples []gatewaySample, clients int) rssSummary {
	var s rssSummary
	s.Samples = len(samples)
	if len(samples) == 0 {
		return s
	}
	s.Seconds = float64(samples[len(samples)-1].At-samples[0].At) / 1e9
	s.PeakRSS = before
	for _, g := range samples {
		s.PeakRSS = max(s.PeakRSS, g.RSS)
		s.PeakHeap = max(s.PeakHeap, g.HeapInuse)
		s.PeakConnections = max(s.PeakConnections, g.Connections)
	}
	s.Growth = s.PeakRSS - before
	if clients > 0 {
		s.PerClient = s.Growth / float64(clients)
	}
	return s
}

// returnedFraction is the share of the growth (peak - before) that the RSS gave back by after:
// 1 when it is back at before, 0 when it stayed at the peak. It is 1 without growth.
func returnedFraction(before, peak, after float64) float64 {
	if peak <= before {
		return 1
	}
	return (peak - after) / (peak - before)
}

func amplifyRows(r amplifyResult) [][2]string {
	h := r.Hold
	rows := [][2]string{
		{"scenario", fmt.Sprintf("amplify %s, %d clients, %d channels x %d messages of %s", r.Case, r.Clients, r.Channels, r.Messages, bytesText(float64(r.Size)))},
		{"filled", fmt.Sprintf("%d messages in %.1f s", r.Published, r.FillSeconds)},
		{"clients opened", fmt.Sprintf("%d of %d (SO_RCVBUF %s); errors: %s", r.Opened, r.Clients, bytesText(float64(r.RcvBuf)), errorsText(r.OpenErrors))},
		{"gateway RSS before", bytesText(r.Before.RSS)},
		{"peak while held", fmt.Sprintf("RSS %s, heap %s, %.0f connections (%d samples over %.1f s)", bytesText(h.PeakRSS), bytesText(h.PeakHeap), h.PeakConnections, h.Samples, h.Seconds)},
		{"growth", fmt.Sprintf("%s, %s per client", bytesText(h.Growth), bytesText(h.PerClient))},
		{"RSS after close", fmt.Sprintf("%s after %.1f s (%.0f%% of the growth given back)", bytesText(r.AfterClose.RSS), r.AfterWait, 100*r.Returned)},
		{"slow-consumer closes", fmt.Sprintf("%.0f", r.SlowCloses)},
		{"command", "herald-bench " + strings.Join(r.Args, " ")},
	}
	return rows
}

// errorsText joins errors, "none" when there are none.
func errorsText(errs []string) string {
	if len(errs) == 0 {
		return "none"
	}
	return strings.Join(errs, "; ")
}

// openAmplifiers opens the clients of the case: each connects with a small receive buffer,
// writes its request and is never read. It returns the connections that got their request out
// and the errors of the others.
func openAmplifiers(ctx context.Context, base, token string, channels []string, c amplifyConfig) ([]*net.TCPConn, []string) {
	host := strings.TrimPrefix(base, "http://")
	var conns []*net.TCPConn
	var errs []string
	for i := range c.clients {
		req := amplifyRequest(c.kind, host, token, channels, i)
		cn, err := dialTCP(ctx, host, dialOpts{rcvBuf: c.rcvBuf, timeout: c.wait})
		if err == nil {
			_ = cn.SetWriteDeadline(time.Now().Add(c.wait))
			if _, err = cn.Write(req); err != nil {
				cn.Close()
			}
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		conns = append(conns, cn)
	}
	return conns, errs
}

// amplifyRequest is client i's request for the whole backlog.
func amplifyRequest(kind, host, token string, channels []string, i int) []byte {
	ch := channels[i%len(channels)]
	switch kind {
	case "ws":
		return wsRequest(host, token, ch, "0", clientMask)
	case "history":
		return getRequest(host, token, "/v1/channels/"+url.PathEscape(ch)+"/messages?limit=1000")
	}
	zeros := strings.TrimSuffix(strings.Repeat("0,", len(channels)), ",")
	q := channelQuery(channels) + "&since=" + zeros
	if kind == "sse" {
		return getRequest(host, token, "/v1/sse?"+q)
	}
	return getRequest(host, token, "/v1/poll?"+q+"&timeout=0")
}

// channelQuery is channel=a&channel=b..., query-escaped.
func channelQuery(channels []string) string {
	parts := make([]string, len(channels))
	for i, ch := range channels {
		parts[i] = "channel=" + url.QueryEscape(ch)
	}
	return strings.Join(parts, "&")
}
