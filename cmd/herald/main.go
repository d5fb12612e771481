// Command herald is the push gateway: `herald serve` runs the gateway and its HTTP API in one
// process; `herald token`, `herald publish` and `herald subscribe` are small clients for trying
// it and for scripts.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=..."; when it is not, init takes
// the module version `go install` recorded (see buildVersion).
var version = "dev"

func init() { version = buildVersion(version, debug.ReadBuildInfo) }

// buildVersion is the version herald reports: the one -ldflags set, else the main module's
// version from the build info (v1.2.3 after `go install ...@v1.2.3`), else "dev". A build in a
// clone records "(devel)" or nothing, which says less than "dev".
func buildVersion(ldflags string, readBuildInfo func() (*debug.BuildInfo, bool)) string {
	if ldflags != "dev" && ldflags != "" {
		return ldflags
	}
	if info, ok := readBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

const usage = `herald: a push gateway. Backends publish to channels over HTTP; browsers and apps
subscribe over WebSocket, Server-Sent Events or long-polling, and resume where they stopped.

Usage:
  herald serve [flags]                    run the gateway (no flags: in-memory broker on :8080)
  herald token [flags]                    mint a JWT for trying things
  herald publish [flags] CHANNEL [DATA]   publish one message (DATA is JSON; "-" or none reads stdin)
  herald subscribe [flags] CHANNEL...     print a channel's messages; resumes after reconnects
  herald version                          print the version

Run "herald COMMAND --help" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command and returns the process's exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "token":
		err = token(args[1:], stdout, stderr)
	case "publish":
		err = publish(ctx, args[1:], stdin, stdout, stderr)
	case "subscribe":
		err = subscribe(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "herald", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "herald: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case err == errHelp:
		return 0
	case err == errUsage:
		return 2
	default:
		fmt.Fprintln(stderr, "herald:", err)
		return 1
	}
}
