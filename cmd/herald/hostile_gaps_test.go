package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gateway/herald/gateway/broker/valkey/valkeytest"
)

// Delivery correctness under attack: a gap is never silent, it says why, and an empty channel
// has one position whatever the transport.

// gapsEvent is what a subscriber saw, in order: a message (id) or a gap notice (reason).
type gapsEvent struct {
	gap    bool
	id     string
	reason string
}

// gapsLog collects a subscriber's events from its reader goroutine.
type gapsLog struct {
	mu     sync.Mutex
	events []gapsEvent
	err    error // why the reader stopped, if it did
}

func (l *gapsLog) add(ev gapsEvent) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *gapsLog) stop(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

func (l *gapsLog) snapshot() ([]gapsEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events), l.err
}

// has reports whether a message with id was seen.
func (l *gapsLog) has(id string) bool {
	evs, _ := l.snapshot()
	return slices.ContainsFunc(evs, func(ev gapsEvent) bool { return !ev.gap && ev.id == id })
}

// gapsSubscribeWS subscribes a WebSocket client of s to channel (live only when since is "") and
// returns the subscribed frame and the log of what follows it.
func gapsSubscribeWS(t *testing.T, s *server, channel, since string) (map[string]any, *gapsLog) {
	t.Helper()
	c := dialWS(t, s, wsOpts{query: s.sub})
	c.readTimeout = 0 // the log's reader waits as long as the test runs
	c.send(subscribeFrame(channel, since))
	subscribed := make(chan map[string]any, 1)
	log := &gapsLog{}
	go func() {
		for {
			m, err := c.readJSON()
			if err != nil {
				log.stop(err)
				return
			}
			switch m["type"] {
			case "subscribed":
				subscribed <- m
			case "message":
				log.add(gapsEvent{id: fmt.Sprint(m["id"])})
			case "gap":
				log.add(gapsEvent{gap: true, reason: fmt.Sprint(m["reason"])})
			case "connected":
			default:
				log.stop(fmt.Errorf("unexpected frame %v", m))
			}
		}
	}()
	select {
	case m := <-subscribed:
		return m, log
	case <-time.After(10 * time.Second):
		t.Fatal("no subscribed frame")
		return nil, nil
	}
}

// gapsOpenSSE opens an SSE stream of s for query and returns the log of its messages and gap
// notices, and the stream's pinned cursor (the id of the id-only event after the replay).
func gapsOpenSSE(t *testing.T, s *server, query string) (*gapsLog, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+"/v1/sse?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+s.sub)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sse: %v %v", err, resp)
	}
	t.Cleanup(func() { resp.Body.Close() })
	log, pinned := &gapsLog{}, make(chan string, 1)
	go func() {
		br := bufio.NewReader(resp.Body)
		var name, id, data string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				log.stop(err)
				return
			}
			field, value, _ := strings.Cut(strings.TrimRight(line, "\n"), ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "event":
				name = value
			case "data":
				data = value
			case "":
				if line != "\n" {
					continue // a comment
				}
				switch {
				case name == "herald.gap":
					var g struct{ Reason string }
					_ = json.Unmarshal([]byte(data), &g)
					log.add(gapsEvent{gap: true, reason: g.Reason})
				case data != "":
					var m struct{ ID string }
					_ = json.Unmarshal([]byte(data), &m)
					log.add(gapsEvent{id: m.ID})
				case id != "":
					select {
					case pinned <- id:
					default:
					}
				}
				name, id, data = "", "", ""
			}
		}
	}()
	select {
	case cursor := <-pinned:
		return log, cursor
	case <-time.After(10 * time.Second):
		t.Fatal("no pinned cursor on the SSE stream")
		return nil, ""
	}
}

// gapsPollAnswer is a long-poll answer.
type gapsPollAnswer struct {
	Messages []struct {
		Channel, ID string
		Data        json.RawMessage
	}
	Cursor    string
	Recovered bool
	Gaps      []struct {
		Channel, Reason string
	}
}

// gapsPoll makes one long-poll request of s.
func gapsPoll(s *server, query string) (gapsPollAnswer, error) {
	var out gapsPollAnswer
	resp, err := http.Get(s.base + "/v1/poll?" + query + "&access_token=" + s.sub)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return out, fmt.Errorf("poll %s: %d %s", query, resp.StatusCode, body)
	}
	return out, json.Unmarshal(body, &out)
}

