package valkeytest

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerKeepsDataAcrossRestart(t *testing.T) {
	s := StartServer(t, AppendOnly())
	s.MustDo("SET", "k", "v")
	s.Restart()
	if got := s.MustDo("GET", "k"); got != "v" {
		t.Fatalf("GET k after restart = %q", got)
	}
	s.Kill()
	s.Start()
	if got := s.MustDo("GET", "k"); got != "v" {
		t.Fatalf("GET k after kill and start = %q (appendfsync always)", got)
	}
}

func TestServerPauseResume(t *testing.T) {
	s := StartServer(t)
	s.Pause()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("a paused server answered PING")
	}
	s.Resume()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

// fatalTB records a Fatal instead of ending the test.
type fatalTB struct {
	testing.TB
	msg string
}

type fatalled struct{}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(fatalled{})
}

func TestMissingServerFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != (fatalled{}) {
				panic(r)
			}
		}()
		StartServer(f)
	}()
	if !strings.Contains(f.msg, "valkey-server not found: run .ci/install-deps") {
		t.Fatalf("without valkey-server on PATH: %q", f.msg)
	}
}
