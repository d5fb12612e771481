package main

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"math"
	"os"
)

// writeCDF draws the cumulative distribution of h (nanoseconds) as an SVG: latency on a log
// scale across, the share of deliveries at or below it up, with p50, p99 and p99.9 marked.
func writeCDF(path, title string, h *histogram) error {
	if h.Count() == 0 {
		return errors.New("no latency samples to plot")
	}
	return os.WriteFile(path, cdfSVG(title, h), 0o644)
}

const (
	svgW, svgH                     = 820, 500
	padL, padR, padT, padB float64 = 80, 40, 60, 60
)

func cdfSVG(title string, h *histogram) []byte {
	pts := h.cdf()
	ms := func(ns int64) float64 { return math.Max(float64(ns)/1e6, 1e-3) }
	lo := math.Floor(math.Log10(ms(h.Min())))
	hi := math.Ceil(math.Log10(ms(h.Max())))
	if hi <= lo {
		hi = lo + 1
	}
	plotW, plotH := svgW-padL-padR, svgH-padT-padB
	x := func(v float64) float64 { return padL + (math.Log10(v)-lo)/(hi-lo)*plotW }
	y := func(f float64) float64 { return padT + (1-f)*plotH }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%g" y="28" font-size="16" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
	// Grid and axis labels.
	for d := lo; d <= hi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > hi+1e-9 {
				break
			}
			px := x(v)
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px, svgH-padB+18, axisMs(v))
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="%s"/>`+"\n", px, padT, px, svgH-padB, stroke)
		}
	}
	for f := 0.0; f <= 1.0001; f += 0.1 {
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/>`+"\n", padL, y(f), svgW-padR, y(f))
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n", padL-8, y(f)+4, f*100)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%d" text-anchor="middle">delivery latency (send to receipt, log scale)</text>`+"\n", padL+plotW/2, svgH-15)
	fmt.Fprintf(&b, `<text x="18" y="%g" text-anchor="middle" transform="rotate(-90 18 %g)">deliveries at or below</text>`+"\n", padT+plotH/2, padT+plotH/2)
	// The curve, as steps: flat until a bucket's edge, then up by its share.
	b.WriteString(`<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="`)
	prev := 0.0
	fmt.Fprintf(&b, "%.1f,%.1f ", x(ms(h.Min())), y(0))
	for _, p := range pts {
		px := x(ms(p.Value))
		fmt.Fprintf(&b, "%.1f,%.1f %.1f,%.1f ", px, y(prev), px, y(p.Fraction))
		prev = p.Fraction
	}
	b.WriteString("\"/>\n")
	// Percentile marks.
	for i, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}, {"p99.9", 0.999}} {
		v := ms(h.Quantile(q.q))
		px, py := x(v), y(q.q)
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="#d62728"/>`+"\n", px, py)
		tx, anchor := px+8, "start"
		if px > padL+0.75*plotW {
			tx, anchor = px-8, "end" // keep labels near the right edge inside the picture
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#d62728" text-anchor="%s">%s %s</text>`+"\n", tx, py+14+14*float64(i), anchor, q.name, axisMs(v))
	}
	fmt.Fprintf(&b, `<text x="%g" y="46" fill="#555">n=%d  max %s</text>`+"\n", padL, h.Count(), axisMs(ms(h.Max())))
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// axisMs labels a latency given in milliseconds.
func axisMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%g s", round3(v/1000))
	case v < 1:
		return fmt.Sprintf("%g us", round3(v*1000))
	}
	return fmt.Sprintf("%g ms", round3(v))
}

func round3(v float64) float64 {
	if v == 0 {
		return 0
	}
	mag := math.Pow(10, 2-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*mag) / mag
}
