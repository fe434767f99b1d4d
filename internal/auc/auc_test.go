package auc

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// pairwise is the O(n²) definition: over every ordered pair of rows (i, j),
// positive weight w_i·y_i against negative weight w_j·(1−y_j), the share
// ordered correctly, ties one half. A soft label pairs a row with itself,
// as a tie.
func pairwise[S Score](p []S, y, w []float32) float64 {
	var num, den float64
	for i := range p {
		for j := range p {
			wp := float64(w[i]) * float64(y[i])
			wn := float64(w[j]) * (1 - float64(y[j]))
			den += wp * wn
			switch {
			case p[i] > p[j]:
				num += wp * wn
			case p[i] == p[j]:
				num += wp * wn / 2
			}
		}
	}
	if den == 0 {
		return math.NaN()
	}
	return num / den
}

// data draws n rows with few distinct scores when levels > 0 (many ties;
// negative scores and -0 too), continuous scores when levels is 0; labels
// 0/1, or soft when soft; weights 0..3.
func data(r *rand.Rand, n, levels int, soft bool) (p64 []float64, y, w []float32) {
	p64, y, w = make([]float64, n), make([]float32, n), make([]float32, n)
	for i := range n {
		if levels == 0 {
			p64[i] = r.NormFloat64()
		} else {
			p64[i] = float64(r.IntN(levels)-levels/3) / float64(levels)
			if p64[i] == 0 && r.IntN(2) == 0 {
				p64[i] = math.Copysign(0, -1)
			}
		}
		switch {
		case soft:
			y[i] = float32(r.IntN(5)) / 4
		case r.Float64() < 0.3+0.3*math.Tanh(p64[i]):
			y[i] = 1
		}
		w[i] = float32(r.IntN(4))
	}
	y[0], w[0], y[n-1], w[n-1] = 1, 1, 0, 1 // both classes
	return p64, y, w
}

func to32(p []float64) []float32 {
	out := make([]float32, len(p))
	for i, v := range p {
		out[i] = float32(v)
	}
	return out
}

func ones(n int) []float32 {
	o := make([]float32, n)
	for i := range o {
		o[i] = 1
	}
	return o
}

func TestAUCMatchesPairwise(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var s Scratch // reused across sizes, as the evaluator does
	for _, n := range []int{2, 3, 7, 50, 333, 1000} {
		for _, levels := range []int{2, 5, 40, 0} {
			for _, soft := range []bool{false, true} {
				p64, y, w := data(r, n, levels, soft)
				p32 := to32(p64)
				check := func(name string, got, want float64) {
					t.Helper()
					if math.Abs(got-want) > 1e-12 {
						t.Errorf("n=%d levels=%d soft=%v %s: AUC %v, pairwise %v", n, levels, soft, name, got, want)
					}
				}
				check("float64 weighted", AUC(&s, p64, y, w), pairwise(p64, y, w))
				check("float32 weighted", AUC(&s, p32, y, w), pairwise(p32, y, w))
				check("float64 unweighted", AUC(&s, p64, y, nil), pairwise(p64, y, ones(n)))
				check("float32 unweighted", AUC(nil, p32, y, nil), pairwise(p32, y, ones(n)))
			}
		}
	}
}

