package admission

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddr returns the address a request's limits are counted against.
//
// It is the TCP peer's address, unless the peer is one of the trusted proxies: then it is read
// from X-Forwarded-For (or, when the request has none, from Forwarded), right to left, skipping
// the trusted proxies that appended themselves: the first address that is not a trusted proxy is
// the client, since everything left of it was written by the client and may be forged. When
// every hop is trusted, the leftmost is taken; when a hop cannot be read ("unknown", an
// obfuscated name, garbage), the last trusted hop before it is taken, so a forged or hidden
// entry never gets a key of its own.
//
// A proxy that writes Forwarded but not X-Forwarded-For must remove X-Forwarded-For from the
// requests it passes on, or clients choose their own address.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() || !inAny(peer, trusted) {
		return peer
	}
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		return walkHops(peer, trusted, xff, parseXFFHop)
	}
	if fwd := r.Header.Values("Forwarded"); len(fwd) > 0 {
		return walkHops(peer, trusted, fwd, parseForwardedHop)
	}
	return peer
}

// Key is the address limits are kept under: an IPv4 address itself, an IPv6 address's /64
// (one subscriber line or host usually has a whole /64, so counting single IPv6 addresses
// would let one host take as many shares as it likes).
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.WithZone("").Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// peerAddr parses http.Request.RemoteAddr ("ip:port"); the zero Addr when it is not one.
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

func inAny(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// walkHops walks the comma-separated hops of the header values from the right (the hop the
// peer added) to the left; parse reads one hop.
func walkHops(peer netip.Addr, trusted []netip.Prefix, values []string, parse func(string) (netip.Addr, bool)) netip.Addr {
	last := peer // the nearest hop known to be a trusted proxy
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var hop string
			v, hop = cutLastElement(v)
			if strings.TrimSpace(hop) == "" {
				continue // empty list elements are allowed (RFC 9110 section 5.6.1)
			}
			a, ok := parse(hop)
			if !ok {
				return last
			}
			if !inAny(a, trusted) {
				return a
			}
			last = a
		}
	}
	return last
}

// cutLastElement splits s at its last comma outside a quoted string: it returns what is before
// the comma and the element after it (all of s, and "", when there is no such comma).
func cutLastElement(s string) (rest, elem string) {
	quoted := false
	cut := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++ // an escaped character inside a quoted string
			}
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				cut = i
			}
		}
	}
	if cut < 0 {
		return "", s
	}
	return s[:cut], s[cut+1:]
}

// parseXFFHop reads one X-Forwarded-For element: an address, optionally with a port, IPv6
// optionally in brackets.
func parseXFFHop(s string) (netip.Addr, bool) {
	return parseNode(strings.TrimSpace(s))
}

// parseForwardedHop reads the for= parameter of one Forwarded element (RFC 7239):
// for=192.0.2.60;proto=http, for="[2001:db8::1]:4711". An element without for= cannot be read.
func parseForwardedHop(s string) (netip.Addr, bool) {
	for pair := range strings.SplitSeq(s, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "for") {
			continue
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		return parseNode(value)
	}
	return netip.Addr{}, false
}

// parseNode reads "ip", "ip:port", "[ipv6]" or "[ipv6]:port". Zones are refused: they mean
// nothing off the proxy's host. It tries the one form the text can be, so that the usual
// entries parse without a failed attempt (whose error would be an allocation).
func parseNode(s string) (netip.Addr, bool) {
	var (
		a   netip.Addr
		err error
	)
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		a, err = netip.ParseAddr(s[1 : len(s)-1])
	case strings.HasPrefix(s, "["), strings.Count(s, ":") == 1:
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	default:
		a, err = netip.ParseAddr(s)
	}
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// ParsePrefixes reads a list of CIDRs or single addresses (a single address is its /32 or /128).
func ParsePrefixes(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		if p, err := netip.ParsePrefix(it); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(it)
		if err != nil {
			return nil, &PrefixError{Item: it}
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// PrefixError is a trusted-proxy entry that is neither a CIDR nor an address.
type PrefixError struct{ Item string }

func (e *PrefixError) Error() string {
	return "trusted proxy " + e.Item + " is neither a CIDR (10.0.0.0/8) nor an address"
}
