package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

// These tests run the real binary, as a user would after reading the README.

var heraldBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-e2e")
	if err != nil {
		panic(err)
	}
	heraldBin = filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-o", heraldBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building herald: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running `herald serve`.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	sub    string // dev subscriber token
	pub    string // dev publisher token
	stdout lockedBuffer
	stderr lockedBuffer
	exited chan error
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer runs herald serve on addr with args and waits until it is ready.
func startServer(t *testing.T, addr string, args ...string) *server {
	t.Helper()
	return startServerUnder(t, nil, addr, args...)
}

// startServerUnder is startServer with the binary run under prefix, a command and its
// arguments (prlimit with a descriptor limit, say); nil runs it directly.
func startServerUnder(t *testing.T, prefix []string, addr string, args ...string) *server {
	t.Helper()
	s := &server{t: t, base: "http://" + addr, exited: make(chan error, 1)}
	argv := append(append(slices.Clone(prefix), heraldBin, "serve", "--listen", addr), args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = cleanEnv()
	stdout, _ := s.cmd.StdoutPipe()
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		io.Copy(&s.stdout, stdout)
		s.exited <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
	waitUntil(t, 10*time.Second, func() bool {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, "herald ready at %s (stderr: %s)", addr, s.logs)
	if devModeArgs(args) {
		// The banner is written before the first request is served, but reaches s.stdout
		// through a pipe and a copying goroutine.
		waitUntil(t, 5*time.Second, func() bool { return strings.Contains(s.banner(), "PUB=") },
			"the development banner (stdout: %s)", s.banner)
	}
	out := s.banner()
	if m := regexp.MustCompile(`SUB=(\S+)`).FindStringSubmatch(out); m != nil {
		s.sub = m[1]
	}
	if m := regexp.MustCompile(`PUB=(\S+)`).FindStringSubmatch(out); m != nil {
		s.pub = m[1]
	}
	return s
}

// devModeArgs reports whether herald serve runs in development mode with args: no credential
// configured, so it prints a banner with tokens.
func devModeArgs(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "--jwt") || strings.HasPrefix(a, "--jwks") || strings.HasPrefix(a, "--api-key") {
			return false
		}
	}
	return true
}

// logs is what herald wrote to stderr so far.
func (s *server) logs() string { return s.stderr.String() }

// banner is what herald wrote to stdout so far.
func (s *server) banner() string { return s.stdout.String() }

// cleanEnv keeps the environment but drops HERALD_* variables a developer may have set.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	return env
}

// lockedBuffer is a buffer a process writes to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			for i, a := range args {
				if f, ok := a.(func() string); ok {
					args[i] = f()
				}
			}
			t.Fatalf("timed out waiting: "+format, args...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) publish(channel, data string) string {
	s.t.Helper()
	req, _ := http.NewRequest("POST", s.base+"/v1/channels/"+channel+"/messages", strings.NewReader(`{"data":`+data+`}`))
	req.Header.Set("Authorization", "Bearer "+s.pub)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 || json.Unmarshal(body, &out) != nil || out.ID == "" {
		s.t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	return out.ID
}

// sseStream reads events the way EventSource does.
type sseStream struct {
	resp *http.Response
	br   *bufio.Reader
	last string
}

type event struct{ name, data, id string }

func (s *server) openSSE(query, lastEventID string) *sseStream {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.base+"/v1/sse?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+s.sub)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		s.t.Fatalf("sse: %v %v", err, resp)
	}
	st := &sseStream{resp: resp, br: bufio.NewReader(resp.Body)}
	s.t.Cleanup(func() { resp.Body.Close() })
	return st
}

