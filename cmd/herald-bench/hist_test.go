package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	prevHi := int64(-1)
	for i := range histBucket {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, want %d (no gap, no overlap)", i, lo, prevHi+1)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d = [%d, %d], but bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if width := hi - lo + 1; lo >= subCount && float64(width) > float64(lo)/subCount {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its values", i, lo, hi, subCount)
		}
		prevHi = hi
	}
	if got := bucketOf(math.MaxInt64); got != histBucket-1 {
		t.Fatalf("bucketOf(MaxInt64) = %d, want the last bucket %d", got, histBucket-1)
	}
}

func TestQuantilesOfKnownData(t *testing.T) {
	h := newHistogram()
	// 1..100000 microseconds, in nanoseconds, shuffled.
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(i+1) * 1000
	}
	rand.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	for _, v := range vals {
		h.Record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/subCount {
			t.Errorf("q%v = %d, want within 1/%d above %d", q, got, subCount, exact)
		}
	}
	if h.Count() != 100000 || h.Min() != 1000 || h.Max() != 100000000 {
		t.Errorf("count/min/max = %d/%d/%d", h.Count(), h.Min(), h.Max())
	}
	if mean := h.Mean(); math.Abs(mean-50000500) > 1 {
		t.Errorf("mean = %v, want 50000500", mean)
	}
}

func TestQuantileSmallValuesAreExact(t *testing.T) {
	h := newHistogram()
	for _, v := range []int64{3, 1, 2, 5, 4} {
		h.Record(v)
	}
	for q, want := range map[float64]int64{0: 1, 0.2: 1, 0.4: 2, 0.5: 3, 0.8: 4, 1: 5} {
		if got := h.Quantile(q); got != want {
			t.Errorf("q%v = %d, want %d", q, got, want)
		}
	}
}

func TestEmptyHistogram(t *testing.T) {
	h := newHistogram()
	if h.Quantile(0.99) != 0 || h.Max() != 0 || h.Min() != 0 || h.Mean() != 0 || len(h.cdf()) != 0 {
		t.Fatal("an empty histogram must report zeros")
	}
}

func TestMergeAndWireRoundTrip(t *testing.T) {
	a, b := newHistogram(), newHistogram()
	for i := int64(1); i <= 1000; i++ {
		a.Record(i * 1000)
		b.Record(i * 7919)
	}
	whole := newHistogram()
	whole.Merge(a)
	whole.Merge(b)

	viaWire := newHistogram()
	viaWire.mergeWire(a.wire())
	viaWire.mergeWire(b.wire())
	if !slices.Equal(whole.counts, viaWire.counts) || whole.Count() != 2000 || viaWire.Count() != 2000 {
		t.Fatal("merging through the wire form differs from merging directly")
	}
	if whole.Min() != viaWire.Min() || whole.Max() != viaWire.Max() || whole.Mean() != viaWire.Mean() {
		t.Fatalf("min/max/mean differ: %d/%d/%v vs %d/%d/%v", whole.Min(), whole.Max(), whole.Mean(), viaWire.Min(), viaWire.Max(), viaWire.Mean())
	}
	viaWire.mergeWire(newHistogram().wire()) // an empty worker changes nothing
	if viaWire.Min() != 1000 {
		t.Fatalf("an empty histogram changed the minimum to %d", viaWire.Min())
	}
	whole.Reset()
	if whole.Count() != 0 || whole.Quantile(0.5) != 0 {
		t.Fatal("Reset left values behind")
	}
}

func TestCDFEndsAtOne(t *testing.T) {
	h := newHistogram()
	for i := int64(1); i <= 500; i++ {
		h.Record(i * i * 100)
	}
	pts := h.cdf()
	if last := pts[len(pts)-1]; last.Fraction != 1 || last.Value != h.Max() {
		t.Fatalf("last CDF point = %+v, want fraction 1 at the max %d", last, h.Max())
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Value <= pts[i-1].Value || pts[i].Fraction <= pts[i-1].Fraction {
			t.Fatalf("CDF not increasing at %d: %+v then %+v", i, pts[i-1], pts[i])
		}
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	h := newHistogram()
	v := int64(12345)
	if n := testing.AllocsPerRun(1000, func() { h.Record(v); v *= 3; v %= 1 << 40 }); n != 0 {
		t.Fatalf("Record allocates %v times per call", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	h := newHistogram()
	b.ReportAllocs()
	v := int64(1)
	for b.Loop() {
		h.Record(v)
		v = v*6364136223846793005 + 1442695040888963407
		v &= 1<<36 - 1
	}
}
