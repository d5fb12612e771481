package main

import (
	"math"
	"math/bits"
)

// histogram is an HDR-style latency histogram over non-negative int64 values (nanoseconds here):
// values below 2^subBits have a bucket each; above, every power-of-two range is split into
// 2^subBits linear sub-buckets, so a bucket is never wider than 1/64 (1.6%) of its values.
//
// Record is allocation-free and does no locking: each goroutine owns its histogram and they are
// merged at the end. The zero value is not usable; call newHistogram.
type histogram struct {
	counts []uint64
	total  uint64
	min    int64
	max    int64
	sum    float64
}

const (
	subBits    = 6
	subCount   = 1 << subBits
	maxExp     = 43 // 2^43 ns is about 2.4 hours; larger values land in the last bucket
	histBucket = subCount * (maxExp - subBits + 2)
)

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, histBucket), min: math.MaxInt64}
}

// bucketOf returns the bucket index of v.
func bucketOf(v int64) int {
	if v < subCount {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 1 // 2^e <= v < 2^(e+1), e >= subBits
	if e > maxExp {
		return histBucket - 1
	}
	m := int(uint64(v) >> uint(e-subBits)) // in [subCount, 2*subCount)
	return subCount*(e-subBits+1) + m - subCount
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < 2*subCount {
		return int64(i), int64(i)
	}
	e := i/subCount + subBits - 1
	m := int64(i%subCount + subCount)
	shift := uint(e - subBits)
	lo = m << shift
	return lo, lo + (1 << shift) - 1
}

// Record adds one value.
func (h *histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	h.total++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Count returns the number of values recorded.
func (h *histogram) Count() uint64 { return h.total }

// Max returns the largest value recorded (0 when empty).
func (h *histogram) Max() int64 {
	if h.total == 0 {
		return 0
	}
	return h.max
}

// Min returns the smallest value recorded (0 when empty).
func (h *histogram) Min() int64 {
	if h.total == 0 {
		return 0
	}
	return h.min
}

// Mean returns the average value (0 when empty).
func (h *histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Quantile returns a value at or above the q-quantile (0 <= q <= 1): the largest value of the
// bucket holding the rank-ceil(q*n) value, capped at the exact maximum.
func (h *histogram) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketRange(i)
			return max(min(hi, h.max), h.min)
		}
	}
	return h.max
}

// Merge adds o's values to h.
func (h *histogram) Merge(o *histogram) {
	if o == nil || o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Reset forgets every value.
func (h *histogram) Reset() {
	clear(h.counts)
	h.total, h.sum, h.min, h.max = 0, 0, math.MaxInt64, 0
}

// wireHist is a histogram as workers send it: only the non-empty buckets.
type wireHist struct {
	Buckets [][2]uint64 `json:"b,omitempty"` // [index, count]
	Min     int64       `json:"min"`
	Max     int64       `json:"max"`
	Sum     float64     `json:"sum"`
}

func (h *histogram) wire() wireHist {
	w := wireHist{Min: h.min, Max: h.max, Sum: h.sum}
	for i, c := range h.counts {
		if c != 0 {
			w.Buckets = append(w.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return w
}

// mergeWire adds a worker's histogram to h.
func (h *histogram) mergeWire(w wireHist) {
	var n uint64
	for _, b := range w.Buckets {
		if b[0] < uint64(len(h.counts)) {
			h.counts[b[0]] += b[1]
			n += b[1]
		}
	}
	if n == 0 {
		return
	}
	h.total += n
	h.sum += w.Sum
	h.min = min(h.min, w.Min)
	h.max = max(h.max, w.Max)
}

// cdfPoint is one step of the cumulative distribution: the fraction of values <= Value.
type cdfPoint struct {
	Value    int64
	Fraction float64
}

// cdf returns the distribution at the upper edge of every non-empty bucket.
func (h *histogram) cdf() []cdfPoint {
	var out []cdfPoint
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		_, hi := bucketRange(i)
		out = append(out, cdfPoint{Value: min(hi, h.max), Fraction: float64(seen) / float64(h.total)})
	}
	return out
}
