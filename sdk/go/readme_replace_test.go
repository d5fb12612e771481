package herald

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeReplaceDirective follows the README's "Using it from a clone" in a scratch module
// outside this repository: its go mod edit line, with this repository as the clone, must give a
// module whose program imports the SDK and builds. It needs no network: the module cache holds
// the SDK's dependencies after this module's own build.
func TestReadmeReplaceDirective(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a scratch module")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go mod edit (.*)$`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("the README has no go mod edit line")
	}
	clone, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		// GOFLAGS=-mod=mod: this repository's own GOFLAGS must not leak in; GOPROXY=off: the
		// cache this module's build filled is enough, so the test stays off the network.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("mod", "init", "example.com/app")
	edit := strings.Fields(strings.ReplaceAll(string(m[1]), "=../herald", "="+clone))
	run(append([]string{"mod", "edit"}, edit...)...)
	src := "package main\n\nimport herald \"github.com/herald-gateway/herald/sdk/go\"\n\n" +
		"func main() { _, _ = herald.NewPublisher(\"http://localhost:8080\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// The clone's go.sum vouches for the dependencies' hashes, as sum.golang.org would.
	sums, err := os.ReadFile(filepath.Join(clone, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sums, 0o644); err != nil {
		t.Fatal(err)
	}
	// go build -mod=mod (GOFLAGS above) adds what the program needs, as the README's go mod tidy
	// does; tidy would also want the dependencies' test dependencies, which the cache lacks.
	run("build", "-o", filepath.Join(dir, "app"), ".")
}
