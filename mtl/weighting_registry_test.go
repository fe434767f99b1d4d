package mtl_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// TestKnownWeightingsTrain builds a trainer with every registered weighting
// and takes a few steps: an entry that validates, builds and runs.
func TestKnownWeightingsTrain(t *testing.T) {
	for _, name := range []string{mtl.WeightingFixed, mtl.WeightingUncertainty, mtl.WeightingGradNorm} {
		if _, ok := mtl.KnownWeightings[name]; !ok {
			t.Errorf("weighting %q is not registered", name)
		}
	}
	for name := range mtl.KnownWeightings {
		t.Run(name, func(t *testing.T) {
			cfg := mtl.TrainConfig{BatchSize: 64, Workers: 2, Weighting: name}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			tr, err := mtl.NewTrainer(regModel(t, mmoe.ArchMMoE, 2), regTasks(t, 2), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			rng := rand.New(rand.NewPCG(1, 1))
			for range 3 {
				if _, err := tr.Step(regBatch(rng, 64, 1)); err != nil {
					t.Fatal(err)
				}
			}
			if w := tr.Weights(); len(w) != 2 || !(w[0] > 0 && w[1] > 0) {
				t.Fatalf("weights %v", w)
			}
		})
	}
	err := mtl.TrainConfig{Weighting: "dwa"}.Validate()
	if !errors.Is(err, mtl.ErrConfig) || !strings.Contains(err.Error(), "want fixed, gradnorm, metabalance, pcgrad or uncertainty") {
		t.Fatalf("unknown weighting: %v", err)
	}
}

// sharedOnly is a gradient-level weighting registered by the test, as a
// package adding PCGrad would register one: before the step's backward
// pass it takes each task's gradient of the shared dense parameters; after
// it, it checks that the batch's gradient of them is the sum of those
// (weights 1) and replaces it by zero, so that only the task-specific
// parameters (and the embeddings) train.
type sharedOnly struct {
	t        *testing.T
	w        []float64
	shared   []int
	perTask  [][][]float32 // [task][shared param]
	misuse   error         // TaskGradTo called from BeforeUpdate
	maxDiff  float64
	measured int
}

func (s *sharedOnly) Weights() []float64 { return s.w }

func (s *sharedOnly) BeforeBackward(st *mtl.BalanceStep) error {
	if st.DenseGrads() != nil {
		s.t.Error("DenseGrads available before the backward pass")
	}
	for k := range s.perTask {
		if err := st.TaskGradTo(s.perTask[k], k, s.shared); err != nil {
			return err
		}
	}
	s.measured++
	return nil
}

func (s *sharedOnly) BeforeUpdate(st *mtl.BalanceStep) error {
	if s.measured == 1 { // once: the error allocates
		s.misuse = st.TaskGradTo(s.perTask[0], 0, s.shared)
	}
	dense := st.DenseGrads()
	for j, i := range s.shared {
		for e, v := range dense[i] {
			var sum float64
			for k := range s.perTask {
				sum += float64(s.perTask[k][j][e])
			}
			s.maxDiff = max(s.maxDiff, math.Abs(float64(v)-sum)/(1e-3+math.Abs(sum)))
		}
		clear(dense[i])
	}
	return nil
}

func (s *sharedOnly) AfterUpdate(st *mtl.BalanceStep) error {
	if len(st.Losses()) != len(s.w) {
		s.t.Errorf("%d losses", len(st.Losses()))
	}
	return nil
}

func (s *sharedOnly) State() State         { return State{} }
func (s *sharedOnly) SetState(State) error { return nil }

type State = mtl.State

// TestGradientLevelWeighting registers a weighting from outside the
// package and checks the hooks a gradient-level balancer needs: per-task
// gradients of chosen parameters before the backward pass (their sum is
// the batch's gradient), and a gradient it rewrites before the optimizer
// (zeroed shared parameters stay bit-identical under Adam).
func TestGradientLevelWeighting(t *testing.T) {
	var bal *sharedOnly
	mtl.KnownWeightings["test_shared_only"] = mtl.WeightingDef{New: func(env mtl.WeightingEnv) (mtl.Balancer, error) {
		names, values := env.Model.DenseParams()
		bal = &sharedOnly{t: t, w: []float64{1, 1}}
		for i := range names {
			if env.Model.TaskOf(i) < 0 {
				bal.shared = append(bal.shared, i)
			}
		}
		bal.perTask = make([][][]float32, env.Tasks.Len())
		for k := range bal.perTask {
			for _, i := range bal.shared {
				bal.perTask[k] = append(bal.perTask[k], make([]float32, len(values[i])))
			}
		}
		return bal, nil
	}}
	t.Cleanup(func() { delete(mtl.KnownWeightings, "test_shared_only") })

	m := regModel(t, mmoe.ArchMMoE, 2)
	before := m.Params()
	start := make([][]float32, len(before))
	for i, p := range before {
		start[i] = append([]float32(nil), p.Data...)
	}
	tr, err := mtl.NewTrainer(m, regTasks(t, 2), mtl.TrainConfig{BatchSize: 64, Workers: 2, Weighting: "test_shared_only"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	b := regBatch(rand.New(rand.NewPCG(3, 3)), 64, 1)
	for range 3 {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}
	if bal.measured != 3 || len(bal.shared) == 0 {
		t.Fatalf("measured %d steps, %d shared parameters", bal.measured, len(bal.shared))
	}
	if bal.maxDiff > 1e-4 {
		t.Errorf("the batch gradient differs from the sum of the per-task gradients by %g (relative)", bal.maxDiff)
	}
	if !errors.Is(bal.misuse, mtl.ErrState) {
		t.Errorf("TaskGradTo in BeforeUpdate: %v, want ErrState", bal.misuse)
	}
	changed := 0
	for i, p := range m.Params() {
		same := true
		for e, v := range p.Data {
			if math.Float32bits(v) != math.Float32bits(start[i][e]) {
				same = false
			}
		}
		if shared := m.TaskOf(i) < 0; shared && !same {
			t.Errorf("shared parameter %s changed although its gradient was zeroed", p.Name)
		} else if !shared && !same {
			changed++
		}
	}
	if changed == 0 {
		t.Error("no task parameter trained")
	}
	if a := testing.AllocsPerRun(5, func() {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}); a > 0 && !raceEnabled {
		t.Errorf("a step with a gradient-level weighting allocates %v times", a)
	}
}
