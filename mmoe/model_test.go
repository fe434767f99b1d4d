package mmoe

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte("arch: ple\nexpert_hidden: [32]\ntower: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Arch != ArchPLE || c.Levels != 2 || c.Experts != 8 || c.TaskExperts != 1 || !slices.Equal(c.ExpertHidden, []int{32}) || len(c.Tower) != 0 || c.Tower == nil || c.Activation != ActReLU || c.EmbeddingDim != 16 {
		t.Errorf("got %+v", c)
	}
	d, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Arch: ArchMMoE, EmbeddingDim: 16, Experts: 8, Levels: 1, ExpertHidden: []int{256, 128}, Tower: []int{64}, Activation: ActReLU}
	if d.Arch != want.Arch || d.EmbeddingDim != want.EmbeddingDim || d.Experts != want.Experts || d.Levels != want.Levels || !slices.Equal(d.ExpertHidden, want.ExpertHidden) || !slices.Equal(d.Tower, want.Tower) || d.Activation != want.Activation {
		t.Errorf("defaults %+v, want %+v", d, want)
	}
	if _, err := ParseConfig([]byte("arch: mmoe\nexpertz: 3\n")); err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "expertz") {
		t.Errorf("unknown key: error %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Arch: "moe"}, `arch "moe"`},
		{Config{Arch: ArchPLE, Levels: -1}, "levels -1"},
		{Config{Arch: ArchMMoE, Experts: -2}, "experts -2"},
		{Config{Arch: ArchMMoE, TaskExperts: 2}, "task_experts 2"},
		{Config{Arch: ArchMMoE, Levels: 2}, "levels 2: stacked levels need arch ple"},
		{Config{Arch: ArchSharedBottom, Experts: 3}, "shared_bottom: experts 3"},
		{Config{Arch: ArchSingle, Experts: 3}, "single: experts 3"},
		{Config{Arch: ArchSoft, TaskExperts: 2}, "soft: task_experts 2"},
		{Config{Activation: "sigmoid"}, `activation "sigmoid"`},
		{Config{ExpertHidden: []int{}}, "expert_hidden: want at least one"},
		{Config{ExpertHidden: []int{8, 0}}, "expert_hidden[1] = 0"},
		{Config{Tower: []int{-1}}, "tower[0] = -1"},
		{Config{EmbeddingDim: -4}, "embedding_dim -4"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if err == nil || !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), "mmoe: config: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want ErrConfig mentioning %q", tc.cfg, err, tc.want)
		}
		if _, err := New(tc.cfg, smallLayout(), []string{"a", "b"}); err == nil {
			t.Errorf("%+v: New accepted it", tc.cfg)
		}
	}
	for _, arch := range Archs {
		c := Config{Arch: arch}
		if err := c.Validate(); err != nil {
			t.Errorf("arch %s with defaults: %v", arch, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	l := smallLayout()
	dup := smallLayout()
	dup.Sparse[1].Name = "user"
	zero := smallLayout()
	zero.Sparse[0].Cardinality = 0
	cases := []struct {
		layout features.Layout
		heads  []string
		cfg    Config
		want   string
	}{
		{l, nil, Config{}, "heads: want at least one"},
		{l, []string{"a", "a"}, Config{}, `"a" appears twice`},
		{l, []string{"a.b"}, Config{}, `heads[0] = "a.b"`},
		{l, []string{"shared"}, Config{}, `"shared"`},
		{l, []string{"a"}, Config{Arch: ArchSoft}, "soft parameter sharing needs at least 2 tasks"},
		{dup, []string{"a"}, Config{}, `sparse field "user" appears twice`},
		{zero, []string{"a"}, Config{}, `sparse field "user": cardinality 0`},
		{features.Layout{}, []string{"a"}, Config{}, "no sparse and no dense fields"},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg, tc.layout, tc.heads)
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want ErrConfig mentioning %q", err, tc.want)
		}
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Arch: ArchCGC, Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{5, 4}, Seed: 11}
	run := func(seed uint64) ([]byte, [][]float32) {
		c := cfg
		c.Seed = seed
		m := testModel(t, c)
		b := randomBatch(smallLayout(), 8, rand.New(rand.NewPCG(4, 4)))
		ws, g := m.NewWorkspace(8), m.NewGrads(8)
		dl := [][]float32{make([]float32, 8), make([]float32, 8)}
		for i := range dl[0] {
			dl[0][i], dl[1][i] = float32(i)-3, 1
		}
		if err := m.Forward(ws, b); err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(ws, b, dl, g); err != nil {
			t.Fatal(err)
		}
		gr := slices.Clone(g.Dense)
		for f := range g.Sparse {
			gr = append(gr, slices.Clone(g.Sparse[f].Grad))
		}
		return saved(t, m), append(gr, ws.Logits...)
	}
	w1, g1 := run(11)
	w2, g2 := run(11)
	w3, _ := run(12)
	if string(w1) != string(w2) || !bitsEqual(g1, g2) {
		t.Error("same seed: different weights or gradients")
	}
	if string(w1) == string(w3) {
		t.Error("different seeds: same weights")
	}
}

