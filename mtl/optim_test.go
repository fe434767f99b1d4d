package mtl

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func randSlice(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(scale * rng.NormFloat64())
	}
	return x
}

func TestAdamMatchesReference(t *testing.T) {
	for _, wd := range []float64{0, 0.01} {
		rng := rand.New(rand.NewPCG(7, 7))
		sizes := []int{1, 7, 129}
		params := make([]Param, len(sizes))
		ref := make([][]float64, len(sizes))
		for i, n := range sizes {
			params[i] = Param{Name: string(rune('a' + i)), Value: randSlice(rng, n, 1)}
			ref[i] = make([]float64, n)
			for j, v := range params[i].Value {
				ref[i][j] = float64(v)
			}
		}
		cfg := AdamConfig{LR: 0.01, WeightDecay: wd}
		a, err := NewAdam(cfg, params)
		if err != nil {
			t.Fatal(err)
		}
		m := make([][]float64, len(sizes))
		v := make([][]float64, len(sizes))
		for i, n := range sizes {
			m[i], v[i] = make([]float64, n), make([]float64, n)
		}
		for step := 1; step <= 6; step++ {
			scale := 1 / float64(step) // a schedule
			grads := make([][]float32, len(sizes))
			for i, n := range sizes {
				grads[i] = randSlice(rng, n, 0.5)
			}
			if err := a.Step(grads, scale); err != nil {
				t.Fatal(err)
			}
			lr := 0.01 * scale
			for i := range sizes {
				for j, g32 := range grads[i] {
					g := float64(g32)
					m[i][j] = 0.9*m[i][j] + 0.1*g
					v[i][j] = 0.999*v[i][j] + 0.001*g*g
					mh := m[i][j] / (1 - math.Pow(0.9, float64(step)))
					vh := v[i][j] / (1 - math.Pow(0.999, float64(step)))
					ref[i][j] -= lr * wd * ref[i][j]
					ref[i][j] -= lr * mh / (math.Sqrt(vh) + 1e-8)
					if d := math.Abs(ref[i][j] - float64(params[i].Value[j])); d > 1e-5 {
						t.Fatalf("wd %v step %d param %d[%d]: %v, reference %v", wd, step, i, j, params[i].Value[j], ref[i][j])
					}
				}
			}
		}
	}
}

func TestAdamStateRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	mk := func(src [][]float32) ([]Param, *Adam) {
		ps := []Param{{Name: "w", Value: slices.Clone(src[0])}, {Name: "b", Value: slices.Clone(src[1])}}
		a, err := NewAdam(AdamConfig{}, ps)
		if err != nil {
			t.Fatal(err)
		}
		return ps, a
	}
	init := [][]float32{randSlice(rng, 33, 1), randSlice(rng, 5, 1)}
	grads := make([][][]float32, 5)
	for s := range grads {
		grads[s] = [][]float32{randSlice(rng, 33, 1), randSlice(rng, 5, 1)}
	}
	pa, a := mk(init)
	for s := range 3 {
		if err := a.Step(grads[s], 1); err != nil {
			t.Fatal(err)
		}
	}
	// b starts from a's parameters and state, as after a checkpoint.
	pb, b := mk([][]float32{pa[0].Value, pa[1].Value})
	if err := b.SetState(a.State()); err != nil {
		t.Fatal(err)
	}
	if b.Steps() != 3 {
		t.Fatalf("steps %d, want 3", b.Steps())
	}
	for s := 3; s < 5; s++ {
		a.Step(grads[s], 1)
		b.Step(grads[s], 1)
	}
	for i := range pa {
		if !slices.Equal(pa[i].Value, pb[i].Value) {
			t.Fatalf("param %s differs after resume", pa[i].Name)
		}
	}
	_, c := mk([][]float32{make([]float32, 33), make([]float32, 6)})
	if err := c.SetState(a.State()); !errors.Is(err, ErrState) {
		t.Fatalf("mismatched state: err = %v, want ErrState", err)
	}
}

func TestOptimizerConfigErrors(t *testing.T) {
	if _, err := NewAdam(AdamConfig{Beta1: 1}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("beta1 1: %v", err)
	}
	if _, err := NewAdam(AdamConfig{LR: -1}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("lr -1: %v", err)
	}
	if _, err := NewAdam(AdamConfig{}, []Param{{Name: "a"}, {Name: "a"}}); !errors.Is(err, ErrConfig) {
		t.Errorf("duplicate names: %v", err)
	}
	if _, err := NewSparseAdagrad(SparseAdagradConfig{}, []Table{{Name: "e", Value: make([]float32, 10), Dim: 3}}); !errors.Is(err, ErrConfig) {
		t.Errorf("ragged table: %v", err)
	}
	o, _ := NewSparseAdam(SparseAdamConfig{}, []Table{{Name: "e", Value: make([]float32, 12), Dim: 3}})
	if err := o.Step(0, []int32{4}, make([]float32, 3), 1); !errors.Is(err, ErrShape) {
		t.Errorf("row out of range: %v", err)
	}
	if err := o.Step(0, []int32{1}, make([]float32, 4), 1); !errors.Is(err, ErrShape) {
		t.Errorf("grad length: %v", err)
	}
	if _, err := NewSchedule(ScheduleConfig{Decay: "cosine"}); !errors.Is(err, ErrConfig) {
		t.Errorf("cosine without steps: %v", err)
	}
}

