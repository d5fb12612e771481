package broker

import (
	"errors"
	"math"
	"strconv"
	"testing"
)

func TestParseIDAccepts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ID
	}{
		{"0", ID{}},
		{"0-0", ID{}},
		{"1", ID{Ms: 1}},
		{"1-0", ID{Ms: 1}},
		{"1732700000000-0", ID{Ms: 1732700000000}},
		{"1732700000000-17", ID{Ms: 1732700000000, Seq: 17}},
		{"007-01", ID{Ms: 7, Seq: 1}}, // leading zeros are tolerated; String drops them
		{"18446744073709551615-18446744073709551615", ID{Ms: math.MaxUint64, Seq: math.MaxUint64}},
	} {
		got, err := ParseID(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseID(%q) = %v, %v; want %v, nil", tc.in, got, err, tc.want)
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, in := range []string{
		"", "-", "-1", "1-", "-0", "a-1", "1-a", "1-2-3", " 1", "1 ", "1- 2", "+1", "1-+2",
		"0x10", "1.5", "1e3", "１-2", // a full-width digit
		"18446744073709551616", // one past the largest uint64
		"1-18446744073709551616",
		"99999999999999999999-0",  // 20 digits, still too big
		"000000000000000000001-0", // 21 digits
		"1-2\x00",
	} {
		if got, err := ParseID(in); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q) = %v, %v; want ErrBadID", in, got, err)
		}
	}
}

func TestIDString(t *testing.T) {
	for _, tc := range []struct {
		id   ID
		want string
	}{
		{ID{}, "0-0"},
		{ID{Ms: 1732700000000, Seq: 3}, "1732700000000-3"},
		{ID{Ms: math.MaxUint64, Seq: math.MaxUint64}, "18446744073709551615-18446744073709551615"},
	} {
		if got := tc.id.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.id, got, tc.want)
		}
		if got := string(tc.id.AppendTo([]byte("x"))); got != "x"+tc.want {
			t.Errorf("AppendTo = %q, want %q", got, "x"+tc.want)
		}
		back, err := ParseID(tc.want)
		if err != nil || back != tc.id {
			t.Errorf("ParseID(%q) = %v, %v; want %v", tc.want, back, err, tc.id)
		}
	}
}

func TestIDCompare(t *testing.T) {
	// ordered strictly ascending
	ids := []ID{{}, {0, 1}, {1, 0}, {1, 1}, {1, math.MaxUint64}, {2, 0}, {math.MaxUint64, 0}, {math.MaxUint64, math.MaxUint64}}
	for i, a := range ids {
		for j, b := range ids {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", a, b, got, want)
			}
			if got := a.Less(b); got != (i < j) {
				t.Errorf("%v.Less(%v) = %v, want %v", a, b, got, i < j)
			}
		}
	}
}

func TestIDNextAndIsZero(t *testing.T) {
	if !(ID{}).IsZero() || (ID{Seq: 1}).IsZero() || (ID{Ms: 1}).IsZero() {
		t.Error("IsZero is wrong")
	}
	for _, tc := range []struct{ id, want ID }{
		{ID{}, ID{0, 1}},
		{ID{5, 7}, ID{5, 8}},
		{ID{5, math.MaxUint64}, ID{6, 0}},
	} {
		got := tc.id.Next()
		if got != tc.want {
			t.Errorf("%v.Next() = %v, want %v", tc.id, got, tc.want)
		}
		if !tc.id.Less(got) {
			t.Errorf("%v.Next() = %v is not after it", tc.id, got)
		}
	}
}

// FuzzParseID checks that whatever ParseID accepts is plain "<digits>[-<digits>]", and that it
// survives a round trip through String unchanged.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"0", "1-0", "1732700000000-17", "18446744073709551615-18446744073709551615",
		"", "-1", "1-", "a-1", "1-2-3", " 1", "007-01", "18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrBadID) {
				t.Fatalf("ParseID(%q): error %v is not ErrBadID", s, err)
			}
			return
		}
		if !plainID(s) {
			t.Fatalf("ParseID(%q) accepted text that is not <digits>[-<digits>]: %v", s, id)
		}
		back, err := ParseID(id.String())
		if err != nil || back != id {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, id, id.String(), back, err)
		}
		if id.String() != string(id.AppendTo(nil)) {
			t.Fatalf("String and AppendTo disagree for %v", id)
		}
	})
}

// FuzzIDString checks the round trip from the other side: every ID formats to text that parses
// back to it.
func FuzzIDString(f *testing.F) {
	f.Add(uint64(0), uint64(0))
	f.Add(uint64(1732700000000), uint64(3))
	f.Add(uint64(math.MaxUint64), uint64(math.MaxUint64))
	f.Fuzz(func(t *testing.T, ms, seq uint64) {
		id := ID{Ms: ms, Seq: seq}
		s := id.String()
		if want := strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10); s != want {
			t.Fatalf("String() = %q, want %q", s, want)
		}
		back, err := ParseID(s)
		if err != nil || back != id {
			t.Fatalf("ParseID(%q) = %v, %v; want %v", s, back, err, id)
		}
	})
}

func plainID(s string) bool {
	digits := func(p string) bool {
		if p == "" {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			return digits(s[:i]) && digits(s[i+1:])
		}
	}
	return digits(s)
}
