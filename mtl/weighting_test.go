package mtl

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestWeightingConfigErrors(t *testing.T) {
	if _, err := NewUncertainty(UncertaintyConfig{Tasks: 1}); !errors.Is(err, ErrConfig) {
		t.Errorf("uncertainty, one task: %v", err)
	}
	if _, err := NewGradNorm(GradNormConfig{Tasks: 1}); !errors.Is(err, ErrConfig) || !contains(err.Error(), "at least 2 tasks") {
		t.Errorf("gradnorm, one task: %v", err)
	}
	if _, err := NewGradNorm(GradNormConfig{Tasks: 2, InitialLosses: []float64{1, 0}}); !errors.Is(err, ErrConfig) {
		t.Errorf("gradnorm, zero initial loss: %v", err)
	}
	if _, err := NewFixed([]float64{0, 0}); !errors.Is(err, ErrConfig) {
		t.Errorf("fixed all zero: %v", err)
	}
	if _, err := NewFixed([]float64{1, math.NaN()}); !errors.Is(err, ErrConfig) {
		t.Errorf("fixed NaN: %v", err)
	}
	if _, err := NewPCGrad(1, 10, rand.New(rand.NewPCG(1, 1))); !errors.Is(err, ErrConfig) {
		t.Errorf("pcgrad one task: %v", err)
	}
	f, _ := NewFixed([]float64{1, 2})
	if err := f.Update([]float64{1, math.Inf(1)}, nil); !errors.Is(err, ErrNonFinite) {
		t.Errorf("fixed update with Inf loss: %v", err)
	}
}