// sparseRef is a float64 reference of the sparse optimizers on one table.
type sparseRef struct {
	p, m, v, acc []float64
	steps        []int
}

func TestSparseOptimizersMatchReference(t *testing.T) {
	const rowsN, dim = 50, 5
	for _, kind := range []string{"adagrad-row", "adagrad-elem", "adam"} {
		t.Run(kind, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, 9))
			val := randSlice(rng, rowsN*dim, 1)
			orig := slices.Clone(val)
			const l2, lr = 0.05, 0.1
			tables := []Table{{Name: "other", Value: make([]float32, 4), Dim: 2}, {Name: "emb", Value: val, Dim: dim}}
			var step func(rows []int32, g []float32) error
			var state func() State
			var setState func(State) error
			switch kind {
			case "adam":
				o, err := NewSparseAdam(SparseAdamConfig{LR: lr, L2: l2}, tables)
				if err != nil {
					t.Fatal(err)
				}
				step = func(r []int32, g []float32) error { return o.Step(1, r, g, 1) }
				state, setState = o.State, o.SetState
			default:
				o, err := NewSparseAdagrad(SparseAdagradConfig{LR: lr, L2: l2, PerElement: kind == "adagrad-elem", InitialAccumulator: 0.1}, tables)
				if err != nil {
					t.Fatal(err)
				}
				step = func(r []int32, g []float32) error { return o.Step(1, r, g, 1) }
				state, setState = o.State, o.SetState
			}
			ref := sparseRef{p: make([]float64, rowsN*dim), m: make([]float64, rowsN*dim), v: make([]float64, rowsN*dim), acc: make([]float64, rowsN*dim), steps: make([]int, rowsN)}
			for j, x := range val {
				ref.p[j] = float64(x)
				ref.acc[j] = 0.1
			}
			touched := make([]bool, rowsN)
			for s := range 6 {
				perm := rng.Perm(rowsN)[:7] // unique rows, rows 40.. never touched
				var rows []int32
				for _, r := range perm {
					if r < 40 {
						rows = append(rows, int32(r))
						touched[r] = true
					}
				}
				g := randSlice(rng, len(rows)*dim, 1)
				if err := step(rows, g); err != nil {
					t.Fatal(err)
				}
				for i, r := range rows {
					gr := make([]float64, dim)
					var ss float64
					for j := range dim {
						gr[j] = float64(g[i*dim+j]) + l2*ref.p[int(r)*dim+j]
						ss += gr[j] * gr[j]
					}
					ref.steps[r]++
					tt := float64(ref.steps[r])
					for j := range dim {
						k := int(r)*dim + j
						switch kind {
						case "adagrad-row":
							if j == 0 {
								ref.acc[int(r)*dim] += ss / dim
							}
							ref.p[k] -= lr * gr[j] / (math.Sqrt(ref.acc[int(r)*dim]) + 1e-8)
						case "adagrad-elem":
							ref.acc[k] += gr[j] * gr[j]
							ref.p[k] -= lr * gr[j] / (math.Sqrt(ref.acc[k]) + 1e-8)
						case "adam":
							ref.m[k] = 0.9*ref.m[k] + 0.1*gr[j]
							ref.v[k] = 0.999*ref.v[k] + 0.001*gr[j]*gr[j]
							ref.p[k] -= lr * (ref.m[k] / (1 - math.Pow(0.9, tt))) / (math.Sqrt(ref.v[k]/(1-math.Pow(0.999, tt))) + 1e-8)
						}
					}
				}
				_ = s
			}
			for r := range rowsN {
				for j := range dim {
					k := r*dim + j
					if !touched[r] {
						if val[k] != orig[k] {
							t.Fatalf("untouched row %d changed", r)
						}
						continue
					}
					if d := math.Abs(float64(val[k]) - ref.p[k]); d > 2e-5 {
						t.Fatalf("row %d col %d: %v, reference %v", r, j, val[k], ref.p[k])
					}
				}
			}
			// State round trip: restoring into a fresh optimizer and stepping
			// both gives identical tables.
			st := state()
			snapshot := State{Tensors: map[string][]float32{}, Counts: map[string][]int32{}}
			for k, x := range st.Tensors {
				snapshot.Tensors[k] = slices.Clone(x)
			}
			for k, x := range st.Counts {
				snapshot.Counts[k] = slices.Clone(x)
			}
			if err := setState(snapshot); err != nil {
				t.Fatal(err)
			}
			delete(snapshot.Tensors, "emb."+map[bool]string{true: "m", false: "acc"}[kind == "adam"])
			if err := setState(snapshot); !errors.Is(err, ErrState) {
				t.Fatalf("incomplete state: err = %v, want ErrState", err)
			}
		})
	}
}

