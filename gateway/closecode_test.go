package gateway

import "testing"

// TestValidCloseCodes holds validCloseCode to RFC 6455 7.4 at every range boundary.
func TestValidCloseCodes(t *testing.T) {
	valid := map[uint16]bool{1000: true, 1001: true, 1003: true, 1007: true, 1011: true, 1014: true, 3000: true, 3999: true, 4000: true, 4999: true}
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535} {
		valid[code] = false
	}
	for code, want := range valid {
		if got := validCloseCode(code); got != want {
			t.Errorf("validCloseCode(%d) = %v, want %v", code, got, want)
		}
	}
}
