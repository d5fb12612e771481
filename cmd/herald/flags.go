package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// errUsage means the flags were wrong; the flag package has already said how.
var errUsage = errors.New("usage")

// errHelp means --help was asked for and printed.
var errHelp = errors.New("help")

// flagSet is a flag.FlagSet whose flags may also come from environment variables. A flag given
// on the command line wins over its variable.
type flagSet struct {
	*flag.FlagSet
	env   map[string]string // flag name -> variable
	given map[string]bool   // flags set on the command line or by their variable, even to ""
}

func newFlagSet(name, summary string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: map[string]string{}, given: map[string]bool{}}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nFlags (each also read from the environment variable shown; the flag wins):\n", summary)
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if name != "" {
				line += " " + name
			}
			fmt.Fprintln(stderr, line)
			fmt.Fprintf(stderr, "      %s\n", strings.ReplaceAll(usage, "\n", "\n      "))
			var extra []string
			if v := fs.env[f.Name]; v != "" {
				extra = append(extra, "env "+v)
			}
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "[]" && f.DefValue != "false" {
				extra = append(extra, "default "+f.DefValue)
			}
			if len(extra) > 0 {
				fmt.Fprintf(stderr, "      (%s)\n", strings.Join(extra, "; "))
			}
		})
	}
	return fs
}

// bindEnv ties flag name to an environment variable.
func (fs *flagSet) bindEnv(name, variable string) { fs.env[name] = variable }

// parse reads args, then fills the flags that were not given from their variables.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	fs.Visit(func(f *flag.Flag) { fs.given[f.Name] = true })
	for name, variable := range fs.env {
		v, ok := os.LookupEnv(variable)
		if !ok || fs.given[name] {
			continue
		}
		fs.given[name] = true
		if lv, isList := fs.Lookup(name).Value.(*listValue); isList {
			lv.setAll(v)
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("%s=%q: %w", variable, v, err)
		}
	}
	return nil
}

// isGiven reports whether flag name was set, on the command line or by its variable, after
// parse: unlike its value, it tells an explicit empty value from an absent one.
func (fs *flagSet) isGiven(name string) bool { return fs.given[name] }

// listValue is a repeatable flag; its variable holds a comma-separated list.
type listValue struct{ items []string }

func (l *listValue) String() string { return strings.Join(l.items, ",") }

func (l *listValue) Set(v string) error {
	l.items = append(l.items, v)
	return nil
}

func (l *listValue) setAll(v string) {
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			l.items = append(l.items, item)
		}
	}
}
