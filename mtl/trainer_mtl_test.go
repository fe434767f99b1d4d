package mtl_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// regLayout has one sparse field, four dense inputs and two labels.
var regLayout = features.Layout{
	Sparse: []features.SparseField{{Name: "a", Cardinality: 20}},
	Dense:  []features.DenseField{{Name: "x0"}, {Name: "x1"}, {Name: "x2"}, {Name: "x3"}},
	Labels: []string{"y1", "y2"},
}

// regBatch makes two regression targets of the same inputs; task 2's target
// (and so its loss gradient) is scale2 times larger.
func regBatch(rng *rand.Rand, rows int, scale2 float32) *features.Batch {
	b := &features.Batch{Rows: rows, DenseWidth: 4, Dense: make([]float32, 4*rows)}
	ids := make([]int32, rows)
	y1, y2 := make([]float32, rows), make([]float32, rows)
	for i := range rows {
		ids[i] = int32(rng.IntN(20))
		x := b.Dense[4*i : 4*i+4]
		for j := range x {
			x[j] = float32(rng.NormFloat64())
		}
		y1[i] = x[0] - 0.5*x[1] + 0.1*float32(ids[i]%3)
		y2[i] = scale2 * (x[2] + 0.5*x[0]*x[3])
	}
	b.Sparse = []features.SparseColumn{{IDs: ids}}
	b.Labels = [][]float32{y1, y2}
	return b
}

