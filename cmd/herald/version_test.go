package main

import (
	"runtime/debug"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	info := func(v string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Path: "github.com/herald-gateway/herald", Version: v}}, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, tc := range []struct {
		name, ldflags string
		read          func() (*debug.BuildInfo, bool)
		want          string
	}{
		{"ldflags win over the module version", "v9.9.9", info("v1.2.3"), "v9.9.9"},
		{"go install of a tagged version", "dev", info("v1.2.3"), "v1.2.3"},
		{"go install of a commit", "dev", info("v0.0.0-20261203120000-abcdef123456"), "v0.0.0-20261203120000-abcdef123456"},
		{"a build in a clone", "dev", info("(devel)"), "dev"},
		{"no module version", "dev", info(""), "dev"},
		{"no build info", "dev", none, "dev"},
		{"ldflags without build info", "v2.0.0", none, "v2.0.0"},
	} {
		if got := buildVersion(tc.ldflags, tc.read); got != tc.want {
			t.Errorf("%s: buildVersion(%q) = %q, want %q", tc.name, tc.ldflags, got, tc.want)
		}
	}
}