func TestInit(t *testing.T) {
	m := testModel(t, Config{Experts: 4, EmbeddingDim: 8, ExpertHidden: []int{64, 32}, Seed: 5})
	for _, p := range m.Params() {
		lo, hi := slices.Min(p.Data), slices.Max(p.Data)
		switch {
		case strings.HasSuffix(p.Name, ".bias"):
			if lo != 0 || hi != 0 {
				t.Errorf("%s: bias not zero", p.Name)
			}
		case p.Name == "experts.0.layers.0.weight":
			bound := float32(math.Sqrt(6.0 / float64(p.Shape[1])))
			if lo < -bound || hi > bound || hi < bound/2 || lo > -bound/2 {
				t.Errorf("%s: range [%g, %g], want He uniform ±%g", p.Name, lo, hi, bound)
			}
		}
	}
	for _, e := range m.Embeddings() {
		if slices.Max(e.Data) > embeddingInitBound || slices.Min(e.Data) < -embeddingInitBound || slices.Max(e.Data) == 0 {
			t.Errorf("%s: bad init", e.Name)
		}
	}
	wantN := 0
	for _, p := range m.Params() {
		wantN += len(p.Data)
	}
	for _, e := range m.Embeddings() {
		wantN += len(e.Data)
	}
	if m.NumParams() != wantN {
		t.Errorf("NumParams %d, want %d", m.NumParams(), wantN)
	}
}

func TestMatchingLayers(t *testing.T) {
	m := testModel(t, Config{Arch: ArchSoft, EmbeddingDim: 2, ExpertHidden: []int{4, 3}, Tower: []int{2}}, "ctr", "cvr", "dwell")
	ps := m.Params()
	groups := m.MatchingLayers()
	// 2 expert layers + 1 tower layer + head, weight and bias each.
	if len(groups) != 8 {
		t.Fatalf("%d groups, want 8", len(groups))
	}
	covered := map[int]bool{}
	for _, g := range groups {
		if len(g) != 3 {
			t.Fatalf("group %v: want one entry per task", g)
		}
		for ti, i := range g {
			covered[i] = true
			if !slices.Equal(ps[i].Shape, ps[g[0]].Shape) {
				t.Errorf("group %v: shapes differ", g)
			}
			if !strings.Contains(ps[i].Name, m.heads[ti]) || strings.Replace(ps[i].Name, m.heads[ti], "T", 1) != strings.Replace(ps[g[0]].Name, m.heads[0], "T", 1) {
				t.Errorf("group mixes %s and %s", ps[i].Name, ps[g[0]].Name)
			}
		}
	}
	if len(covered) != len(ps) {
		t.Errorf("soft: %d of %d params matched, want all", len(covered), len(ps))
	}
	if g := testModel(t, Config{}, "one").MatchingLayers(); len(g) != 0 {
		t.Errorf("one task: %v", g)
	}
}

func TestGateWeights(t *testing.T) {
	m := testModel(t, Config{Arch: ArchCGC, Experts: 3, TaskExperts: 2, EmbeddingDim: 2, ExpertHidden: []int{4}, Seed: 2})
	b := randomBatch(smallLayout(), 7, rand.New(rand.NewPCG(2, 2)))
	ws := m.NewWorkspace(10)
	if w, _, _ := ws.GateWeights(0); w != nil {
		t.Error("gate weights before any forward")
	}
	if err := m.Forward(ws, b); err != nil {
		t.Fatal(err)
	}
	for task := range 2 {
		w, rows, n := ws.GateWeights(task)
		if rows != 7 || n != 5 || len(w) != 35 {
			t.Fatalf("task %d: %d x %d (%d values), want 7 x 5", task, rows, n, len(w))
		}
		for r := 0; r < rows; r++ {
			var s float64
			for _, v := range w[r*n : r*n+n] {
				if v <= 0 {
					t.Errorf("weight %g", v)
				}
				s += float64(v)
			}
			if math.Abs(s-1) > 1e-5 {
				t.Errorf("row %d sums to %g", r, s)
			}
		}
	}
}

