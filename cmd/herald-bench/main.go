// Command herald-bench is herald's load generator: idle connections, fan-out, publish
// throughput and reconnect storms against a running gateway.
//
// Its subscribers are light: non-blocking sockets in a few epoll loops per process, with no
// goroutine or buffer per connection, spread over worker processes (--procs) to stay under the
// open-file limit, and over several loopback source addresses (--source-ips) when ephemeral
// ports run short. Publishers are keep-alive HTTP/1.1 connections written by hand, driven by one
// epoll loop in this process: a request costs it about one write and one read.
//
// Results print as a table, or as one JSON object with --json; progress goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

type subcommand struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var subcommands = []subcommand{
	{"idle", "open N idle subscribers and report the gateway's memory and goroutines per connection", runIdle},
	{"fanout", "N subscribers on one channel, publish at R msg/s: delivery latency, loss, CPU per delivery", runFanout},
	{"publish", "C keep-alive publishers for T seconds: accepted publishes/s and request latency", runPublish},
	{"storm", "N subscribers drop at once, M messages are published, all resume at once: time to catch up", runStorm},
	{"amplify", "N clients ask for a large backlog and never read: the gateway's RSS growth per client", runAmplify},
	{"flood", "N upgrade attempts from several addresses: answers by status, /healthz latency, recovery", runFlood},
}

// errUsage means the arguments were wrong and the flag package has said so.
var errUsage = errors.New("usage")

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerArg {
		if err := serveWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "herald-bench worker:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, sc := range subcommands {
		if sc.name != args[0] {
			continue
		}
		err := sc.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "herald-bench %s: %v\n", sc.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "herald-bench: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "herald-bench: load generator for herald.\n\nUsage: herald-bench COMMAND [flags]\n\nCommands:")
	for _, sc := range subcommands {
		fmt.Fprintf(w, "  %-8s %s\n", sc.name, sc.summary)
	}
	fmt.Fprintln(w, "\n`herald-bench COMMAND --help` lists a command's flags. Point it at a gateway with --url and\n"+
		"a token (--token, or --secret to mint one from the gateway's HMAC secret).")
}

// parseFlags parses a subcommand's flags; it turns extra arguments into a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s takes no arguments, got %q\n", fs.Name(), fs.Args())
		return errUsage
	}
	return nil
}

// newFlagSet makes a subcommand's flag set whose --help starts with what the command does.
func newFlagSet(name, doc string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("herald-bench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald-bench %s [flags]\n\n%s\n\nFlags:\n", name, doc)
		fs.PrintDefaults()
	}
	return fs
}