// cutProxy forwards TCP connections to Valkey until Cut, which ends them all and refuses new
// ones until the restore function it returns is called: a node's link to Valkey going down.
// It is the suite's only proxy; point a node's --valkey-url at url().
type cutProxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex // guards cut and links
	cut   bool
	links map[*cutLink]bool
	wg    sync.WaitGroup
}

// cutLink is one forwarded connection: the node's side and Valkey's.
type cutLink struct {
	node, valkey net.Conn
	down         chan struct{} // closed when Valkey -> node forwarding ended
}

// startCutProxy listens on a loopback port and forwards to target until the test ends.
func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{target: target, ln: ln, links: map[*cutLink]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() string { return "valkey://" + p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		up, err := net.Dial("tcp", p.target)
		if p.cut || err != nil {
			p.mu.Unlock()
			c.Close()
			if up != nil {
				up.Close()
			}
			continue
		}
		l := &cutLink{node: c, valkey: up, down: make(chan struct{})}
		p.links[l] = true
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(up, c)
			up.Close()
		}()
		go func() {
			defer p.wg.Done()
			defer close(l.down)
			_, _ = io.Copy(c, up)
			c.Close()
		}()
		p.mu.Unlock()
	}
}

// Cut ends every forwarded connection and refuses new ones until the returned function is
// called. Answers Valkey has already sent are let through first (for up to 100 ms), so a request
// the test saw Valkey execute is not lost on its way back: the cut falls between requests.
func (p *cutProxy) Cut() (restore func()) {
	p.mu.Lock()
	p.cut = true
	links := p.links
	p.links = map[*cutLink]bool{}
	p.mu.Unlock()
	for l := range links {
		_ = l.node.SetReadDeadline(time.Now()) // nothing more from the node
		_ = l.valkey.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
	for l := range links {
		<-l.down
		l.node.Close()
		l.valkey.Close()
	}
	return func() {
		p.mu.Lock()
		p.cut = false
		p.mu.Unlock()
	}
}

// gapsHistoryReads is how many history reads (history.lua runs read-only) Valkey has served.
func gapsHistoryReads(t *testing.T, v *valkeytest.Server) int {
	t.Helper()
	info := v.MustDo("INFO", "commandstats")
	m := regexp.MustCompile(`cmdstat_evalsha_ro:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// gapsCheckSeen fails t unless evs is before (the ids seen before the cut), one gap notice with
// reason, then a run of the newest ids of rest of at least min, ending with rest's newest: each
// message once, in order, and no hole that no notice announced.
func gapsCheckSeen(t *testing.T, what string, evs []gapsEvent, before, rest []string, reason string, min int) {
	t.Helper()
	if len(evs) < len(before)+1 {
		t.Fatalf("%s: saw %+v; want %d messages, then a gap", what, evs, len(before))
	}
	for i, id := range before {
		if evs[i].gap || evs[i].id != id {
			t.Fatalf("%s: event %d is %+v, want message %s (saw %+v)", what, i, evs[i], id, evs)
		}
	}
	if g := evs[len(before)]; !g.gap || g.reason != reason {
		t.Fatalf("%s: after the %d messages before the cut came %+v; want a gap with reason %s (saw %+v)", what, len(before), g, reason, evs)
	}
	after := evs[len(before)+1:]
	if len(after) < min || len(after) > len(rest) {
		t.Fatalf("%s: %d messages after the gap; want the newest %d to %d of what followed (saw %+v)", what, len(after), min, len(rest), evs)
	}
	tail := rest[len(rest)-len(after):]
	for i, ev := range after {
		if ev.gap || ev.id != tail[i] {
			t.Fatalf("%s: after the gap, event %d is %+v, want message %s: a hole or a duplicate (saw %+v)", what, i, ev, tail[i], evs)
		}
	}
}

// TestHostileLiveGapLinkLost: two herald nodes on one Valkey, history 10, subscribers on node B
// over WebSocket, SSE and long-poll. B's link to Valkey is cut while node A publishes 30
// messages, then restored. Every subscriber on B is told of the gap (reason link_lost) before
// the messages that follow it; none is left with a silent hole.
func TestHostileLiveGapLinkLost(t *testing.T) {
	v := valkeytest.StartServer(t)
	px := startCutProxy(t, v.Addr())
	a := startNode(t, v.URL(), "--history-size", "10")
	b := startNode(t, px.url(), "--history-size", "10")
	const ch = "gaps:live"

	_, wsLog := gapsSubscribeWS(t, b, ch, "")
	sseLog, _ := gapsOpenSSE(t, b, "channel="+ch)
	waitUntil(t, 5*time.Second, func() bool {
		var info struct{ Subscribers int }
		getJSON(t, b, "/v1/channels/"+ch, b.sub, &info)
		return info.Subscribers == 2
	}, "both subscribers on node B")
	var before []string
	for i := range 3 {
		before = append(before, a.publish(ch, strconv.Itoa(i)))
	}
	waitUntil(t, 5*time.Second, func() bool { return wsLog.has(before[2]) && sseLog.has(before[2]) },
		"node B's subscribers receive the first messages")
	first, err := gapsPoll(b, "channel="+ch+"&since=0&timeout=0")
	if err != nil || len(first.Messages) != 3 {
		t.Fatalf("first poll %+v, %v", first, err)
	}

	// A long-poll waiting on node B when the link goes: once Valkey has answered its read, it
	// waits for news without touching the broker, as the other two subscribers do.
	reads := gapsHistoryReads(t, v)
	type pollResult struct {
		answers []gapsPollAnswer
		err     error
	}
	polled := make(chan pollResult, 1)
	go func() { // until the message "end"
		var res pollResult
		for cursor, done := first.Cursor, false; !done; {
			ans, err := gapsPoll(b, "channel="+ch+"&since="+cursor+"&timeout=30")
			if err != nil {
				res.err = err
				break
			}
			res.answers = append(res.answers, ans)
			cursor = ans.Cursor
			for _, m := range ans.Messages {
				done = done || string(m.Data) == `"end"`
			}
		}
		polled <- res
	}()
	waitUntil(t, 5*time.Second, func() bool { return gapsHistoryReads(t, v) > reads }, "the long-poll's read of the log")

	restore := px.Cut()
	var during []string
	for i := range 30 {
		during = append(during, a.publish(ch, strconv.Itoa(100+i)))
	}
	restore()
	after := []string{a.publish(ch, "200"), a.publish(ch, "201")}
	rest := append(slices.Clone(during), after...)
	last := after[len(after)-1]
	waitUntil(t, 15*time.Second, func() bool { return wsLog.has(last) && sseLog.has(last) },
		"node B's subscribers receive what followed the outage")
	rest = append(rest, a.publish(ch, `"end"`))
	res := <-polled

	wsEvents, _ := wsLog.snapshot()
	gapsCheckSeen(t, "WebSocket", wsEvents, before, rest, "link_lost", 10)
	sseEvents, _ := sseLog.snapshot()
	gapsCheckSeen(t, "SSE", sseEvents, before, rest, "link_lost", 10)
	if res.err != nil {
		t.Fatalf("long-poll: %v (answers so far %+v)", res.err, res.answers)
	}

	var pollEvents []gapsEvent
	for _, id := range before {
		pollEvents = append(pollEvents, gapsEvent{id: id})
	}
	for _, ans := range res.answers {
		for _, g := range ans.Gaps {
			if g.Channel != ch {
				t.Fatalf("long-poll gap %+v", g)
			}
			pollEvents = append(pollEvents, gapsEvent{gap: true, reason: g.Reason})
		}
		if len(ans.Gaps) > 0 == ans.Recovered {
			t.Fatalf("long-poll answer %+v: recovered must be false exactly with gaps", ans)
		}
		for _, m := range ans.Messages {
			pollEvents = append(pollEvents, gapsEvent{id: m.ID})
		}
	}
	gapsCheckSeen(t, "long-poll", pollEvents, before, rest, "link_lost", 10)
}

// gapsPositions is where every transport of s says an empty channel stands.
func gapsPositions(t *testing.T, s *server, ch string) map[string]string {
	t.Helper()
	pos := map[string]string{}
	live, _ := gapsSubscribeWS(t, s, ch, "")
	pos["WebSocket subscribed last_id"] = fmt.Sprint(live["last_id"])
	all, _ := gapsSubscribeWS(t, s, ch, "0")
	pos["WebSocket subscribed since=0 last_id"] = fmt.Sprint(all["last_id"])
	_, pos["SSE cursor"] = gapsOpenSSE(t, s, "channel="+ch)
	_, pos["SSE since=0 cursor"] = gapsOpenSSE(t, s, "channel="+ch+"&since=0")
	_, two := gapsOpenSSE(t, s, "channel="+ch+"&channel="+ch+".other&since=0,0")
	pos["SSE two-channel cursor slot"], _, _ = strings.Cut(two, ",")
	for _, q := range []string{"", "&since=0"} {
		ans, err := gapsPoll(s, "channel="+ch+"&timeout=0"+q)
		if err != nil {
			t.Fatal(err)
		}
		pos["long-poll cursor"+q] = ans.Cursor
	}
	var info struct {
		LastID string `json:"last_id"`
	}
	getJSON(t, s, "/v1/channels/"+ch, s.sub, &info)
	pos["channel info last_id"] = info.LastID
	for _, q := range []string{"", "?since=0"} {
		var page struct{ Next string }
		getJSON(t, s, "/v1/channels/"+ch+"/messages"+q, s.sub, &page)
		pos["history next"+q] = page.Next
	}
	return pos
}

// TestHostileEmptyChannelOnePosition: an empty channel has one position, the broker's epoch
// (not 0-0, which would hide a restart), on every transport and with both brokers; resuming
// from it is exact.
func TestHostileEmptyChannelOnePosition(t *testing.T) {
	v := valkeytest.StartServer(t)
	for _, tc := range []struct {
		name string
		node func(t *testing.T) *server
	}{
		{"memory", func(t *testing.T) *server { return startNode(t, "") }},
		{"valkey", func(t *testing.T) *server { return startNode(t, v.URL()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.node(t)
			ch := "gaps:empty:" + tc.name
			pos := gapsPositions(t, s, ch)
			epoch := pos["WebSocket subscribed last_id"]
			if epoch == "0-0" || !regexp.MustCompile(`^[1-9][0-9]*-[0-9]+$`).MatchString(epoch) {
				t.Fatalf("an empty channel's position is %q; want the broker's epoch (all: %v)", epoch, pos)
			}
			for what, p := range pos {
				if p != epoch {
					t.Errorf("%s is %q; every transport should say %q (all: %v)", what, p, epoch, pos)
				}
			}
			// The epoch is a position: resuming from it gets what came since, complete.
			id := s.publish(ch, `1`)
			m, log := gapsSubscribeWS(t, s, ch, epoch)
			if m["recovered"] != true {
				t.Fatalf("resume from the epoch: %v", m)
			}
			waitUntil(t, 5*time.Second, func() bool { return log.has(id) }, "the message published after the epoch")
			ans, err := gapsPoll(s, "channel="+ch+"&timeout=0&since="+epoch)
			if err != nil || !ans.Recovered || len(ans.Messages) != 1 || ans.Messages[0].ID != id {
				t.Fatalf("long-poll from the epoch: %+v, %v", ans, err)
			}
		})
	}
}

// TestHostileSubscribeCLISaysWhy: herald subscribe resuming from a position of a memory broker
// that is gone (the process restarted) reports the gap as a broker reset, not as trimming.
func TestHostileSubscribeCLISaysWhy(t *testing.T) {
	before := startNode(t, "")
	id := before.publish("gaps:cli", `1`)
	before.cmd.Process.Kill()
	<-before.exited
	after := startNode(t, "") // a new process: its memory broker lost the old log

	sub := exec.Command(heraldBin, "subscribe", "--url", after.base, "--token", after.sub, "--since", id, "gaps:cli")
	sub.Env = cleanEnv()
	var stderr lockedBuffer
	sub.Stderr = &stderr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Process.Kill(); _ = sub.Wait() })
	waitUntil(t, 5*time.Second, func() bool { return strings.Contains(stderr.String(), "gap in gaps:cli") },
		"herald subscribe reports the gap (stderr: %s)", stderr.String)
	if got := stderr.String(); !strings.Contains(got, "(broker_reset)") || strings.Contains(got, "trimmed") {
		t.Fatalf("herald subscribe said %q; want the broker_reset reason", got)
	}
}
