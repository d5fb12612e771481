package herald

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadmeQuickStart runs the README's two programs as written (only the address changed)
// against a real gateway: the subscriber prints what the publisher stored.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	var pubSrc, subSrc string
	for _, b := range blocks {
		switch {
		case strings.Contains(b[1], "NewPublisher(") && strings.Contains(b[1], "func main()"):
			pubSrc = b[1]
		case strings.Contains(b[1], "NewClient(") && strings.Contains(b[1], "func main()"):
			subSrc = b[1]
		}
	}
	if pubSrc == "" || subSrc == "" {
		t.Fatal("the README lacks the publish or the subscribe program")
	}
	g := startGateway(t)
	build := func(name, src string) string {
		dir := t.TempDir()
		file := filepath.Join(dir, "main.go")
		if err := os.WriteFile(file, []byte(strings.ReplaceAll(src, "http://localhost:8080", g.url())), 0o644); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, name)
		// Built from inside this module, so the program imports this very SDK.
		if out, err := exec.Command("go", "build", "-o", bin, file).CombinedOutput(); err != nil {
			t.Fatalf("the README's %s program does not build: %v\n%s", name, err, out)
		}
		return bin
	}
	pubBin, subBin := build("publish", pubSrc), build("subscribe", subSrc)

	sub := exec.Command(subBin)
	sub.Env = append(os.Environ(), "HERALD_TOKEN="+mint(t, time.Hour, []string{"orders:*"}, nil))
	out, _ := sub.StdoutPipe()
	var subErr syncBuffer
	sub.Stderr = &subErr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Process.Kill()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		return subscribers(g.url(), "orders:42", 1)
	})

	pub := exec.Command(pubBin)
	pub.Env = append(os.Environ(), "HERALD_API_KEY="+testAPIKey)
	pubOut, err := pub.CombinedOutput()
	if err != nil {
		t.Fatalf("publish program: %v\n%s", err, pubOut)
	}
	id := strings.TrimSpace(strings.TrimPrefix(string(pubOut), "stored as"))
	select {
	case line := <-lines:
		if line != id+" status shipped" {
			t.Fatalf("the subscriber printed %q, want %q", line, id+" status shipped")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the subscriber printed nothing; stderr:\n%s", subErr.String())
	}
	sub.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- sub.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the subscriber did not exit cleanly on Ctrl-C: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the subscriber did not exit on Ctrl-C")
	}
}

// subscribers checks the gateway's subscriber count for channel.
func subscribers(baseURL, channel string, want int) error {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, baseURL+"/v1/channels/"+channel, nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var info struct{ Subscribers int }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return err
	}
	if info.Subscribers != want {
		return fmt.Errorf("%d subscribers, want %d", info.Subscribers, want)
	}
	return nil
}
