package main

import (
	"os"
	"testing"
)

func TestParseGCPercent(t *testing.T) {
	for in, want := range map[string]int{"": 50, "50": 50, "100": 100, "0": 0, "off": -1, "OFF": -1} {
		if got, err := parseGCPercent(in); err != nil || got != want {
			t.Errorf("parseGCPercent(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-5", "fifty", "50%"} {
		if _, err := parseGCPercent(in); err == nil {
			t.Errorf("parseGCPercent(%q) accepted", in)
		}
	}
}

// TestGCPercentDefaultsAndEnvironment: herald's default applies only when GOGC is unset; the
// variable and the flag override it as for every other option.
func TestGCPercentDefaultsAndEnvironment(t *testing.T) {
	t.Setenv("GOGC", "") // restored when the test ends
	os.Unsetenv("GOGC")
	fs, c := serveFlags(nil)
	if err := fs.parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.gcPercent != "50" {
		t.Fatalf("default %q, want 50", c.gcPercent)
	}
	t.Setenv("GOGC", "200")
	fs, c = serveFlags(nil)
	if err := fs.parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.gcPercent != "200" {
		t.Fatalf("from GOGC: %q, want 200", c.gcPercent)
	}
	fs, c = serveFlags(nil)
	if err := fs.parse([]string{"--gc-percent", "off"}); err != nil {
		t.Fatal(err)
	}
	if c.gcPercent != "off" {
		t.Fatalf("flag: %q, want off", c.gcPercent)
	}
}
