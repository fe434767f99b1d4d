package mtl_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// syntheticBatch makes a learnable batch: click depends on field 0's id
// parity and the dense feature; conversion on field 1.
func syntheticBatch(rng *rand.Rand, rows int) *features.Batch {
	b := &features.Batch{Rows: rows, DenseWidth: 1, Dense: make([]float32, rows)}
	f0, f1 := make([]int32, rows), make([]int32, rows)
	click, conv := make([]float32, rows), make([]float32, rows)
	for i := range rows {
		f0[i], f1[i] = int32(rng.IntN(50)), int32(rng.IntN(30))
		b.Dense[i] = float32(rng.NormFloat64())
		z := -1.5 + 1.5*float64(f0[i]%2) + 0.8*float64(b.Dense[i])
		if rng.Float64() < 1/(1+math.Exp(-z)) {
			click[i] = 1
			if rng.Float64() < 0.2+0.6*float64(f1[i]%3)/2 {
				conv[i] = 1
			}
		}
	}
	b.Sparse = []features.SparseColumn{{IDs: f0}, {IDs: f1}}
	b.Labels = [][]float32{click, conv}
	return b
}

func newTrainer(t *testing.T, workers int) (*mmoe.Model, *mtl.Trainer) {
	t.Helper()
	return newTrainerWith(t, workers, "")
}

func newTrainerWith(t *testing.T, workers int, weighting string) (*mmoe.Model, *mtl.Trainer) {
	t.Helper()
	layout := features.Layout{
		Sparse: []features.SparseField{{Name: "a", Cardinality: 50}, {Name: "b", Cardinality: 30, Side: features.SideCandidate}},
		Dense:  []features.DenseField{{Name: "x"}},
		Labels: []string{"click", "conversion"},
	}
	m, err := mmoe.New(mmoe.Config{EmbeddingDim: 4, Experts: 3, ExpertHidden: []int{8}, Tower: []int{4}, Seed: 3}, layout, []string{"ctr", "cvr"})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "ctr", Kind: "binary", Label: "click"}, {Name: "cvr", Kind: "esmm", Label: "conversion", Parent: "ctr"}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := mtl.NewTrainer(m, ts, mtl.TrainConfig{BatchSize: 256, Workers: workers, Embedding: mtl.EmbeddingConfig{LR: 0.1}, Dense: mtl.AdamConfig{LR: 1e-2}, Weighting: weighting})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return m, tr
}

func train(t *testing.T, workers, steps int) (*mmoe.Model, []float64) {
	m, tr := newTrainer(t, workers)
	rng := rand.New(rand.NewPCG(1, 2))
	var first, last []float64
	for s := range steps {
		l, err := tr.Step(syntheticBatch(rng, 256))
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			first = append([]float64(nil), l...)
		}
		last = append(last[:0], l...)
	}
	return m, append(first, last...)
}

func TestTrainerLearnsAndIsDeterministic(t *testing.T) {
	m1, l1 := train(t, 1, 150)
	if !(l1[2] < 0.9*l1[0]) || !(l1[3] < 0.9*l1[1]) {
		t.Fatalf("losses did not fall: first %v, last %v", l1[:2], l1[2:])
	}
	m2, _ := train(t, 1, 150)
	p1, p2 := m1.Params(), m2.Params()
	for i := range p1 {
		for j := range p1[i].Data {
			if p1[i].Data[j] != p2[i].Data[j] {
				t.Fatalf("two runs with one worker differ at %s[%d]", p1[i].Name, j)
			}
		}
	}
}

func TestTrainerWorkersMatchOneWorker(t *testing.T) {
	m1, _ := train(t, 1, 20)
	m2, _ := train(t, 2, 20)
	p1, p2 := m1.Params(), m2.Params()
	var maxd float64
	for i := range p1 {
		for j := range p1[i].Data {
			maxd = max(maxd, math.Abs(float64(p1[i].Data[j]-p2[i].Data[j])))
		}
	}
	// Summation order differs between one and two workers, so results
	// agree within float32 round-off amplified by 20 Adam steps.
	if maxd > 1e-3 {
		t.Fatalf("1 vs 2 workers: max parameter difference %g", maxd)
	}
	e1, e2 := m1.Embeddings(), m2.Embeddings()
	for i := range e1 {
		for j := range e1[i].Data {
			if d := math.Abs(float64(e1[i].Data[j] - e2[i].Data[j])); d > 1e-3 {
				t.Fatalf("embedding %s[%d]: 1 vs 2 workers differ by %g", e1[i].Name, j, d)
			}
		}
	}
	m3, _ := train(t, 2, 20)
	p3 := m3.Params()
	for i := range p2 {
		for j := range p2[i].Data {
			if p2[i].Data[j] != p3[i].Data[j] {
				t.Fatalf("two runs with two workers differ at %s[%d]", p2[i].Name, j)
			}
		}
	}
}

func TestTrainerStepAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	_, tr := newTrainer(t, 2)
	rng := rand.New(rand.NewPCG(5, 6))
	b := syntheticBatch(rng, 256)
	for range 3 {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("Step allocates %v times per call", allocs)
	}
}

// readsGrads is the fixed weighting with a BeforeUpdate that asks for the
// batch's dense gradients, which makes the trainer sum the workers'
// gradients in a pass of their own before the optimizer.
type readsGrads struct{ w []float64 }

func (r readsGrads) Weights() []float64                  { return r.w }
func (readsGrads) BeforeBackward(*mtl.BalanceStep) error { return nil }
func (readsGrads) AfterUpdate(*mtl.BalanceStep) error    { return nil }
func (readsGrads) State() mtl.State                      { return mtl.State{} }
func (readsGrads) SetState(mtl.State) error              { return nil }
func (readsGrads) BeforeUpdate(s *mtl.BalanceStep) error {
	if s.DenseGrads() == nil {
		return errors.New("no dense gradients in BeforeUpdate")
	}
	return nil
}

// TestFusedOptimizerMatchesReduced checks that the optimizer step that
// sums the workers' dense gradients in its own pass (no hook reads them)
// gives the bits of the reduction followed by Adam, for 2 workers (summed
// inside the Adam kernel) and 3 (summed per worker range first).
func TestFusedOptimizerMatchesReduced(t *testing.T) {
	mtl.KnownWeightings["test_reads_grads"] = mtl.WeightingDef{New: func(env mtl.WeightingEnv) (mtl.Balancer, error) {
		return readsGrads{w: []float64{1, 1}}, nil
	}}
	defer delete(mtl.KnownWeightings, "test_reads_grads")
	for _, workers := range []int{2, 3} {
		var models []*mmoe.Model
		for _, weighting := range []string{mtl.WeightingFixed, "test_reads_grads"} {
			m, tr := newTrainerWith(t, workers, weighting)
			rng := rand.New(rand.NewPCG(1, 2))
			for range 5 {
				if _, err := tr.Step(syntheticBatch(rng, 256)); err != nil {
					t.Fatal(err)
				}
			}
			models = append(models, m)
		}
		p1, p2 := models[0].Params(), models[1].Params()
		for i := range p1 {
			for j := range p1[i].Data {
				if math.Float32bits(p1[i].Data[j]) != math.Float32bits(p2[i].Data[j]) {
					t.Fatalf("%d workers: %s[%d]: fused %g, reduced first %g", workers, p1[i].Name, j, p1[i].Data[j], p2[i].Data[j])
				}
			}
		}
		e1, e2 := models[0].Embeddings(), models[1].Embeddings()
		for i := range e1 {
			for j := range e1[i].Data {
				if math.Float32bits(e1[i].Data[j]) != math.Float32bits(e2[i].Data[j]) {
					t.Fatalf("%d workers: %s[%d] differs", workers, e1[i].Name, j)
				}
			}
		}
	}
}

// trainPrecision trains the small model for steps steps with 2 workers in
// the given precision and returns it and the trainer's precision.
func trainPrecision(t *testing.T, precision string, steps int) (*mmoe.Model, kernels.Precision) {
	t.Helper()
	m, _ := newTrainer(t, 1) // the model only
	ts, err := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "ctr", Kind: "binary", Label: "click"}, {Name: "cvr", Kind: "esmm", Label: "conversion", Parent: "ctr"}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := mtl.NewTrainer(m, ts, mtl.TrainConfig{BatchSize: 256, Workers: 2, Embedding: mtl.EmbeddingConfig{LR: 0.1}, Dense: mtl.AdamConfig{LR: 1e-2}, Precision: precision})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for range steps {
		if _, err := tr.Step(syntheticBatch(rng, 256)); err != nil {
			t.Fatal(err)
		}
	}
	return m, tr.Precision()
}

func paramsBits(m *mmoe.Model) []uint32 {
	var out []uint32
	for _, p := range m.Params() {
		for _, v := range p.Data {
			out = append(out, math.Float32bits(v))
		}
	}
	for _, e := range m.Embeddings() {
		for _, v := range e.Data {
			out = append(out, math.Float32bits(v))
		}
	}
	return out
}