func (st *sseStream) next(t *testing.T) event {
	t.Helper()
	var ev event
	var data []string
	timer := time.AfterFunc(5*time.Second, func() { st.resp.Body.Close() })
	defer timer.Stop()
	for {
		line, err := st.br.ReadString('\n')
		if err != nil {
			t.Fatalf("sse read: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		if line == "" {
			if len(data) > 0 {
				ev.data, ev.id = strings.Join(data, "\n"), st.last
				return ev
			}
			ev = event{}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			st.last = value
		case "event":
			ev.name = value
		case "data":
			data = append(data, value)
		}
	}
}

func messageID(t *testing.T, data string) string {
	var m struct{ ID string }
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("data %q: %v", data, err)
	}
	return m.ID
}

func TestReadmeTour(t *testing.T) {
	s := startServer(t, freePort(t))
	// Step 1: with no configuration the banner prints tokens and curl lines, marked as development-only.
	for _, want := range []string{"DEVELOPMENT MODE", "curl -N", "/v1/sse?channel=demo", "/v1/channels/demo/messages"} {
		if !strings.Contains(s.banner(), want) {
			t.Fatalf("banner lacks %q:\n%s", want, s.banner())
		}
	}
	if s.sub == "" || s.pub == "" {
		t.Fatal("no tokens in the banner")
	}

	// Step 2: curl -N the SSE endpoint, POST a message, see it arrive.
	sse := s.openSSE("channel=demo", "")
	time.Sleep(100 * time.Millisecond)
	id := s.publish("demo", `{"hello":"world"}`)
	if ev := sse.next(t); messageID(t, ev.data) != id || !strings.Contains(ev.data, `"hello":"world"`) {
		t.Fatalf("event %+v", ev)
	}

	// Step 3: WebSocket with an auth frame, subscribe with since: missed messages, then live ones.
	c := dialWS(t, s, wsOpts{})
	send := func(v string) { c.send([]byte(v)) }
	recv := c.nextJSON
	send(`{"type":"auth","token":"` + s.sub + `"}`)
	if m := recv(); m["type"] != "connected" {
		t.Fatalf("%v", m)
	}
	send(`{"type":"subscribe","id":1,"channel":"demo","since":"0"}`)
	if m := recv(); m["type"] != "subscribed" || m["recovered"] != true {
		t.Fatalf("%v", m)
	}
	if m := recv(); m["id"] != id {
		t.Fatalf("missed message %v, want %s", m, id)
	}
	live := s.publish("demo", `"live"`)
	if m := recv(); m["id"] != live {
		t.Fatalf("live %v", m)
	}

	// Step 4: stop the SSE client, publish three, reconnect with Last-Event-ID: exactly those three.
	if ev := sse.next(t); messageID(t, ev.data) != live {
		t.Fatalf("sse live %+v", ev)
	}
	last := sse.last
	sse.resp.Body.Close()
	var missed []string
	for i := range 3 {
		missed = append(missed, s.publish("demo", fmt.Sprint(i)))
	}
	resumed := s.openSSE("channel=demo", last)
	for _, want := range missed {
		if got := messageID(t, resumed.next(t).data); got != want {
			t.Fatalf("resumed %s, want %s", got, want)
		}
	}
	next := s.publish("demo", `"after"`)
	if got := messageID(t, resumed.next(t).data); got != next {
		t.Fatalf("after resume %s, want %s (a duplicate or a gap)", got, next)
	}
}

func TestGapWhenLastEventIDIsOlderThanHistory(t *testing.T) {
	s := startServer(t, freePort(t), "--history-size", "10")
	old := s.publish("feed", `0`)
	for i := range 50 {
		s.publish("feed", fmt.Sprint(i))
	}
	st := s.openSSE("channel=feed", old)
	if ev := st.next(t); ev.name != "herald.gap" {
		t.Fatalf("first event %+v, want herald.gap", ev)
	}
}

