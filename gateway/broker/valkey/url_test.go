package valkey

import (
	"errors"
	"slices"
	"testing"

	"github.com/herald-gateway/herald/gateway/broker"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url       string
		addrs     []string
		tls       bool
		masterSet string
		db        int
		user, pw  string
	}{
		{url: "valkey://127.0.0.1:6379", addrs: []string{"127.0.0.1:6379"}},
		{url: "redis://cache", addrs: []string{"cache:6379"}},
		{url: "valkeys://user:secret@cache.example:6380/2", addrs: []string{"cache.example:6380"}, tls: true, db: 2, user: "user", pw: "secret"},
		{url: "rediss://cache.example", addrs: []string{"cache.example:6379"}, tls: true},
		{url: "valkey://a:7000,b:7001,c:7002", addrs: []string{"a:7000", "b:7001", "c:7002"}},
		{url: "valkey://a:7000,b:7001?addr=c:7002", addrs: []string{"a:7000", "b:7001", "c:7002"}},
		{url: "valkey://s1:26379,s2:26379?master_set=mymaster", addrs: []string{"s1:26379", "s2:26379"}, masterSet: "mymaster"},
	}
	for _, tt := range tests {
		opt, err := ParseURL(tt.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.url, err)
			continue
		}
		if !slices.Equal(opt.InitAddress, tt.addrs) || (opt.TLSConfig != nil) != tt.tls ||
			opt.Sentinel.MasterSet != tt.masterSet || opt.SelectDB != tt.db || opt.Username != tt.user || opt.Password != tt.pw {
			t.Errorf("ParseURL(%q) = addrs %v, tls %v, master set %q, db %d, user %q/%q", tt.url,
				opt.InitAddress, opt.TLSConfig != nil, opt.Sentinel.MasterSet, opt.SelectDB, opt.Username, opt.Password)
		}
	}
	for _, bad := range []string{"", "http://cache:6379", "valkey://cache/1/2", "valkey://%zz"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) succeeded", bad)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(t.Context(), Options{URL: "valkey://127.0.0.1:1"}); err == nil {
		t.Error("New without a Handler succeeded")
	}
	if _, err := New(t.Context(), Options{URL: "ftp://x", Handler: newRecorder(t)}); err == nil {
		t.Error("New with a bad URL succeeded")
	}
	if _, err := New(t.Context(), Options{URL: "valkey://127.0.0.1:1", Handler: newRecorder(t)}); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("New with nothing listening: %v, want ErrUnavailable", err)
	}
}
