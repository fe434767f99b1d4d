package features

import (
	"math"
	"math/rand/v2"
	"testing"
)

// log1pSamples are inputs over the whole float32 range: log-uniform from
// 1e-30 to 3e38 (and from 1e-300 to 1e-30), uniform on [0, 1) and [0, 1000), the integers below
// 100,000, and the neighbours of the points where the reduction's
// exponent steps (1+x = 2^k sqrt(2)) and of 2^k - 1.
func log1pSamples() []float64 {
	r := rand.New(rand.NewPCG(3, 4))
	var xs []float64
	for range 300_000 {
		xs = append(xs, math.Pow(10, -30+68.5*r.Float64()))
		xs = append(xs, r.Float64(), 1000*r.Float64())
	}
	for range 10_000 {
		xs = append(xs, math.Pow(10, -300+270*r.Float64()))
	}
	for i := range 100_000 {
		xs = append(xs, float64(i))
	}
	for k := -30; k <= 127; k++ {
		for _, c := range []float64{math.Ldexp(math.Sqrt2, k) - 1, math.Ldexp(1, k) - 1} {
			if c <= 0 {
				continue
			}
			x := c
			for range 20 {
				x = math.Nextafter(x, 0)
			}
			for range 40 {
				xs = append(xs, x)
				x = math.Nextafter(x, math.Inf(1))
			}
		}
	}
	return xs
}

// TestLog1pAccuracy checks log1p's documented bound against math.Log1p
// (within a float64 ulp of log(1+x)), and that its float32 is
// math.Log1p's or a neighbour, and math.Log1p's for all but one value in
// a thousand.
func TestLog1pAccuracy(t *testing.T) {
	xs := log1pSamples()
	worst, worstX := 0.0, 0.0
	differ := 0
	for _, x := range xs {
		got, want := signedLog1p(x), math.Log1p(x)
		if rel := math.Abs(got-want) / want; rel > worst || (want == 0 && got != 0) {
			worst, worstX = rel, x
		}
		g32, w32 := float32(got), float32(want)
		if g32 != w32 {
			differ++
			if g32 != math.Nextafter32(w32, float32(math.Inf(1))) && g32 != math.Nextafter32(w32, 0) {
				t.Errorf("log1p(%v) = %v as a float32, math.Log1p %v: more than one ulp apart", x, g32, w32)
			}
		}
	}
	if worst > 6e-11 {
		t.Errorf("worst relative error %.3g at x = %v, documented bound 6e-11", worst, worstX)
	}
	if differ*1000 > len(xs) {
		t.Errorf("float32 of log1p differs from math.Log1p's for %d of %d values, want at most one in a thousand", differ, len(xs))
	}
	t.Logf("%d values: worst relative error %.3g (x = %v); float32 differs from math.Log1p's for %d", len(xs), worst, worstX, differ)
}

// TestLog1pSpecial checks the inputs signedLog1p leaves to math.Log1p,
// its symmetry, and that the batch loop and the one-value function agree
// bit for bit.
func TestLog1pSpecial(t *testing.T) {
	for _, x := range []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1)} {
		got, want := signedLog1p(x), math.Copysign(math.Log1p(math.Abs(x)), x)
		if math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) {
			t.Errorf("signedLog1p(%v) = %v, want %v", x, got, want)
		}
	}
	for _, x := range []float64{5e-324, 1e-310, 0x1p-1000, 1e-300, 1e-200} {
		if got := signedLog1p(x); got != x {
			t.Errorf("log1p(%v) = %v, want %[1]v", x, got)
		}
	}
	if got := signedLog1p(math.MaxFloat64); math.Abs(got-709.782712893384) > 1e-9 {
		t.Errorf("log1p(MaxFloat64) = %v", got)
	}
	for _, x := range []float64{1e-9, 0.5, math.E - 1, 3e38} {
		if a, b := signedLog1p(-x), signedLog1p(x); a != -b {
			t.Errorf("signedLog1p(±%v) = %v, %v", x, a, b)
		}
	}
	xs := log1pSamples()
	for i := range xs {
		if i%3 == 0 {
			xs[i] = -xs[i]
		}
	}
	ys := make([]float64, len(xs))
	signedLog1pTo(ys, xs)
	for i, x := range xs {
		if one := signedLog1p(x); math.Float64bits(one) != math.Float64bits(ys[i]) {
			t.Fatalf("signedLog1p(%v) = %v, the batch loop %v", x, one, ys[i])
		}
	}
}

// BenchmarkLog1p compares the batch loop with math.Log1p over 4096
// values from 1 to e^12.
func BenchmarkLog1p(b *testing.B) {
	xs := make([]float64, 4096)
	ys := make([]float64, len(xs))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range xs {
		xs[i] = math.Exp(12 * r.Float64())
	}
	b.Run("onestone", func(b *testing.B) {
		for range b.N {
			signedLog1pTo(ys, xs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	b.Run("math", func(b *testing.B) {
		for range b.N {
			for i, x := range xs {
				ys[i] = math.Log1p(x)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
}
