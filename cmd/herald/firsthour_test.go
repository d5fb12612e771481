package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests hold the first hour of a new user to what the README and the deploy files say
// (issue 17).

// fhServeFails runs herald serve with args and extra environment, which must make it exit at
// once with an error; it returns what herald wrote to stderr.
func fhServeFails(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldBin, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("herald serve %q with %q: %v (want exit status 1 at once); stderr:\n%s", args, env, err, stderr.String())
	}
	return stderr.String()
}

func TestServeRefusesAnEmptyJWTSecret(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"the variable set to nothing, as an env file's blank", []string{"HERALD_JWT_SECRET="}, nil},
		{"the flag given an empty value", nil, []string{"--jwt-secret", ""}},
		{"even with another credential", []string{"HERALD_JWT_SECRET="}, []string{"--api-key", "backend-key-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr := fhServeFails(t, tc.env, tc.args...)
			if !strings.Contains(stderr, "HERALD_JWT_SECRET) is set but empty") {
				t.Fatalf("stderr does not say the secret is empty:\n%s", stderr)
			}
			if strings.Contains(stderr, "DEVELOPMENT MODE") {
				t.Fatalf("development mode started:\n%s", stderr)
			}
		})
	}
}

func TestServeSaysAuthOnceInItsErrors(t *testing.T) {
	stderr := fhServeFails(t, nil, "--jwt-secret", "too-short")
	if !strings.Contains(stderr, "herald: auth: HMAC secret is 9 bytes") || strings.Contains(stderr, "auth: auth:") {
		t.Fatalf("want one \"auth: \" prefix, stderr:\n%s", stderr)
	}
}

// fhEnvLine is a line of deploy/systemd/herald.env.example that sets a variable, commented out
// or not.
var fhEnvLine = regexp.MustCompile(`^#?([A-Z][A-Z0-9_]*)=`)

func TestEnvExampleListsEveryServeVariable(t *testing.T) {
	f, err := os.Open("../../deploy/systemd/herald.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inFile := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := fhEnvLine.FindStringSubmatch(sc.Text()); m != nil {
			if inFile[m[1]] {
				t.Errorf("the example sets %s twice", m[1])
			}
			inFile[m[1]] = true
		}
	}
	fs, _ := serveFlags(io.Discard)
	for name, variable := range fs.env {
		if !inFile[variable] {
			t.Errorf("the example lacks %s (--%s)", variable, name)
		}
	}
	for variable := range inFile {
		if !slices.Contains(slices.Collect(mapValues(fs.env)), variable) {
			t.Errorf("the example sets %s, which herald serve does not read", variable)
		}
	}
}

// mapValues yields m's values.
func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

func TestSubscribeKeepsControlEventsOffStdout(t *testing.T) {
	addr := freePort(t)
	s := startServer(t, addr, "--shutdown-timeout", "2s")
	s.publish("fh", `{"n":1}`)

	sub := exec.Command(heraldBin, "subscribe", "--url", s.base, "--token", s.sub, "--since", "0", "fh")
	sub.Env = cleanEnv()
	var stdout, stderr lockedBuffer
	sub.Stdout, sub.Stderr = &stdout, &stderr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	waitUntil(t, 5*time.Second, func() bool { return strings.Contains(stdout.String(), `"n":1`) },
		"the message on stdout (stdout: %s, stderr: %s)", stdout.String, stderr.String)

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool { return strings.Contains(stderr.String(), "the server is shutting down") },
		"the shutdown notice on stderr (stdout: %s, stderr: %s)", stdout.String, stderr.String)
	<-s.exited
	for line := range strings.Lines(stdout.String()) {
		if !strings.Contains(line, `"channel":"fh"`) || strings.Contains(line, "herald.") {
			t.Errorf("stdout holds more than messages: %q", line)
		}
	}
}

// fhReadmeCLIBlock is the README's fenced block that starts with the CLI's first command.
func fhReadmeCLIBlock(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)\\*\\*The CLI\\*\\*.*?```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no sh block after **The CLI**")
	}
	return string(m[1])
}

// TestReadmeCLIBlockRunsAsWritten runs the README's CLI block in bash, with the binary on PATH as
// `go install` puts it, and only the port changed (HERALD_LISTEN, HERALD_URL) so that tests may
// run side by side: its publish must reach its subscriber, and nothing may be refused.
func TestReadmeCLIBlockRunsAsWritten(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("the README's block uses openssl")
	}
	block := fhReadmeCLIBlock(t)
	addr := freePort(t)
	cmd := exec.Command("bash", "-c", "set -e\n"+block+"\nwait\n")
	cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(heraldBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HERALD_LISTEN="+addr, "HERALD_URL=http://"+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the block starts background jobs
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	waitUntil(t, 15*time.Second, func() bool {
		return strings.Contains(stdout.String(), `"data":{"hello":"again"}`)
	}, "the block's message printed by its subscriber\nblock:\n%s\nstdout:\n%s\nstderr:\n%s", block, stdout.String, stderr.String)
	if out := stdout.String() + stderr.String(); strings.Contains(out, "401") || strings.Contains(out, "DEVELOPMENT MODE") {
		t.Fatalf("the block was refused or ran in development mode:\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
}

// TestDeployImagesAreFullyQualified holds the Dockerfile's and compose file's base images to
// names with their registry: podman (and Docker with short-name resolution off) does not resolve
// golang:1.26 by itself. A build stage's name and the image compose builds are local names.
func TestDeployImagesAreFullyQualified(t *testing.T) {
	dockerfile, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile("../../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^FROM\s+\S+\s+AS\s+(\S+)`).FindAllStringSubmatch(string(dockerfile), -1) {
		stages[m[1]] = true
	}
	var refs []string
	for _, m := range regexp.MustCompile(`(?m)^FROM\s+(\S+)|--from=(\S+)`).FindAllStringSubmatch(string(dockerfile), -1) {
		refs = append(refs, m[1]+m[2])
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+image:\s*(\S+)`).FindAllStringSubmatch(string(compose), -1) {
		if !strings.HasPrefix(m[1], "herald:") { // built by compose from the Dockerfile
			refs = append(refs, m[1])
		}
	}
	if len(refs) < 4 {
		t.Fatalf("found only %q in deploy/", refs)
	}
	for _, ref := range refs {
		registry, _, hasSlash := strings.Cut(ref, "/")
		if stages[ref] || hasSlash && strings.ContainsAny(registry, ".:") {
			continue
		}
		t.Errorf("image %q is not fully qualified (want registry/namespace/name, e.g. docker.io/library/golang)", ref)
	}
}

// TestSessionsAreLoggedAtDebug: with --log-level debug, a WebSocket and an SSE session each log
// their opening (transport, remote address) and their end with its cause, under one session id.
func TestSessionsAreLoggedAtDebug(t *testing.T) {
	s := startServer(t, freePort(t), "--log-level", "debug")
	c := openWS(t, s, wsOpts{query: s.sub})
	c.conn.Close()
	sse := s.openSSE("channel=logged", "")
	sse.resp.Body.Close()
	for _, transport := range []string{"websocket", "sse"} {
		waitUntil(t, 5*time.Second, func() bool {
			logs := s.logs()
			return strings.Contains(logs, `msg="session opened" session=`) && strings.Contains(logs, "transport="+transport+" remote=127.0.0.1:") &&
				strings.Contains(logs, `msg="session closed"`) && strings.Contains(logs, "transport="+transport+" cause=")
		}, "the %s session's open and close in the debug log: %s", transport, s.logs)
	}
}