func TestAUCKnown(t *testing.T) {
	nz := float32(math.Copysign(0, -1))
	cases := []struct {
		scores         []float32
		labels, weight []float32
		want           float64
	}{
		{[]float32{1, 2, 3, 4}, []float32{0, 0, 1, 1}, nil, 1},
		{[]float32{1, 2, 3, 4}, []float32{1, 1, 0, 0}, nil, 0},
		{[]float32{1, 1, 1, 1}, []float32{1, 0, 1, 0}, nil, 0.5},
		{[]float32{0.1, 0.4, 0.35, 0.8}, []float32{0, 0, 1, 1}, nil, 0.75},
		// -0 and +0 tie.
		{[]float32{0, nz, 1}, []float32{1, 0, 1}, nil, 0.75},
		// A weight of 3 counts the negative three times: 3 of the 4 pairs
		// ordered wrongly.
		{[]float32{0.1, 0.2, 0.3}, []float32{1, 0, 0}, []float32{1, 1, 3}, 0},
		{[]float32{0.1, 0.2, 0.3}, []float32{0, 1, 0}, []float32{1, 1, 3}, 0.25},
		// Zero weight removes a row.
		{[]float32{0.1, 0.2, 0.3}, []float32{0, 1, 0}, []float32{1, 1, 0}, 1},
	}
	for _, c := range cases {
		if got := AUC(nil, c.scores, c.labels, c.weight); got != c.want {
			t.Errorf("AUC(%v, %v, %v) = %v, want %v", c.scores, c.labels, c.weight, got, c.want)
		}
	}
	for _, c := range []struct{ labels, weight []float32 }{
		{[]float32{1, 1}, nil},
		{[]float32{0, 0}, nil},
		{[]float32{1, 0}, []float32{1, 0}},
		{nil, nil},
	} {
		if got := AUC(nil, make([]float64, len(c.labels)), c.labels, c.weight); !math.IsNaN(got) {
			t.Errorf("one class (%v, weights %v): AUC %v, want NaN", c.labels, c.weight, got)
		}
	}
}

func TestGAUCMatchesDirect(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	p64, y, w := data(r, 600, 15, false)
	g := make([]uint64, len(p64))
	for i := range g {
		g[i] = uint64(r.IntN(12)) << (8 * uint(r.IntN(2))) // some keys beyond the low byte
	}
	byGroup := map[uint64][]int{}
	for i, k := range g {
		byGroup[k] = append(byGroup[k], i)
	}
	var sum, wsum float64
	used := 0
	for _, rows := range byGroup {
		var gp []float64
		var gy, gw []float32
		var wg float64
		for _, r := range rows {
			gp, gy, gw = append(gp, p64[r]), append(gy, y[r]), append(gw, w[r])
			wg += float64(w[r])
		}
		if a := pairwise(gp, gy, gw); !math.IsNaN(a) {
			used++
			sum += wg * a
			wsum += wg
		}
	}
	a, gauc, n := AUCAndGAUC(nil, p64, y, w, g)
	if n != used || math.Abs(gauc-sum/wsum) > 1e-12 {
		t.Fatalf("GAUC %v over %d groups, direct %v over %d", gauc, n, sum/wsum, used)
	}
	if used < 5 {
		t.Fatalf("test data too easy: %d groups", used)
	}
	if want := AUC(nil, p64, y, w); a != want {
		t.Fatalf("AUCAndGAUC's AUC %v, AUC %v", a, want)
	}
	if _, gauc, n := AUCAndGAUC(nil, p64, y, w, nil); !math.IsNaN(gauc) || n != 0 {
		t.Fatalf("no groups: GAUC %v over %d groups, want NaN over 0", gauc, n)
	}
}

func TestScratchReuseAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	p64, y, w := data(r, 500, 0, false)
	p32 := to32(p64)
	g := make([]uint64, len(p64))
	for i := range g {
		g[i] = uint64(i % 7)
	}
	var s Scratch
	AUCAndGAUC(&s, p64, y, w, g)
	AUCAndGAUC(&s, p32, y, w, g)
	allocs := testing.AllocsPerRun(10, func() {
		AUC(&s, p64, y, w)
		AUCAndGAUC(&s, p32[:400], y[:400], nil, g[:400])
	})
	if allocs != 0 {
		t.Errorf("AUC with a Scratch allocates %v times", allocs)
	}
}

func TestLengthMismatchPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("scores and labels of different lengths accepted")
		}
	}()
	AUC(nil, []float32{1, 2}, []float32{1}, nil)
}

func BenchmarkAUC(b *testing.B) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{1000, 100_000} {
		p64, y, w := data(r, n, 0, false)
		p32 := to32(p64)
		var s Scratch
		b.Run("float32/"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				AUC(&s, p32, y, w)
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
		b.Run("float64/"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				AUC(&s, p64, y, w)
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
