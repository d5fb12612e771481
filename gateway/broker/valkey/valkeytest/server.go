// Package valkeytest runs real valkey-server processes for tests: a standalone server that can be
// stopped, restarted on the same port with the same data, and frozen with SIGSTOP, and a small
// Valkey Cluster. Nothing is mocked: the tests need the real server's trimming, scripting and
// pub/sub behaviour.
//
// valkey-server and valkey-cli must be on PATH (.ci/install-deps installs them). When they are
// not, the test fails rather than skips, so a CI machine without them cannot pass by running
// nothing.
package valkeytest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING after it was started.
const startTimeout = 10 * time.Second

// Option changes how a server is started.
type Option func(*config)

type config struct {
	appendOnly bool
	cluster    bool
	args       []string
}

// AppendOnly turns on the append-only file with fsync on every write, so a restarted server has
// every write it acknowledged.
func AppendOnly() Option { return func(c *config) { c.appendOnly = true } }

// Args adds raw valkey-server arguments ("--name", "value", ...).
func Args(args ...string) Option { return func(c *config) { c.args = append(c.args, args...) } }

func clusterNode() Option { return func(c *config) { c.cluster = true } }

// Server is one valkey-server process. Its methods may be called from any goroutine.
type Server struct {
	t    testing.TB
	port int
	dir  string
	cfg  config

	mu   sync.Mutex // guards proc and done
	proc *os.Process
	done chan struct{} // closed when proc has exited
}

// StartServer starts a valkey-server on a free port with its data directory in t.TempDir(); the
// process is killed when the test ends.
func StartServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	requireBinaries(t)
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{t: t, dir: t.TempDir(), cfg: cfg}
	t.Cleanup(s.kill)
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		// Another process may take the port between the probe and the server's bind: retry.
		if s.port, err = freePort(cfg.cluster); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("valkeytest: cannot start valkey-server: %v\n%s", err, s.logTail())
	return nil
}

func requireBinaries(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("valkey-server"); err != nil {
		t.Fatal("valkey-server not found: run .ci/install-deps")
	}
	if _, err := exec.LookPath("valkey-cli"); err != nil {
		t.Fatal("valkey-cli not found: run .ci/install-deps")
	}
}

// freePort finds a port that nothing listens on; for a cluster node, port+10000 (its cluster
// bus) must be free too.
func freePort(cluster bool) (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !cluster {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, errors.New("no free port")
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's valkey:// URL.
func (s *Server) URL() string { return "valkey://" + s.Addr() }

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.dir }

func (s *Server) args() []string {
	a := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--dir", s.dir, "--logfile", "valkey.log", "--save", "", "--daemonize", "no",
	}
	if s.cfg.appendOnly {
		a = append(a, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		a = append(a, "--appendonly", "no")
	}
	if s.cfg.cluster {
		a = append(a, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000", "--cluster-require-full-coverage", "no")
	}
	return append(a, s.cfg.args...)
}

func (s *Server) start() error {
	cmd := exec.Command("valkey-server", s.args()...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.proc, s.done = cmd.Process, done
	s.mu.Unlock()
	if err := waitPing(s.Addr(), done); err != nil {
		s.kill()
		return err
	}
	return nil
}

// waitPing polls the server with PING until it answers PONG, the process exits or startTimeout
// passes.
func waitPing(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return errors.New("valkey-server exited")
		default:
		}
		if ping(addr) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("valkey-server at %s did not answer PING within %v", addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Stop shuts the server down with SIGTERM (it writes its append-only file and exits) and waits
// for the process to end.
func (s *Server) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGCONT) // a paused server cannot handle SIGTERM
	s.signal(syscall.SIGTERM)
	if !s.wait(startTimeout) {
		s.t.Fatalf("valkeytest: valkey-server %s did not stop", s.Addr())
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits for the process to end.
func (s *Server) Kill() {
	s.signal(syscall.SIGKILL)
	s.wait(startTimeout)
}

// Start starts a stopped server again on the same port with the same data directory.
func (s *Server) Start() {
	s.t.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the old socket may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("valkeytest: cannot restart valkey-server %s: %v\n%s", s.Addr(), err, s.logTail())
}

// Restart stops the server and starts it again on the same port with the same data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Pause freezes the server with SIGSTOP: connections stay open but nothing is answered.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		_ = p.Signal(sig)
	}
}

func (s *Server) wait(d time.Duration) bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (s *Server) kill() {
	s.signal(syscall.SIGKILL)
	s.wait(startTimeout)
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "valkey.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Do runs one command with valkey-cli against the server and returns its raw output with the
// trailing newline removed. valkey-cli exits 0 on an error reply, so such a reply comes back as
// output ("ERR ..."), not as an error. It is for inspecting the server from tests, not for load.
func (s *Server) Do(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	full := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.port)}, args...)
	out, err := exec.CommandContext(ctx, "valkey-cli", full...).CombinedOutput()
	out = bytes.TrimRight(out, "\n")
	if err != nil {
		return string(out), fmt.Errorf("valkey-cli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustDo is Do that fails the test on an error.
func (s *Server) MustDo(args ...string) string {
	s.t.Helper()
	out, err := s.Do(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}