func TestClipGradNorm(t *testing.T) {
	g := [][]float32{{3, 0}, {4}}
	if n := ClipGradNorm(g, 10); n != 5 || g[0][0] != 3 {
		t.Fatalf("no clip: norm %v, g %v", n, g)
	}
	if n := ClipGradNorm(g, 1); n != 5 || math.Abs(Norm(g)-1) > 1e-5 || math.Abs(float64(g[0][0])-0.6) > 1e-5 {
		t.Fatalf("clip: norm %v, g %v", n, g)
	}
	g[1][0] = float32(math.NaN())
	if n := ClipGradNorm(g, 1); !math.IsNaN(n) {
		t.Fatalf("NaN norm = %v", n)
	}
	big := randSlice(rand.New(rand.NewPCG(1, 2)), 10001, 1)
	var want float64
	for _, x := range big {
		want += float64(x) * float64(x)
	}
	if got := SumSquares(big); math.Abs(got-want) > 1e-5*want {
		t.Fatalf("SumSquares %v, want %v", got, want)
	}
}

func TestSchedule(t *testing.T) {
	s, err := NewSchedule(ScheduleConfig{WarmupSteps: 4, Decay: DecayLinear, DecaySteps: 10, MinScale: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		step int64
		want float64
	}{{0, 0.25}, {3, 1}, {4, 1}, {9, 1 - 0.9*0.5}, {14, 0.1}, {1000, 0.1}} {
		if got := s.Scale(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("linear step %d: %v, want %v", c.step, got, c.want)
		}
	}
	cs, _ := NewSchedule(ScheduleConfig{Decay: DecayCosine, DecaySteps: 10})
	if got := cs.Scale(5); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("cosine midpoint %v", got)
	}
	is, _ := NewSchedule(ScheduleConfig{WarmupSteps: 100, Decay: DecayInverseSqrt})
	if got := is.Scale(399); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("inverse sqrt %v", got)
	}
	c, _ := NewSchedule(ScheduleConfig{})
	if c.Scale(0) != 1 || c.Scale(1e9) != 1 {
		t.Errorf("constant schedule not 1")
	}
}

// BenchmarkAdam1M steps Adam over the dense parameters of the std
// workload (8 experts [256, 128] on 429 inputs, 2 gates, 2 towers [64]):
// about 1.17 M parameters in 8 tensors.
func BenchmarkAdam1M(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	sizes := []int{8 * 429 * 256, 8 * 256, 8 * 256 * 128, 8 * 128, 2 * 429 * 8, 2 * 128 * 64, 2 * 64, 2 * 65}
	var params []Param
	var grads [][]float32
	total := 0
	for i, n := range sizes {
		params = append(params, Param{Name: string(rune('a' + i)), Value: randSlice(rng, n, 1)})
		grads = append(grads, randSlice(rng, n, 1))
		total += n
	}
	a, _ := NewAdam(AdamConfig{}, params)
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Step(grads, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
}

func benchSparse(b *testing.B, step func(table int, rows []int32, grad []float32) error, tables int) {
	rng := rand.New(rand.NewPCG(1, 1))
	const batch, dim, rowsN = 1024, 16, 100_000
	rows := make([][]int32, tables)
	grads := make([][]float32, tables)
	for t := range tables {
		seen := map[int32]bool{}
		for len(rows[t]) < batch {
			r := int32(rng.IntN(rowsN))
			if !seen[r] {
				seen[r] = true
				rows[t] = append(rows[t], r)
			}
		}
		grads[t] = randSlice(rng, batch*dim, 0.01)
	}
	b.ReportAllocs()
	for b.Loop() {
		for t := range tables {
			if err := step(t, rows[t], grads[t]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(tables*batch*b.N)/b.Elapsed().Seconds()/1e6, "Mrows/s")
}

// prefault writes every page of the optimizer state, so that a benchmark
// measures the steady state rather than the kernel's first-touch faults.
func prefault(st State) {
	for _, x := range st.Tensors {
		for i := 0; i < len(x); i += 1024 {
			x[i] = 0
		}
	}
	for _, x := range st.Counts {
		for i := 0; i < len(x); i += 1024 {
			x[i] = 0
		}
	}
}

func stdTables(n int) []Table {
	t := make([]Table, n)
	for i := range t {
		t[i] = Table{Name: string(rune('a' + i)), Value: make([]float32, 100_000*16), Dim: 16}
		for j := range t[i].Value {
			t[i].Value[j] = 0.01
		}
	}
	return t
}

func BenchmarkSparseAdagrad1024x26x16(b *testing.B) {
	o, _ := NewSparseAdagrad(SparseAdagradConfig{}, stdTables(26))
	prefault(o.State())
	benchSparse(b, func(t int, r []int32, g []float32) error { return o.Step(t, r, g, 1) }, 26)
}

func BenchmarkSparseAdam1024x26x16(b *testing.B) {
	o, _ := NewSparseAdam(SparseAdamConfig{}, stdTables(26))
	prefault(o.State())
	benchSparse(b, func(t int, r []int32, g []float32) error { return o.Step(t, r, g, 1) }, 26)
}