// TestTrainerPrecision checks train.precision: bf16 trains
// deterministically (for a seed and a worker count) to weights near
// float32's but not equal, and with the CPU's AVX512_BF16 switched off it
// falls back to float32, bit for bit.
func TestTrainerPrecision(t *testing.T) {
	fp, p := trainPrecision(t, "", 20)
	if p != kernels.FP32 {
		t.Fatalf("default precision %v", p)
	}
	bf, p := trainPrecision(t, "bf16", 20)
	if want := kernels.BF16.Effective(); p != want {
		t.Fatalf("bf16 trainer runs in %v, want %v", p, want)
	}
	bf2, _ := trainPrecision(t, "bf16", 20)
	if !slices.Equal(paramsBits(bf), paramsBits(bf2)) {
		t.Fatal("two bf16 runs differ")
	}
	if kernels.NativeBF16() {
		if slices.Equal(paramsBits(fp), paramsBits(bf)) {
			t.Fatal("bf16 training gave the float32 weights")
		}
		p1, p2 := fp.Params(), bf.Params()
		for i := range p1 {
			for j, v := range p1[i].Data {
				if d := math.Abs(float64(v - p2[i].Data[j])); d > 0.05 {
					t.Fatalf("%s[%d]: float32 %g, bf16 %g", p1[i].Name, j, v, p2[i].Data[j])
				}
			}
		}
	}
	was := kernels.SetNativeBF16(false)
	defer kernels.SetNativeBF16(was)
	off, p := trainPrecision(t, "bf16", 20)
	if p != kernels.FP32 {
		t.Fatalf("without AVX512_BF16 a bf16 trainer runs in %v, want fp32", p)
	}
	if !slices.Equal(paramsBits(fp), paramsBits(off)) {
		t.Fatal("the fallback to fp32 does not give float32's weights")
	}
	if err := (mtl.TrainConfig{Precision: "fp16"}).Validate(); !errors.Is(err, mtl.ErrConfig) {
		t.Fatalf("precision fp16: %v", err)
	}
	c, err := mtl.ParseTrainConfig([]byte("train:\n  precision: bf16\n"))
	if err != nil || c.Precision != "bf16" {
		t.Fatalf("ParseTrainConfig: %+v, %v", c, err)
	}
}

func TestTrainerBF16StepAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	m, _ := newTrainer(t, 1)
	ts, _ := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "ctr", Kind: "binary", Label: "click"}, {Name: "cvr", Kind: "esmm", Label: "conversion", Parent: "ctr"}})
	tr, err := mtl.NewTrainer(m, ts, mtl.TrainConfig{BatchSize: 256, Workers: 2, Precision: "bf16"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	b := syntheticBatch(rand.New(rand.NewPCG(5, 6)), 256)
	for range 3 {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}
	if allocs := testing.AllocsPerRun(20, func() {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}); allocs > 0 {
		t.Fatalf("a bf16 Step allocates %v times", allocs)
	}
}

// TestOptimizerBytes: the optimizer's traffic, counted by hand for a
// batch whose rows are known. Embedding rows of dim 4 (16 bytes) cost a
// 64-byte line each; the row-wise accumulator a line too. Field a's ids
// are 1, 2 | 2, 3 (the two workers' halves), field b's 5, 5 | 5, 5.
func TestOptimizerBytes(t *testing.T) {
	batch := func() *features.Batch {
		return &features.Batch{
			Rows: 4, DenseWidth: 1, Dense: []float32{0.1, -0.2, 0.3, 0.4},
			Sparse: []features.SparseColumn{{IDs: []int32{1, 2, 2, 3}}, {IDs: []int32{5, 5, 5, 5}}},
			Labels: [][]float32{{1, 0, 1, 0}, {1, 0, 0, 0}},
		}
	}
	for _, c := range []struct {
		workers int
		perVal  int64 // Adam: value, 2 moments, gradient(s) read; value, moments written
		sparse  int64
	}{
		// One worker: a's 3 rows and b's 1, each value, gradient and
		// accumulator: 3+2 lines of 64 bytes per row.
		{1, 4 * 7, (3 + 1) * 5 * 64},
		// Two: also the merge: a reads 4 worker rows, writes 3, adds
		// 1 (read and write); b reads 2, writes 1, adds 1.
		{2, 4 * 8, (3+1)*5*64 + (4+3+2)*64 + (2+1+2)*64},
	} {
		m, tr := newTrainer(t, c.workers)
		if _, err := tr.Step(batch()); err != nil {
			t.Fatal(err)
		}
		_, dense := m.DenseParams()
		var values int64
		for _, v := range dense {
			values += int64(len(v))
		}
		if got, want := tr.OptimizerBytes(), c.perVal*values+c.sparse; got != want {
			t.Errorf("%d workers: OptimizerBytes %d, want %d (%d dense values)", c.workers, got, want, values)
		}
	}
}