func TestUncertaintyGradient(t *testing.T) {
	u, err := NewUncertainty(UncertaintyConfig{Tasks: 3, InitialLogVar: []float64{0.3, -1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	losses := []float64{0.7, 0.05, 3}
	g := u.GradTo(nil, losses)
	for i := range u.s {
		s := u.s[i]
		h := 1e-6
		u.s[i] = s + h
		lp := u.Total(losses)
		u.s[i] = s - h
		lm := u.Total(losses)
		u.s[i] = s
		if fd := (lp - lm) / (2 * h); math.Abs(fd-g[i]) > 1e-6 {
			t.Errorf("task %d: grad %v, finite difference %v", i, g[i], fd)
		}
	}
	// Adam on s converges to the minimiser s = log L.
	u2, _ := NewUncertainty(UncertaintyConfig{Tasks: 2, LR: 0.05})
	for range 3000 {
		if err := u2.Update([]float64{0.2, 4}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, l := range []float64{0.2, 4} {
		if d := math.Abs(u2.LogVars()[i] - math.Log(l)); d > 0.05 {
			t.Errorf("task %d: s %v, want log L = %v", i, u2.LogVars()[i], math.Log(l))
		}
		if d := math.Abs(u2.Weights()[i] - 1/l); d > 0.06/l {
			t.Errorf("task %d: weight %v, want 1/L = %v", i, u2.Weights()[i], 1/l)
		}
	}
	u3, _ := NewUncertainty(UncertaintyConfig{Tasks: 2, LR: 0.05})
	if err := u3.SetState(u2.State()); err != nil {
		t.Fatal(err)
	}
	if u3.Weights()[1] != u2.Weights()[1] {
		t.Errorf("state round trip: weight %v, want %v", u3.Weights()[1], u2.Weights()[1])
	}
}

func TestGradNormDirection(t *testing.T) {
	// Equal training rates, task 0 has the larger gradient: its weight
	// must fall, task 1's rise, the sum stay 2.
	g, err := NewGradNorm(GradNormConfig{Tasks: 2, InitialLosses: []float64{1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Update([]float64{0.5, 0.5}, []float64{2, 1}); err != nil {
		t.Fatal(err)
	}
	w := g.Weights()
	if !(w[0] < 1 && w[1] > 1) || math.Abs(w[0]+w[1]-2) > 1e-12 {
		t.Fatalf("larger gradient: weights %v, want w0 < 1 < w1 and sum 2", w)
	}
	// Equal gradients, task 1 trains slower (higher loss ratio): its
	// weight must rise.
	g2, _ := NewGradNorm(GradNormConfig{Tasks: 2})
	if err := g2.Update([]float64{1, 1}, []float64{1, 1}); err != nil { // sets L(0)
		t.Fatal(err)
	}
	w0 := append([]float64(nil), g2.Weights()...)
	if w0[0] != 1 || w0[1] != 1 {
		t.Fatalf("balanced first step moved the weights: %v", w0)
	}
	if err := g2.Update([]float64{0.3, 0.9}, []float64{1, 1}); err != nil {
		t.Fatal(err)
	}
	if w := g2.Weights(); !(w[1] > w[0]) {
		t.Fatalf("slow task: weights %v, want w1 > w0", w)
	}
	// Repeated steps balance the weighted gradient norms w_t·g_t when the
	// rates are equal.
	g3, _ := NewGradNorm(GradNormConfig{Tasks: 2, InitialLosses: []float64{1, 1}, LR: 0.01})
	for range 500 {
		g3.Update([]float64{0.5, 0.5}, []float64{3, 1})
	}
	if w := g3.Weights(); math.Abs(w[0]*3-w[1]*1) > 0.1 {
		t.Fatalf("weighted norms not balanced: weights %v", w)
	}
}

func TestSoftSharingPenalty(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 21))
	const T = 3
	shapes := []int{5, 1, 9}
	groups := make([][][]float32, T)
	grads := make([][][]float32, T)
	for t := range T {
		for _, n := range shapes {
			groups[t] = append(groups[t], randSlice(rng, n, 1))
			grads[t] = append(grads[t], make([]float32, n))
		}
	}
	const lambda = 0.3
	naive := func() float64 {
		var s float64
		for a := range T {
			for b := range T {
				if a == b {
					continue
				}
				for l := range shapes {
					for j := range groups[a][l] {
						d := float64(groups[a][l][j]) - float64(groups[b][l][j])
						s += d * d
					}
				}
			}
		}
		return lambda * s
	}
	v, err := SoftSharingPenaltyTo(grads, groups, lambda)
	if err != nil {
		t.Fatal(err)
	}
	if want := naive(); math.Abs(v-want) > 1e-9*want {
		t.Fatalf("penalty %v, naive %v", v, want)
	}
	for tk := range T {
		for l := range shapes {
			for j := range groups[tk][l] {
				x := groups[tk][l][j]
				h := float32(1e-2)
				groups[tk][l][j] = x + h
				lp := naive()
				groups[tk][l][j] = x - h
				lm := naive()
				groups[tk][l][j] = x
				fd := (lp - lm) / float64(2*h)
				if math.Abs(fd-float64(grads[tk][l][j])) > 1e-3*math.Max(1, math.Abs(fd)) {
					t.Fatalf("task %d layer %d [%d]: grad %v, finite difference %v", tk, l, j, grads[tk][l][j], fd)
				}
			}
		}
	}
	if _, err := SoftSharingPenaltyTo(nil, groups[:1], lambda); !errors.Is(err, ErrConfig) {
		t.Fatalf("one task: %v", err)
	}
	groups[2][1] = make([]float32, 2)
	if _, err := SoftSharingPenaltyTo(nil, groups, lambda); !errors.Is(err, ErrShape) {
		t.Fatalf("mismatched layer: %v", err)
	}
}

func TestPCGrad(t *testing.T) {
	p, err := NewPCGrad(2, 2, rand.New(rand.NewPCG(5, 5)))
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 2)
	// Conflicting: g1 = (1, 0), g2 = (-1, 1). g1' = g1 - (g1·g2/|g2|²) g2
	// = (1,0) + ½(-1,1) = (½, ½); g2' = g2 - (g2·g1/|g1|²) g1 = (0, 1).
	n, err := p.ProjectTo(dst, [][]float32{{1, 0}, {-1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || math.Abs(float64(dst[0])-0.5) > 1e-6 || math.Abs(float64(dst[1])-1.5) > 1e-6 {
		t.Fatalf("conflicting: %d projections, sum %v, want 2 and (0.5, 1.5)", n, dst)
	}
	n, _ = p.ProjectTo(dst, [][]float32{{1, 0}, {1, 1}})
	if n != 0 || dst[0] != 2 || dst[1] != 1 {
		t.Fatalf("agreeing: %d projections, sum %v", n, dst)
	}
	conflict := [][]float32{{1, 0}, {-1, 1}}
	allocs := testing.AllocsPerRun(10, func() { p.ProjectTo(dst, conflict) })
	if allocs != 0 {
		t.Fatalf("ProjectTo allocates %v times", allocs)
	}
}
