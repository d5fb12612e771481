package admission

import (
	"net/netip"
	"testing"
	"time"
)

func addrN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestBucketTable(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a := addrN(1)
	type step struct {
		at     time.Duration
		addr   netip.Addr
		ok     bool
		waitMs int64 // expected wait, when refused
	}
	cases := []struct {
		name         string
		rate         float64
		burst, table int
		steps        []step
	}{
		{"burst then refused", 1, 3, 10, []step{{0, a, true, 0}, {0, a, true, 0}, {0, a, true, 0}, {0, a, false, 1000}}},
		{"refills at the rate", 2, 1, 10, []step{{0, a, true, 0}, {0, a, false, 500}, {250 * time.Millisecond, a, false, 250}, {500 * time.Millisecond, a, true, 0}}},
		{"addresses apart", 1, 1, 10, []step{{0, a, true, 0}, {0, a, false, 1000}, {0, addrN(2), true, 0}}},
		{"refill stops at the burst", 10, 2, 10, []step{{0, a, true, 0}, {time.Hour, a, true, 0}, {time.Hour, a, true, 0}, {time.Hour, a, false, 100}}},
		{"forgotten when full: fresh bucket", 1, 1, 1, []step{{0, a, true, 0}, {0, addrN(2), true, 0}, {0, a, true, 0}, {0, a, false, 1000}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := newBucketTable[netip.Addr](tc.rate, tc.burst, tc.table)
			for i, s := range tc.steps {
				ok, wait := tb.take(s.addr, t0.Add(s.at))
				if ok != s.ok || (!ok && wait.Milliseconds() != s.waitMs) {
					t.Fatalf("step %d: ok=%v wait=%v, want ok=%v wait=%dms", i, ok, wait, s.ok, s.waitMs)
				}
			}
		})
	}
}

// TestBucketTableBounded: a flood of distinct addresses never grows the table past its
// capacity, and the addresses go once their buckets refill.
func TestBucketTableBounded(t *testing.T) {
	tb := newBucketTable[netip.Addr](1, 2, 1000)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 100_000 {
		tb.take(addrN(i), t0.Add(time.Duration(i)*time.Microsecond))
		if n := tb.len(); n > 1000 {
			t.Fatalf("after %d addresses the table holds %d", i+1, n)
		}
	}
	if len(tb.slots) > 1000 {
		t.Fatalf("%d slots allocated for a capacity of 1000", len(tb.slots))
	}
	// Much later every bucket is full: each take drops some, the table empties.
	later := t0.Add(time.Hour)
	for i := range 200 {
		tb.take(addrN(1_000_000+i%2), later)
	}
	if n := tb.len(); n > 2 {
		t.Fatalf("idle addresses not forgotten: %d left", n)
	}
	checkList(t, tb)
}

// checkList verifies the LRU list matches the index.
func checkList(t *testing.T, tb *bucketTable[netip.Addr]) {
	t.Helper()
	n, prev := 0, int32(-1)
	for i := tb.head; i >= 0; i = tb.slots[i].next {
		if tb.slots[i].prev != prev {
			t.Fatalf("slot %d: prev %d, want %d", i, tb.slots[i].prev, prev)
		}
		if j, ok := tb.index[tb.slots[i].key]; !ok || j != i {
			t.Fatalf("slot %d not indexed", i)
		}
		prev = i
		n++
	}
	if prev != tb.tail || n != len(tb.index) {
		t.Fatalf("list of %d ending at %d, index %d, tail %d", n, prev, len(tb.index), tb.tail)
	}
}

func BenchmarkBucketTake(b *testing.B) {
	b.ReportAllocs()
	tb := newBucketTable[netip.Addr](1000, 1000, DefaultRateTable)
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		tb.take(addrN(i%50_000), now)
	}
}