// TestSlicedBatch runs a SliceTo view (offsets not starting at 0) and
// compares with the full batch.
func TestSlicedBatch(t *testing.T) {
	m := testModel(t, Config{Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{4}, Seed: 3})
	b := randomBatch(smallLayout(), 10, rand.New(rand.NewPCG(6, 6)))
	ws := m.NewWorkspace(10)
	if err := m.Forward(ws, b); err != nil {
		t.Fatal(err)
	}
	full := slices.Clone(ws.Logits[1])
	var s features.Batch
	b.SliceTo(&s, 4, 9)
	if err := m.Forward(ws, &s); err != nil {
		t.Fatal(err)
	}
	if !bitsEqual([][]float32{full[4:9]}, [][]float32{ws.Logits[1]}) {
		t.Errorf("slice logits %v, full %v", ws.Logits[1], full[4:9])
	}
	g := m.NewGrads(10)
	if err := m.Backward(ws, &s, [][]float32{make([]float32, 5), make([]float32, 5)}, g); err != nil {
		t.Fatal(err)
	}
}

func TestBatchErrors(t *testing.T) {
	m := testModel(t, Config{Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{4}, Seed: 3})
	mk := func(edit func(b *features.Batch)) *features.Batch {
		b := randomBatch(smallLayout(), 6, rand.New(rand.NewPCG(6, 6)))
		edit(b)
		return b
	}
	cases := []struct {
		b    *features.Batch
		want string
	}{
		{nil, "batch is nil"},
		{mk(func(b *features.Batch) { b.Rows = 9 }), "9 rows, want 0..8"},
		{mk(func(b *features.Batch) { b.Sparse = b.Sparse[:2] }), "2 sparse columns, the layout 3"},
		{mk(func(b *features.Batch) { b.DenseWidth = 2 }), "dense width 2"},
		{mk(func(b *features.Batch) { b.Dense = b.Dense[:5] }), "dense block has 5 values"},
		{mk(func(b *features.Batch) { b.Sparse[0].IDs[3] = 7 }), `field "user" row 3: id 7 outside the table [0, 7)`},
		{mk(func(b *features.Batch) { b.Sparse[0].IDs[1] = -1 }), `field "user" row 1: id -1`},
		{mk(func(b *features.Batch) { b.Sparse[0].Offsets = []int32{0, 1, 2, 3, 4, 5, 6} }), `field "user": has offsets`},
		{mk(func(b *features.Batch) { b.Sparse[1].Offsets = nil }), `field "tags": 0 offsets for 6 rows`},
		{mk(func(b *features.Batch) { b.Sparse[2].Offsets[6] = int32(len(b.Sparse[2].IDs) + 1) }), `field "cats": offsets [0, `},
		{mk(func(b *features.Batch) {
			o := b.Sparse[2].Offsets
			o[2], o[3] = o[3]+1, o[2]
		}), `field "cats" row 2: offsets decrease`},
		{mk(func(b *features.Batch) {
			ids, o := b.Sparse[1].IDs, b.Sparse[1].Offsets
			for r := 5; r >= 0; r-- {
				if o[r+1] > o[r] {
					ids[o[r]] = 5
					break
				}
			}
		}), `field "tags" row `},
	}
	ws := m.NewWorkspace(8)
	for _, tc := range cases {
		err := m.Forward(ws, tc.b)
		if err == nil || !errors.Is(err, ErrBatch) || !strings.HasPrefix(err.Error(), "mmoe: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want ErrBatch mentioning %q", err, tc.want)
		}
	}
	// Backward misuse.
	b := randomBatch(smallLayout(), 6, rand.New(rand.NewPCG(6, 6)))
	g := m.NewGrads(8)
	dl := [][]float32{make([]float32, 6), make([]float32, 6)}
	if err := m.Backward(ws, b, dl, g); err == nil || !strings.Contains(err.Error(), "run Forward first") {
		t.Errorf("backward without forward: %v", err)
	}
	if err := m.Forward(ws, b); err != nil {
		t.Fatal(err)
	}
	if err := m.Backward(ws, b, dl[:1], g); err == nil || !strings.Contains(err.Error(), "1 logit gradients for 2 heads") {
		t.Errorf("short dLogits: %v", err)
	}
	if err := m.Backward(ws, b, [][]float32{dl[0], dl[1][:3]}, g); err == nil || !strings.Contains(err.Error(), `head "cvr": 3 logit gradients for 6 rows`) {
		t.Errorf("short dLogits row: %v", err)
	}
	other := testModel(t, Config{Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{4}, Seed: 3})
	if err := other.Forward(ws, b); err == nil || !errors.Is(err, ErrBatch) {
		t.Errorf("foreign workspace: %v", err)
	}
	if err := m.Backward(ws, b, dl, other.NewGrads(8)); err == nil || !errors.Is(err, ErrBatch) {
		t.Errorf("foreign grads: %v", err)
	}
}