func regTasks(t *testing.T, n int) *mtl.TaskSet {
	t.Helper()
	cfgs := []mtl.TaskConfig{{Name: "t1", Kind: "regression", Label: "y1"}, {Name: "t2", Kind: "regression", Label: "y2"}}
	ts, err := mtl.NewTaskSet(cfgs[:n])
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func regModel(t *testing.T, arch string, heads int) *mmoe.Model {
	t.Helper()
	l := regLayout
	l.Labels = l.Labels[:heads]
	cfg := mmoe.Config{Arch: arch, EmbeddingDim: 3, ExpertHidden: []int{8}, Tower: []int{4}, Seed: 11}
	if arch == mmoe.ArchMMoE || arch == mmoe.ArchOMoE {
		cfg.Experts = 3
	}
	m, err := mmoe.New(cfg, l, []string{"t1", "t2"}[:heads])
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refTaskNorm computes ‖∇_W L_task‖ on the last shared layer directly:
// forward, the loss of that task alone, backward.
func refTaskNorm(t *testing.T, m *mmoe.Model, ts *mtl.TaskSet, b *features.Batch, task int) float64 {
	t.Helper()
	ws, g := m.NewWorkspace(b.Rows), m.NewGrads(b.Rows)
	if err := m.Forward(ws, b); err != nil {
		t.Fatal(err)
	}
	T := ts.Len()
	dl := make([][]float32, T)
	logits := make([][]float32, T)
	for h := range T {
		dl[h] = make([]float32, b.Rows)
		logits[h] = ws.Logits[h][:b.Rows]
	}
	w := make([]float64, T)
	w[task] = 1
	if _, err := ts.LossTo(nil, dl, logits, b.Labels, nil, w); err != nil {
		t.Fatal(err)
	}
	if err := m.Backward(ws, b, dl, g); err != nil {
		t.Fatal(err)
	}
	var ss float64
	for _, i := range m.LastSharedLayer() {
		for _, v := range g.Dense[i] {
			ss += float64(v) * float64(v)
		}
	}
	return math.Sqrt(ss)
}

func TestGradNormMeasuresNormsAndMovesWeights(t *testing.T) {
	m := regModel(t, mmoe.ArchSharedBottom, 2)
	ts := regTasks(t, 2)
	tr, err := mtl.NewTrainer(m, ts, mtl.TrainConfig{BatchSize: 128, Workers: 2, Weighting: mtl.WeightingGradNorm,
		Dense: mtl.AdamConfig{LR: 1e-3}, GradNorm: mtl.GradNormTrainConfig{LR: 0.01}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rng := rand.New(rand.NewPCG(4, 5))
	// Task 2's target is 10x larger, so its gradient on the shared layer
	// is far larger: GradNorm must move weight from task 2 to task 1.
	b := regBatch(rng, 128, 10)
	want := []float64{refTaskNorm(t, m, ts, b, 0), refTaskNorm(t, m, ts, b, 1)}
	if _, err := tr.Step(b); err != nil {
		t.Fatal(err)
	}
	got := tr.LastGradNorms()
	for k := range want {
		if math.Abs(got[k]-want[k]) > 1e-4*want[k] {
			t.Fatalf("task %d: trainer's gradient norm %v, direct %v", k, got[k], want[k])
		}
	}
	if !(want[1] > 3*want[0]) {
		t.Fatalf("constructed problem: want task 2's norm >> task 1's, have %v", want)
	}
	w := tr.Weights()
	if !(w[0] > 1 && w[1] < 1) || math.Abs(w[0]+w[1]-2) > 1e-9 {
		t.Fatalf("after one step weights %v: want task 1 up, task 2 down, sum 2", w)
	}
	for range 30 {
		if _, err := tr.Step(regBatch(rng, 128, 10)); err != nil {
			t.Fatal(err)
		}
	}
	w = tr.Weights()
	// Balanced: w_t·g_t should be closer than at the start (ratio ~10).
	g := tr.LastGradNorms()
	before := want[1] / want[0]
	after := (w[1] * g[1]) / (w[0] * g[0])
	if !(w[0] > 1.5 && after < before/2) {
		t.Fatalf("after 31 steps weights %v, weighted norm ratio %v (start %v)", w, after, before)
	}
}

func TestGradNormEveryHoldsWeights(t *testing.T) {
	m := regModel(t, mmoe.ArchMMoE, 2)
	tr, err := mtl.NewTrainer(m, regTasks(t, 2), mtl.TrainConfig{BatchSize: 64, Workers: 1, Weighting: mtl.WeightingGradNorm,
		GradNorm: mtl.GradNormTrainConfig{Every: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	var prev []float64
	for s := range 6 {
		if _, err := tr.Step(regBatch(rng, 64, 5)); err != nil {
			t.Fatal(err)
		}
		w := append([]float64(nil), tr.Weights()...)
		changed := prev != nil && (w[0] != prev[0] || w[1] != prev[1])
		if s%3 != 0 && changed {
			t.Fatalf("step %d changed the weights %v -> %v with every: 3", s+1, prev, w)
		}
		if s%3 == 0 && s > 0 && !changed {
			t.Fatalf("step %d did not update the weights", s+1)
		}
		prev = w
	}
}

func TestGradNormStepAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	m := regModel(t, mmoe.ArchMMoE, 2)
	tr, err := mtl.NewTrainer(m, regTasks(t, 2), mtl.TrainConfig{BatchSize: 64, Workers: 2, Weighting: mtl.WeightingGradNorm})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	b := regBatch(rand.New(rand.NewPCG(2, 2)), 64, 1)
	for range 3 {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}
	if a := testing.AllocsPerRun(10, func() {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}); a > 0 {
		t.Fatalf("a GradNorm step allocates %v times", a)
	}
}

func TestFreezeSharedLeavesSharedBitIdentical(t *testing.T) {
	for _, arch := range []string{mmoe.ArchMMoE, mmoe.ArchSharedBottom} {
		m := regModel(t, arch, 2)
		tr, err := mtl.NewTrainer(m, regTasks(t, 2), mtl.TrainConfig{BatchSize: 64, Workers: 2, Dense: mtl.AdamConfig{LR: 1e-2}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.FreezeShared(); err != nil {
			t.Fatal(err)
		}
		before := map[string][]float32{}
		for _, p := range m.Params() {
			before[p.Name] = append([]float32(nil), p.Data...)
		}
		for _, e := range m.Embeddings() {
			before[e.Name] = append([]float32(nil), e.Data...)
		}
		rng := rand.New(rand.NewPCG(3, 3))
		for range 5 {
			if _, err := tr.Step(regBatch(rng, 64, 1)); err != nil {
				t.Fatal(err)
			}
		}
		tr.Close()
		var moved, shared int
		for i, p := range m.Params() {
			same := slicesEqual(before[p.Name], p.Data)
			if m.TaskOf(i) < 0 {
				shared++
				if !same {
					t.Fatalf("%s: frozen shared parameter %s changed", arch, p.Name)
				}
			} else if !same {
				moved++
			}
		}
		for _, e := range m.Embeddings() {
			if !slicesEqual(before[e.Name], e.Data) {
				t.Fatalf("%s: frozen embedding %s changed", arch, e.Name)
			}
		}
		if shared == 0 || moved == 0 {
			t.Fatalf("%s: %d shared parameters, %d task parameters moved: want both > 0", arch, shared, moved)
		}
	}
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// matchDist is Σ over matching layers of ‖θ_1 − θ_2‖².
func matchDist(m *mmoe.Model) float64 {
	ps := m.Params()
	var d float64
	for _, g := range m.MatchingLayers() {
		a, b := ps[g[0]].Data, ps[g[1]].Data
		for j := range a {
			x := float64(a[j] - b[j])
			d += x * x
		}
	}
	return d
}

func TestSoftPenaltyPullsMatchingLayersTogether(t *testing.T) {
	run := func(lambda float64) (float64, float64, *mtl.Trainer) {
		m := regModel(t, mmoe.ArchSoft, 2)
		tr, err := mtl.NewTrainer(m, regTasks(t, 2), mtl.TrainConfig{BatchSize: 64, Workers: 1, SoftPenalty: lambda, Dense: mtl.AdamConfig{LR: 1e-2}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.Close)
		d0 := matchDist(m)
		rng := rand.New(rand.NewPCG(7, 7))
		for range 40 {
			if _, err := tr.Step(regBatch(rng, 64, 1)); err != nil {
				t.Fatal(err)
			}
		}
		return d0, matchDist(m), tr
	}
	d0, weak, trw := run(1e-9)
	_, strong, trs := run(0.5)
	if trw.SoftLambda() != 1e-9 || trs.SoftLambda() != 0.5 {
		t.Fatalf("lambda in use %v, %v", trw.SoftLambda(), trs.SoftLambda())
	}
	if !(strong < weak/2 && strong < d0/2) {
		t.Fatalf("matching-layer distance: start %v, lambda 1e-9 %v, lambda 0.5 %v: want the penalty to pull them together", d0, weak, strong)
	}
	if !(trs.SoftPenalty() > 0) {
		t.Fatalf("soft penalty value %v", trs.SoftPenalty())
	}
	m := regModel(t, mmoe.ArchSoft, 2)
	tr, err := mtl.NewTrainer(m, regTasks(t, 2), mtl.TrainConfig{BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if tr.SoftLambda() != 1e-3 {
		t.Fatalf("default soft_penalty %v, want 1e-3", tr.SoftLambda())
	}
}

func TestMultiTaskConfigErrors(t *testing.T) {
	cases := []struct {
		name  string
		arch  string
		heads int
		cfg   mtl.TrainConfig
		want  string
	}{
		{"gradnorm one task", mmoe.ArchMMoE, 1, mtl.TrainConfig{Weighting: "gradnorm"}, "gradnorm needs at least 2 tasks"},
		{"gradnorm nothing shared", mmoe.ArchSingle, 2, mtl.TrainConfig{Weighting: "gradnorm"}, "arch single shares none"},
		{"soft penalty other arch", mmoe.ArchMMoE, 2, mtl.TrainConfig{SoftPenalty: 0.1}, "soft_penalty 0.1 is for arch soft"},
		{"negative penalty", mmoe.ArchSoft, 2, mtl.TrainConfig{SoftPenalty: -1}, "soft_penalty -1"},
		{"gradnorm every", mmoe.ArchMMoE, 2, mtl.TrainConfig{Weighting: "gradnorm", GradNorm: mtl.GradNormTrainConfig{Every: -2}}, "gradnorm.every -2"},
		{"gradnorm alpha", mmoe.ArchMMoE, 2, mtl.TrainConfig{Weighting: "gradnorm", GradNorm: mtl.GradNormTrainConfig{Alpha: -1}}, "alpha -1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := regModel(t, c.arch, c.heads)
			c.cfg.BatchSize = 8
			tr, err := mtl.NewTrainer(m, regTasks(t, c.heads), c.cfg)
			if err == nil {
				tr.Close()
				t.Fatalf("no error, want %q", c.want)
			}
			if !errors.Is(err, mtl.ErrConfig) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "mtl: ") {
				t.Fatalf("error %q: want ErrConfig containing %q", err, c.want)
			}
		})
	}
}

func TestParseTrainConfigGradNorm(t *testing.T) {
	c, err := mtl.ParseTrainConfig([]byte("train:\n  weighting: gradnorm\n  gradnorm:\n    alpha: 0.5\n    every: 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Weighting != "gradnorm" || c.GradNorm.Alpha != 0.5 || c.GradNorm.Every != 4 {
		t.Fatalf("parsed %+v", c)
	}
	if _, err := mtl.ParseTrainConfig([]byte("train:\n  weighting: gradnorm\n  gradnorm:\n    lr: -1\n")); err == nil {
		t.Fatal("gradnorm lr -1 accepted")
	}
}

// BenchmarkTrainerStepWeighting compares a step with fixed weights to one
// that measures GradNorm's per-task gradient norms (every step, and every
// 10th), and to PCGrad's and MetaBalance's steps, on a 2-task MMoE.
func BenchmarkTrainerStepWeighting(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  mtl.TrainConfig
	}{
		{"fixed", mtl.TrainConfig{}},
		{"gradnorm", mtl.TrainConfig{Weighting: mtl.WeightingGradNorm}},
		{"gradnorm-every10", mtl.TrainConfig{Weighting: mtl.WeightingGradNorm, GradNorm: mtl.GradNormTrainConfig{Every: 10}}},
		{"pcgrad", mtl.TrainConfig{Weighting: mtl.WeightingPCGrad}},
		{"metabalance", mtl.TrainConfig{Weighting: mtl.WeightingMetaBalance}},
	} {
		b.Run(c.name, func(b *testing.B) {
			m, err := mmoe.New(mmoe.Config{Arch: mmoe.ArchMMoE, Experts: 8, EmbeddingDim: 8, ExpertHidden: []int{64, 32}, Tower: []int{16}, Seed: 1}, regLayout, []string{"t1", "t2"})
			if err != nil {
				b.Fatal(err)
			}
			ts, err := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "t1", Kind: "regression", Label: "y1"}, {Name: "t2", Kind: "regression", Label: "y2"}})
			if err != nil {
				b.Fatal(err)
			}
			cfg := c.cfg
			cfg.BatchSize, cfg.Workers = 512, 1
			tr, err := mtl.NewTrainer(m, ts, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			batch := regBatch(rand.New(rand.NewPCG(1, 1)), 512, 1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.Step(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
