package broker

import (
	"strings"
	"testing"
)

func TestValidChannel(t *testing.T) {
	for _, name := range []string{
		"a", "orders:42", "chat:lobby", "user@example.com", "a/b/c", "k=v+w", "A-Z_0.9",
		"_.:@/=+-", strings.Repeat("x", MaxChannelLen),
	} {
		if !ValidChannel(name) {
			t.Errorf("ValidChannel(%q) = false, want true", name)
		}
	}
	for _, name := range []string{
		"", strings.Repeat("x", MaxChannelLen+1), "a b", " a", "a\n", "{a}", "a{", "a}", "a*", "*",
		"a,b", "a#b", "a?b", "a%20b", "a\"b", "a\\b", "a'b", "é", "a\x00", "a\tb",
	} {
		if ValidChannel(name) {
			t.Errorf("ValidChannel(%q) = true, want false", name)
		}
	}
}

// TestValidChannelBytes checks every byte value on its own: exactly [A-Za-z0-9_.:@/=+-] pass.
func TestValidChannelBytes(t *testing.T) {
	const allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/=+-"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(allowed, byte(c)) >= 0
		if got := ValidChannel(string([]byte{byte(c)})); got != want {
			t.Errorf("ValidChannel(%q) = %v, want %v", byte(c), got, want)
		}
		if got := ValidChannel("ok" + string([]byte{byte(c)}) + "ok"); got != want {
			t.Errorf("ValidChannel with %q inside = %v, want %v", byte(c), got, want)
		}
	}
}

func TestValidEvent(t *testing.T) {
	for _, name := range []string{"status", "a", "a.b:c-d_e", "Order.Created", strings.Repeat("e", MaxEventLen)} {
		if !ValidEvent(name) {
			t.Errorf("ValidEvent(%q) = false, want true", name)
		}
	}
	for _, name := range []string{
		"", strings.Repeat("e", MaxEventLen+1), "a b", "a/b", "a@b", "a+b", "a=b", "a\n", "é", "a{b}",
	} {
		if ValidEvent(name) {
			t.Errorf("ValidEvent(%q) = true, want false", name)
		}
	}
}

// FuzzValidChannel checks the promise the encoders rely on: a valid name never needs escaping.
func FuzzValidChannel(f *testing.F) {
	for _, s := range []string{"orders:42", "", "a b", "{x}", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidChannel(s) {
			return
		}
		if len(s) == 0 || len(s) > MaxChannelLen || strings.ContainsAny(s, "{}* \"\\\r\n%?#") {
			t.Fatalf("ValidChannel(%q) = true for a name that needs escaping", s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x21 || s[i] > 0x7e {
				t.Fatalf("ValidChannel(%q) = true with byte %#x", s, s[i])
			}
		}
	})
}