// TestZeroAllocs: Forward and Backward allocate nothing in steady state.
func TestZeroAllocs(t *testing.T) {
	for _, arch := range []string{ArchMMoE, ArchPLE, ArchSoft} {
		cfg := Config{Arch: arch, EmbeddingDim: 4, ExpertHidden: []int{8, 4}, Activation: ActGELU, Seed: 1}
		if arch != ArchSoft {
			cfg.Experts = 3
		}
		m := testModel(t, cfg)
		b := randomBatch(smallLayout(), 32, rand.New(rand.NewPCG(1, 1)))
		ws, g := m.NewWorkspace(32), m.NewGrads(32)
		dl := [][]float32{make([]float32, 32), make([]float32, 32)}
		step := func() {
			if err := m.Forward(ws, b); err != nil {
				t.Fatal(err)
			}
			if err := m.Backward(ws, b, dl, g); err != nil {
				t.Fatal(err)
			}
		}
		step()
		if n := testing.AllocsPerRun(20, step); n != 0 {
			t.Errorf("%s: %g allocs per step", arch, n)
		}
	}
}

// TestGradsAddFrom: the gradients of two halves of a batch, added, equal the
// gradient of the whole batch.
func TestGradsAddFrom(t *testing.T) {
	m := testModel(t, Config{Arch: ArchCGC, Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{4, 3}, Activation: ActTanh, Seed: 3})
	b := randomBatch(smallLayout(), 12, rand.New(rand.NewPCG(7, 7)))
	dl := [][]float32{make([]float32, 12), make([]float32, 12)}
	for i := range dl[0] {
		dl[0][i], dl[1][i] = float32(i%5)-2, float32(i%3)-1
	}
	grad := func(lo, hi int) *Grads {
		var s features.Batch
		b.SliceTo(&s, lo, hi)
		ws, g := m.NewWorkspace(12), m.NewGrads(12)
		if err := m.Forward(ws, &s); err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(ws, &s, [][]float32{dl[0][lo:hi], dl[1][lo:hi]}, g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	full, a, c := grad(0, 12), grad(0, 5), grad(5, 12)
	if err := a.AddFrom(c); err != nil {
		t.Fatal(err)
	}
	near := func(x, y float32) bool { return math.Abs(float64(x-y)) <= 1e-5+1e-4*math.Abs(float64(y)) }
	for i := range full.Dense {
		for k := range full.Dense[i] {
			if !near(a.Dense[i][k], full.Dense[i][k]) {
				t.Fatalf("dense %d[%d]: %g, want %g", i, k, a.Dense[i][k], full.Dense[i][k])
			}
		}
	}
	for f := range full.Sparse {
		want := map[int32][]float32{}
		for i, id := range full.Sparse[f].Rows {
			want[id] = full.Sparse[f].Grad[i*3 : i*3+3]
		}
		got := a.Sparse[f]
		if len(got.Rows) != len(want) {
			t.Fatalf("field %d: %d rows, want %d", f, len(got.Rows), len(want))
		}
		for i, id := range got.Rows {
			for d := 0; d < 3; d++ {
				if !near(got.Grad[i*3+d], want[id][d]) {
					t.Fatalf("field %d row %d: %v, want %v", f, id, got.Grad[i*3:i*3+3], want[id])
				}
			}
		}
	}
	if err := a.AddFrom(testModel(t, Config{Seed: 1}).NewGrads(1)); err == nil {
		t.Error("AddFrom accepted another model's gradients")
	}
}

func TestEmptyBatch(t *testing.T) {
	m := testModel(t, Config{Arch: ArchPLE, Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{4, 3}, Seed: 3})
	b := randomBatch(smallLayout(), 0, rand.New(rand.NewPCG(1, 1)))
	ws, g := m.NewWorkspace(4), m.NewGrads(4)
	if err := m.Forward(ws, b); err != nil {
		t.Fatal(err)
	}
	if len(ws.Logits) != 2 || len(ws.Logits[0]) != 0 {
		t.Fatalf("logits %v", ws.Logits)
	}
	if err := m.Backward(ws, b, [][]float32{nil, nil}, g); err != nil {
		t.Fatal(err)
	}
	for i, d := range g.Dense {
		if slices.Max(d) != 0 || slices.Min(d) != 0 {
			t.Fatalf("param %d: nonzero gradient from an empty batch", i)
		}
	}
	ctx := randomBatch(smallLayout(), 1, rand.New(rand.NewPCG(1, 1)))
	s := m.NewSplit()
	if err := s.Forward(s.NewWorkspace(4), ctx, b); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentForward: Forward and Backward on one model from several
// goroutines with their own workspaces give the sequential results (run
// with -race to check the sharing).
func TestConcurrentForward(t *testing.T) {
	m := testModel(t, Config{Arch: ArchCGC, Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{5, 4}, Seed: 3})
	want := logitsOf(t, m, 8)
	errs := make(chan error, 4)
	got := make([][][]float32, 4)
	for i := range got {
		go func() {
			b := randomBatch(smallLayout(), 9, rand.New(rand.NewPCG(8, 1)))
			ws, g := m.NewWorkspace(9), m.NewGrads(9)
			var err error
			for k := 0; k < 20 && err == nil; k++ {
				if err = m.Forward(ws, b); err == nil {
					err = m.Backward(ws, b, [][]float32{ws.Logits[0], ws.Logits[1]}, g)
				}
			}
			got[i] = [][]float32{slices.Clone(ws.Logits[0]), slices.Clone(ws.Logits[1])}
			errs <- err
		}()
	}
	for range got {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range got {
		if !bitsEqual(got[i], want) {
			t.Errorf("goroutine %d: logits differ from the sequential run", i)
		}
	}
}

func TestTaskOfAndLastShared(t *testing.T) {
	m := testModel(t, Config{Arch: ArchPLE, Experts: 2, Levels: 2, EmbeddingDim: 2, ExpertHidden: []int{4, 3}, Seed: 1})
	ps := m.Params()
	for i, p := range ps {
		want := -1
		for h, name := range m.heads {
			if strings.Contains(p.Name, "."+name+".") || strings.HasPrefix(p.Name, "heads."+name) {
				want = h
			}
		}
		if got := m.TaskOf(i); got != want {
			t.Errorf("TaskOf(%s) = %d, want %d", p.Name, got, want)
		}
	}
	var names []string
	for _, i := range m.LastSharedLayer() {
		names = append(names, ps[i].Name)
	}
	want := []string{"levels.1.experts.0.layers.1.weight", "levels.1.experts.0.layers.1.bias", "levels.1.experts.1.layers.1.weight", "levels.1.experts.1.layers.1.bias"}
	if !slices.Equal(names, want) {
		t.Errorf("LastSharedLayer %v, want %v", names, want)
	}
	if l := testModel(t, Config{Arch: ArchSingle}).LastSharedLayer(); len(l) != 0 {
		t.Errorf("single shares %v", l)
	}
}

// TestReplica checks that a Replica computes what Forward and Backward on
// a Workspace and Grads of its own size compute.
func TestReplica(t *testing.T) {
	m := testModel(t, Config{Arch: ArchCGC, Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{4}, Seed: 4})
	b := randomBatch(smallLayout(), 6, rand.New(rand.NewPCG(7, 7)))
	dl := [][]float32{{1, -2, 0.5, 0, 3, 1}, {0.25, 1, -1, 2, 0, -0.5}}
	ws, g := m.NewWorkspace(6), m.NewGrads(6)
	if err := m.Forward(ws, b); err != nil {
		t.Fatal(err)
	}
	if err := m.Backward(ws, b, dl, g); err != nil {
		t.Fatal(err)
	}
	r := m.NewReplica(6)
	logits, err := r.Forward(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bitsEqual(logits, ws.Logits) {
		t.Fatal("replica logits differ")
	}
	if err := r.Backward(b, dl); err != nil {
		t.Fatal(err)
	}
	if !bitsEqual(r.DenseGrads(), g.Dense) {
		t.Fatal("replica dense gradients differ")
	}
	for f := range g.Sparse {
		rows, grad := r.SparseGrad(f)
		if !slices.Equal(rows, g.Sparse[f].Rows) || !bitsEqual([][]float32{grad}, [][]float32{g.Sparse[f].Grad}) {
			t.Fatalf("table %d: replica sparse gradient differs", f)
		}
	}
	names, values := m.DenseParams()
	tn, tv, dims := m.EmbeddingTables()
	for i, p := range m.Params() {
		if names[i] != p.Name || &values[i][0] != &p.Data[0] || len(values[i]) != len(p.Data) {
			t.Fatalf("DenseParams %d: %s, want %s aliasing the model", i, names[i], p.Name)
		}
	}
	for i, e := range m.Embeddings() {
		if tn[i] != e.Name || &tv[i][0] != &e.Data[0] || dims[i] != e.Dim {
			t.Fatalf("EmbeddingTables %d: %s, want %s aliasing the model", i, tn[i], e.Name)
		}
	}
	if _, err := r.Forward(randomBatch(smallLayout(), 7, rand.New(rand.NewPCG(1, 1)))); err == nil {
		t.Fatal("a batch larger than the replica accepted")
	}
}

// TestBackwardOverwrites: a Backward into gradients and scratch full of
// NaN (left by anything before) gives the bits of one into fresh ones,
// for every architecture, with one- and two-layer experts. Backward sets
// some gradients and scratch without clearing them first; this checks
// that it sets all of them.
func TestBackwardOverwrites(t *testing.T) {
	nan := float32(math.NaN())
	poison := func(xs ...[]float32) {
		for _, x := range xs {
			for i := range x {
				x[i] = nan
			}
		}
	}
	for _, arch := range Archs {
		for _, hidden := range [][]int{{4}, {5, 4}} {
			cfg := Config{Arch: arch, EmbeddingDim: 3, ExpertHidden: hidden, Seed: 5}
			switch arch {
			case ArchMMoE, ArchOMoE:
				cfg.Experts = 3
			case ArchCGC:
				cfg.Experts, cfg.TaskExperts = 2, 2
			case ArchPLE:
				cfg.Experts, cfg.TaskExperts, cfg.Levels = 2, 1, 2
			}
			m := testModel(t, cfg)
			b := randomBatch(smallLayout(), 9, rand.New(rand.NewPCG(2, 3)))
			dl := [][]float32{make([]float32, 9), make([]float32, 9)}
			for i := range dl[0] {
				dl[0][i], dl[1][i] = float32(i%4)-1.5, float32(i%3)-1
			}
			ws := m.NewWorkspace(9)
			if err := m.Forward(ws, b); err != nil {
				t.Fatal(err)
			}
			fresh, used := m.NewGrads(9), m.NewGrads(9)
			poison(used.arena, used.dx)
			for _, lg := range used.lv {
				poison(lg.dy...)
				poison(lg.dout...)
				for _, d := range lg.dhid {
					poison(d...)
				}
			}
			for _, d := range used.dtw {
				poison(d...)
			}
			for _, g := range []*Grads{fresh, used} {
				if err := m.Backward(ws, b, dl, g); err != nil {
					t.Fatal(err)
				}
			}
			for i := range fresh.arena {
				if math.Float32bits(used.arena[i]) != math.Float32bits(fresh.arena[i]) {
					t.Fatalf("%s %v: gradient value %d: %v after NaN, %v fresh", arch, hidden, i, used.arena[i], fresh.arena[i])
				}
			}
			for f := range fresh.Sparse {
				if !slices.Equal(used.Sparse[f].Rows, fresh.Sparse[f].Rows) || !slices.Equal(used.Sparse[f].Grad, fresh.Sparse[f].Grad) {
					t.Fatalf("%s %v: sparse gradient %d differs after NaN", arch, hidden, f)
				}
			}
		}
	}
}
