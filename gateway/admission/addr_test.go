package admission

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func mustPrefixes(t testing.TB, items ...string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(items)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientAddr(t *testing.T) {
	trusted := mustPrefixes(t, "10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.7")
	cases := []struct {
		name, remote string
		headers      map[string][]string
		want         string
	}{
		{"untrusted peer, header ignored", "203.0.113.9:4000", map[string][]string{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.9"},
		{"untrusted peer, Forwarded ignored", "203.0.113.9:4000", map[string][]string{"Forwarded": {"for=1.2.3.4"}}, "203.0.113.9"},
		{"trusted peer, no header", "10.1.2.3:80", nil, "10.1.2.3"},
		{"trusted peer, one hop", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"forged left part is skipped", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1"}}, "198.51.100.1"},
		{"trusted hops skipped", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"198.51.100.1, 10.9.9.9, 192.0.2.7"}}, "198.51.100.1"},
		{"every hop trusted: leftmost", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"10.2.2.2, 10.3.3.3"}}, "10.2.2.2"},
		{"several header lines in order", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"6.6.6.6", "198.51.100.1, 10.3.3.3"}}, "198.51.100.1"},
		{"garbage hop: the proxy that wrote it", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"6.6.6.6, garbage, 10.4.4.4"}}, "10.4.4.4"},
		{"garbage right after the peer", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"unknown"}}, "10.1.2.3"},
		{"empty elements", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {" , 198.51.100.1 ,,"}}, "198.51.100.1"},
		{"xff with port", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"198.51.100.1:5555"}}, "198.51.100.1"},
		{"xff ipv6 brackets", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"[2001:db8::1]"}}, "2001:db8::1"},
		{"xff ipv6 brackets and port", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"[2001:db8::1]:443"}}, "2001:db8::1"},
		{"xff mapped ipv4", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"::ffff:198.51.100.1"}}, "198.51.100.1"},
		{"xff zone refused", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"fe80::1%eth0"}}, "10.1.2.3"},
		{"xff wins over Forwarded", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}, "Forwarded": {"for=6.6.6.6"}}, "198.51.100.1"},
		{"forwarded", "10.1.2.3:80", map[string][]string{"Forwarded": {"for=198.51.100.1;proto=https;by=10.1.2.3"}}, "198.51.100.1"},
		{"forwarded case and spaces", "10.1.2.3:80", map[string][]string{"Forwarded": {"proto=http; For = 198.51.100.1"}}, "198.51.100.1"},
		{"forwarded quoted ipv6 with port", "10.1.2.3:80", map[string][]string{"Forwarded": {`for="[2001:db8:cafe::17]:4711"`}}, "2001:db8:cafe::17"},
		{"forwarded chain", "10.1.2.3:80", map[string][]string{"Forwarded": {"for=6.6.6.6, for=198.51.100.1, for=10.5.5.5"}}, "198.51.100.1"},
		{"forwarded comma inside quotes", "10.1.2.3:80", map[string][]string{"Forwarded": {`for=198.51.100.1;x="a,b"`}}, "198.51.100.1"},
		{"forwarded unknown", "10.1.2.3:80", map[string][]string{"Forwarded": {"for=unknown"}}, "10.1.2.3"},
		{"forwarded obfuscated", "10.1.2.3:80", map[string][]string{"Forwarded": {"for=6.6.6.6, for=_hidden"}}, "10.1.2.3"},
		{"forwarded without for", "10.1.2.3:80", map[string][]string{"Forwarded": {"proto=https"}}, "10.1.2.3"},
		{"trusted ipv6 peer", "[2001:db8:ffff::5]:80", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"mapped peer", "[::ffff:10.1.2.3]:80", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"single trusted address", "192.0.2.7:80", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"neighbour of the single address", "192.0.2.8:80", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "192.0.2.8"},
		{"unreadable remote", "pipe", nil, "invalid IP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header(tc.headers)}
			if got := ClientAddr(r, trusted).String(); got != tc.want {
				t.Errorf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.1":         "198.51.100.1",
		"::ffff:198.51.100.1":  "198.51.100.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::",
		"2001:db8:1:3::1":      "2001:db8:1:3::",
		"fe80::1%eth0":         "fe80::",
		"127.0.0.2":            "127.0.0.2",
	} {
		if got := Key(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{" 10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "", "10.1.2.3/8"})
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, p := range got {
		s = append(s, p.String())
	}
	if want := "10.0.0.0/8 192.0.2.7/32 2001:db8::/32 10.0.0.0/8"; strings.Join(s, " ") != want {
		t.Errorf("got %v, want %s", s, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0"} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzClientAddr: any header from a trusted peer yields the peer or an address written in the
// header, never a panic; from an untrusted peer it is always the peer.
func FuzzClientAddr(f *testing.F) {
	for _, seed := range []string{"198.51.100.1", "6.6.6.6, 10.0.0.1", `for="[2001:db8::1]:4711";proto=https, for=10.0.0.2`,
		`for="a\",b", for=1.2.3.4`, "[::1]:", "\"", "for=", ",,,", "unknown, _x"} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	trusted := mustPrefixes(f, "10.0.0.0/8")
	f.Fuzz(func(t *testing.T, header string, forwarded bool) {
		name := "X-Forwarded-For"
		if forwarded {
			name = "Forwarded"
		}
		for _, peer := range []string{"10.0.0.9:1", "198.51.100.200:1"} {
			r := &http.Request{RemoteAddr: peer, Header: http.Header{name: {header}}}
			got := ClientAddr(r, trusted)
			if !got.IsValid() {
				t.Fatalf("no address for %q from %s", header, peer)
			}
			peerAddr := netip.MustParseAddrPort(peer).Addr()
			if !trusted[0].Contains(peerAddr) && got != peerAddr {
				t.Fatalf("untrusted peer %s: got %s", peer, got)
			}
			if got != peerAddr && got.Zone() != "" {
				t.Fatalf("zone in %s", got)
			}
			_ = Key(got)
		}
	})
}
