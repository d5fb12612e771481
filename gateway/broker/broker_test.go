package broker

import (
	"testing"
	"time"
)

func TestRetentionPolicyFor(t *testing.T) {
	small := Retention{Size: 10, TTL: time.Minute}
	smaller := Retention{Size: 2, TTL: time.Second}
	p := RetentionPolicy{
		Default: DefaultRetention,
		Rules: []RetentionRule{
			{Prefix: "chat:", Retention: small},
			{Prefix: "chat:typing:", Retention: smaller},
		},
	}
	for _, tc := range []struct {
		channel string
		want    Retention
	}{
		{"orders:42", DefaultRetention},
		{"chat", DefaultRetention},
		{"chat:", small},
		{"chat:lobby", small},
		{"chat:typing:7", smaller}, // the longest prefix wins, whatever the rule order
	} {
		if got := p.For(tc.channel); got != tc.want {
			t.Errorf("For(%q) = %+v, want %+v", tc.channel, got, tc.want)
		}
	}
	reversed := RetentionPolicy{Default: DefaultRetention, Rules: []RetentionRule{p.Rules[1], p.Rules[0]}}
	if got := reversed.For("chat:typing:7"); got != smaller {
		t.Errorf("reversed rules: For = %+v, want %+v", got, smaller)
	}
}

func TestRetentionWithDefaults(t *testing.T) {
	in := RetentionPolicy{
		Default: Retention{TTL: time.Minute},
		Rules:   []RetentionRule{{Prefix: "a:", Retention: Retention{Size: 5}}},
	}
	got := in.WithDefaults()
	if got.Default != (Retention{Size: DefaultRetention.Size, TTL: time.Minute}) {
		t.Errorf("Default = %+v", got.Default)
	}
	if got.Rules[0].Retention != (Retention{Size: 5, TTL: time.Minute}) {
		t.Errorf("rule = %+v", got.Rules[0].Retention)
	}
	if in.Rules[0].TTL != 0 {
		t.Error("WithDefaults changed the caller's rules")
	}
	if d := (RetentionPolicy{}).WithDefaults().Default; d != DefaultRetention {
		t.Errorf("zero policy: Default = %+v", d)
	}
}
