package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// adamRef is AdamUpdate's documented arithmetic for one element, written
// independently of the kernels (each operation rounded to float32).
func adamRef(p, m, v, g float32, c AdamConsts) (float32, float32, float32) {
	b1, b2 := float64(c.Beta1), float64(c.Beta2)
	r := func(x float64) float64 { return float64(float32(x)) }
	c1, c2 := r(1-b1), r(1-b2)
	mm := r(r(b1*float64(m)) + r(c1*float64(g)))
	vv := r(r(b2*float64(v)) + r(r(c2*float64(g))*float64(g)))
	den := r(r(math.Sqrt(vv)) + float64(c.Eps))
	u := r(r(float64(c.StepSize)*mm) / den)
	pp := r(r(float64(p)*float64(c.Decay)) - u)
	return float32(pp), float32(mm), float32(vv)
}

func TestAdamUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	consts := []AdamConsts{
		{Beta1: 0.9, Beta2: 0.999, StepSize: 1e-3, Eps: 1e-8, Decay: 1},
		{Beta1: 0.8, Beta2: 0.99, StepSize: 0.37, Eps: 1e-3, Decay: 0.99},
	}
	for _, c := range consts {
		for _, n := range []int{0, 1, 7, 8, 9, 31, 64, 133} {
			for _, two := range []bool{false, true} {
				rnd := func(s float64) []float32 {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(s * rng.NormFloat64())
					}
					return x
				}
				p, m, g0, g1 := rnd(1), rnd(0.1), rnd(1), rnd(1)
				v := rnd(0.1)
				for i := range v {
					v[i] *= v[i]
				}
				if n > 2 { // zero and huge gradients
					g0[0], g0[1] = 0, 1e30
				}
				p0, m0, v0 := slices.Clone(p), slices.Clone(m), slices.Clone(v)
				var gs []float32
				if two {
					gs = g1
				}
				AdamUpdate(p, m, v, g0, gs, c)
				for i := range n {
					g := g0[i]
					if two {
						g += g1[i]
					}
					wp, wm, wv := adamRef(p0[i], m0[i], v0[i], g, c)
					if !bitsOrNaN(p[i], wp) || !bitsOrNaN(m[i], wm) || !bitsOrNaN(v[i], wv) {
						t.Fatalf("n %d two %v element %d: p, m, v = %g %g %g, want %g %g %g", n, two, i, p[i], m[i], v[i], wp, wm, wv)
					}
				}
			}
		}
	}
}

func TestAdamUpdateShortSlicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a short moment slice")
		}
	}()
	x := make([]float32, 8)
	AdamUpdate(x, x[:7], x, x, nil, AdamConsts{})
}

func TestPrefetchRows(t *testing.T) {
	table := make([]float32, 100*16)
	for i := range table {
		table[i] = float32(i)
	}
	want := slices.Clone(table)
	PrefetchRows(table, 16, []int32{0, 99, 5, 5, 42})
	PrefetchRows(table, 16, nil)
	PrefetchRows(table[:3*5], 5, []int32{2})
	if !slices.Equal(table, want) {
		t.Fatal("PrefetchRows changed the table")
	}
	for _, rows := range [][]int32{{100}, {-1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("PrefetchRows(%v) on 100 rows: no panic", rows)
				}
			}()
			PrefetchRows(table, 16, rows)
		}()
	}
}

func TestOptimAllocsNothing(t *testing.T) {
	x := make([]float32, 64)
	rows := []int32{1, 2, 3}
	if a := testing.AllocsPerRun(10, func() {
		AdamUpdate(x, x, x, x, x, AdamConsts{Beta1: 0.9, Beta2: 0.9, Decay: 1})
		PrefetchRows(x, 16, rows)
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

// bitsOrNaN reports whether a and b have the same bits, or are both NaN.
func bitsOrNaN(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}
