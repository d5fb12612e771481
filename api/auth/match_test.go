package auth

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, channel string
		want             bool
	}{
		{"*", "orders:42", true},
		{"*", "a", true},
		{"*", "", true},
		{"chat:*", "chat:lobby", true},
		{"chat:*", "chat:", true},
		{"chat:*", "chat:a:b/c", true},
		{"chat:*", "chat", false},
		{"chat:*", "chats:lobby", false},
		{"chat:*", "xchat:lobby", false},
		{"orders:42", "orders:42", true},
		{"orders:42", "orders:420", false},
		{"orders:42", "orders:4", false},
		{"orders:42", "Orders:42", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abbbc", true},
		{"a*b*c", "acb", false},
		{"a*b*c", "abcx", false},
		{"a*b*c", "ab", false},
		{"*:42", "orders:42", true},
		{"*:42", "orders:421", false},
		{"users/*/inbox", "users/7/inbox", true},
		{"users/*/inbox", "users/7/8/inbox", true},
		{"users/*/inbox", "users//inbox", true},
		{"users/*/inbox", "users/7/outbox", false},
		{"a/b", "a/b", true},
		{"**", "anything", true},
		{"a**b", "ab", true},
		{"*a", "banana", true},
		{"*an*an*", "banana", true},
		{"*ana*ana*", "banana", false},
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
		{"?", "a", false}, // only '*' is special
		{"?", "?", true},
		{"[ab]", "a", false},
		{"[ab]", "[ab]", true},
		{"orders.*", "orders.1", true},
		{"orders.*", "ordersX1", false}, // '.' is literal
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.channel); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.channel, got, tt.want)
		}
	}
}

// globRegexp is Match's definition written as a regular expression, the oracle for FuzzMatch.
func globRegexp(pattern string) *regexp.Regexp {
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`)
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"a*b*c", "aXbYc"}, {"*", ""}, {"chat:*", "chat:x"}, {"*ana*ana*", "banana"}, {"x", "y"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, channel string) {
		// The oracle works on UTF-8 text; Match works on bytes, which agree on valid UTF-8.
		if !utf8.ValidString(pattern) || !utf8.ValidString(channel) {
			return
		}
		if got, want := Match(pattern, channel), globRegexp(pattern).MatchString(channel); got != want {
			t.Fatalf("Match(%q, %q) = %v, regexp says %v", pattern, channel, got, want)
		}
	})
}

func TestClaimsPermissions(t *testing.T) {
	c := &Claims{Subscribe: []string{"orders:42", "chat:*"}, Publish: []string{"chat:*"}}
	for _, tt := range []struct {
		channel        string
		subscribe, pub bool
	}{
		{"orders:42", true, false},
		{"orders:43", false, false},
		{"chat:lobby", true, true},
		{"admin", false, false},
	} {
		if got := c.CanSubscribe(tt.channel); got != tt.subscribe {
			t.Errorf("CanSubscribe(%q) = %v", tt.channel, got)
		}
		if got := c.CanPublish(tt.channel); got != tt.pub {
			t.Errorf("CanPublish(%q) = %v", tt.channel, got)
		}
	}

	none := &Claims{Subject: "nobody"}
	if none.CanSubscribe("a") || none.CanPublish("a") {
		t.Error("claims without patterns allow something")
	}
	var nilClaims *Claims
	if nilClaims.CanSubscribe("a") || nilClaims.CanPublish("a") {
		t.Error("nil claims allow something")
	}
	key := &Claims{APIKey: true}
	if !key.CanSubscribe("anything:at/all") || !key.CanPublish("x") {
		t.Error("API key claims do not allow everything")
	}
}

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Match("tenant:*:orders:*", "tenant:acme:orders:1732700000000")
	}
}