func TestSIGTERMDrainsWithGoingAway(t *testing.T) {
	s := startServer(t, freePort(t), "--shutdown-timeout", "5s")
	c := dialWS(t, s, wsOpts{query: s.sub})
	c.within(10 * time.Second) // the first frame, and the close after SIGTERM
	if m, err := c.readJSON(); err != nil || m["type"] != "connected" {
		t.Fatalf("first frame %v %v", m, err)
	}
	// A long-poll in flight must not hold the shutdown back.
	polled := make(chan int, 1)
	go func() {
		resp, err := http.Get(s.base + "/v1/poll?channel=quiet&timeout=30&access_token=" + s.sub)
		if err != nil {
			polled <- 0
			return
		}
		resp.Body.Close()
		polled <- resp.StatusCode
	}()
	time.Sleep(200 * time.Millisecond)
	signalled := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	_, err := c.readJSON()
	if d := time.Since(signalled); d > 3*time.Second {
		t.Fatalf("the close came %v after SIGTERM", d)
	}
	select {
	case code := <-polled:
		if code != 200 {
			t.Fatalf("long-poll during shutdown: status %d", code)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the long-poll was not answered at shutdown")
	}
	var closed wsutil.ClosedError
	if !errors.As(err, &closed) || closed.Code != 1001 || !strings.HasPrefix(closed.Reason, "reconnect_after_ms=") {
		t.Fatalf("after SIGTERM: %v\n%s", err, s.logs())
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.logs())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("herald did not exit after SIGTERM")
	}
}

func TestCLITokenPublishSubscribe(t *testing.T) {
	secret := "cli-test-secret-0123456789abcdefghij"
	addr := freePort(t)
	startServer(t, addr, "--jwt-secret", secret)
	mint := func(args ...string) string {
		out, err := exec.Command(heraldBin, append([]string{"token", "--secret", secret}, args...)...).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	subTok, pubTok := mint("--subscribe", "news:*"), mint("--publish", "news:*")

	sub := exec.Command(heraldBin, "subscribe", "--url", "http://"+addr, "--token", subTok, "--since", "0", "news:today")
	sub.Env = cleanEnv()
	out, _ := sub.StdoutPipe()
	var subErr bytes.Buffer
	sub.Stderr = &subErr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Process.Kill()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	pubOut, err := exec.Command(heraldBin, "publish", "--url", "http://"+addr, "--token", pubTok, "--event", "headline", "news:today", `{"title":"hello"}`).CombinedOutput()
	if err != nil || !strings.Contains(string(pubOut), `"id"`) {
		t.Fatalf("publish: %v %s", err, pubOut)
	}
	select {
	case line := <-lines:
		if !strings.Contains(line, `"title":"hello"`) || !strings.Contains(line, `"event":"headline"`) {
			t.Fatalf("subscribe printed %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("subscribe printed nothing; stderr: %s", subErr.String())
	}
	// A forbidden publish fails with the server's reason.
	bad, err := exec.Command(heraldBin, "publish", "--url", "http://"+addr, "--token", subTok, "news:today", `1`).CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "403") {
		t.Fatalf("forbidden publish: %v %s", err, bad)
	}
}

// TestServeHelpExplainsEveryOption: every flag of herald serve, taken from its flag set (so a
// new flag cannot be forgotten here), is in --help with a usage text and its environment
// variable, and in the README's flag table.
func TestServeHelpExplainsEveryOption(t *testing.T) {
	out, err := exec.Command(heraldBin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v", err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	fs, _ := serveFlags(io.Discard)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		env := fs.env[f.Name]
		switch {
		case env == "":
			t.Errorf("--%s has no environment variable", f.Name)
		case strings.TrimSpace(f.Usage) == "":
			t.Errorf("--%s has no usage text", f.Name)
		case !regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(f.Name) + `\b`).Match(out):
			t.Errorf("serve --help lacks --%s", f.Name)
		case !strings.Contains(string(out), "env "+env):
			t.Errorf("serve --help lacks %s for --%s", env, f.Name)
		case !strings.Contains(string(readme), "`--"+f.Name+"`") || !strings.Contains(string(readme), "`"+env):
			t.Errorf("the README's flag table lacks --%s or %s", f.Name, env)
		}
	})
	if n < 30 {
		t.Fatalf("only %d flags visited", n)
	}
}
