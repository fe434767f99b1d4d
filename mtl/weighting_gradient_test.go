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

// capture wraps a registered gradient-level weighting: before it, it takes
// each task's unweighted gradient of the shared dense parameters itself;
// after its BeforeUpdate, it copies the gradient the weighting put in
// place of the batch's. The tests recompute that gradient directly.
type capture struct {
	mtl.Balancer
	shared  []int
	perTask [][][]float32 // [step][task] flat, unweighted
	sizes   []int
	out     [][]float32 // [step] flat, what the optimizer gets
}

func (c *capture) BeforeBackward(s *mtl.BalanceStep) error {
	var step [][]float32
	for k := range c.Weights() {
		var views [][]float32
		flat := make([]float32, 0)
		for _, n := range c.sizes {
			views = append(views, make([]float32, n))
		}
		if err := s.TaskGradTo(views, k, c.shared); err != nil {
			return err
		}
		for _, v := range views {
			flat = append(flat, v...)
		}
		step = append(step, flat)
	}
	c.perTask = append(c.perTask, step)
	return c.Balancer.BeforeBackward(s)
}

func (c *capture) BeforeUpdate(s *mtl.BalanceStep) error {
	if err := c.Balancer.BeforeUpdate(s); err != nil {
		return err
	}
	var flat []float32
	for _, i := range c.shared {
		flat = append(flat, s.DenseGrads()[i]...)
	}
	c.out = append(c.out, flat)
	return nil
}

// captured trains 3 steps of a 2-task MMoE with weighting name wrapped in
// capture.
func captured(t *testing.T, name string, cfg mtl.TrainConfig) *capture {
	t.Helper()
	var c *capture
	mtl.KnownWeightings["test_capture"] = mtl.WeightingDef{New: func(env mtl.WeightingEnv) (mtl.Balancer, error) {
		b, err := mtl.KnownWeightings[name].New(env)
		if err != nil {
			return nil, err
		}
		c = &capture{Balancer: b}
		_, values := env.Model.DenseParams()
		for i := range values {
			if env.Model.TaskOf(i) < 0 {
				c.shared = append(c.shared, i)
				c.sizes = append(c.sizes, len(values[i]))
			}
		}
		return c, nil
	}}
	t.Cleanup(func() { delete(mtl.KnownWeightings, "test_capture") })
	cfg.BatchSize, cfg.Workers, cfg.Weighting = 64, 2, "test_capture"
	tr, err := mtl.NewTrainer(regModel(t, mmoe.ArchMMoE, 2), regTasks(t, 2), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rng := rand.New(rand.NewPCG(4, 4))
	for range 3 {
		// Task 2's target is scaled by -3: larger gradients, often
		// conflicting with task 1's.
		if _, err := tr.Step(regBatch(rng, 64, -3)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func closeTo(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	var worst, scale float64
	for e := range want {
		worst = max(worst, math.Abs(float64(got[e])-want[e]))
		scale = max(scale, math.Abs(want[e]))
	}
	if worst > 1e-4*scale+1e-7 {
		t.Errorf("%s: differs from the direct computation by %g (largest value %g)", what, worst, scale)
	}
}

// TestPCGradInTrainer: the shared parameters train on PCGrad's
// combination of the weighted task gradients, written out for two tasks:
// g1' = g1 − (g1·g2/‖g2‖²)·g2 when g1·g2 < 0, and the same for g2.
func TestPCGradInTrainer(t *testing.T) {
	w := []float64{1, 0.5}
	c := captured(t, mtl.WeightingPCGrad, mtl.TrainConfig{TaskWeights: map[string]float64{"t2": 0.5}})
	conflicts := 0
	for step, g := range c.perTask {
		a, b := make([]float64, len(g[0])), make([]float64, len(g[0]))
		var ab, aa, bb float64
		for e := range a {
			a[e], b[e] = w[0]*float64(g[0][e]), w[1]*float64(g[1][e])
			ab, aa, bb = ab+a[e]*b[e], aa+a[e]*a[e], bb+b[e]*b[e]
		}
		want := make([]float64, len(a))
		for e := range want {
			want[e] = a[e] + b[e]
			if ab < 0 {
				want[e] -= ab/bb*b[e] + ab/aa*a[e]
			}
		}
		if ab < 0 {
			conflicts++
		}
		closeTo(t, "step "+string(rune('0'+step)), c.out[step], want)
	}
	if conflicts == 0 {
		t.Error("the tasks never conflicted: the projection was not exercised")
	}
}

// TestMetaBalanceInTrainer: the shared parameters train on MetaBalance's
// combination, with the moving norms per tensor written out over the
// steps, for each task as the target.
func TestMetaBalanceInTrainer(t *testing.T) {
	for target, name := range []string{"t1", "t2"} {
		cfg := mtl.TrainConfig{MetaBalance: mtl.MetaBalanceTrainConfig{Relax: 0.6, Beta: 0.8, Target: name}}
		c := captured(t, mtl.WeightingMetaBalance, cfg)
		m := make([][]float64, 2) // [task][tensor]
		for k := range m {
			m[k] = make([]float64, len(c.sizes))
		}
		for step, g := range c.perTask {
			var want []float64
			off := 0
			for j, n := range c.sizes {
				for k := range 2 {
					var ss float64
					for _, v := range g[k][off : off+n] {
						ss += float64(v) * float64(v)
					}
					m[k][j] = 0.8*m[k][j] + 0.2*math.Sqrt(ss)
				}
				aux := 1 - target
				f := 0.6*m[target][j]/m[aux][j] + 0.4
				for e := off; e < off+n; e++ {
					want = append(want, float64(g[target][e])+f*float64(g[aux][e]))
				}
				off += n
			}
			closeTo(t, name+" step "+string(rune('0'+step)), c.out[step], want)
		}
	}
}

// TestGradientWeightingsRefuse: configurations the gradient-level
// weightings cannot work on are refused with the key named.
func TestGradientWeightingsRefuse(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  mtl.TrainConfig
		arch string
		want string
	}{
		{"pcgrad without shared parameters", mtl.TrainConfig{Weighting: mtl.WeightingPCGrad}, mmoe.ArchSingle, "weighting pcgrad works on the dense parameters the tasks share, and arch single shares none"},
		{"metabalance without shared parameters", mtl.TrainConfig{Weighting: mtl.WeightingMetaBalance}, mmoe.ArchSoft, "weighting metabalance works on the dense parameters"},
		{"metabalance target", mtl.TrainConfig{Weighting: mtl.WeightingMetaBalance, MetaBalance: mtl.MetaBalanceTrainConfig{Target: "ctr"}}, mmoe.ArchMMoE, `metabalance.target "ctr" is not a task`},
		{"metabalance relax", mtl.TrainConfig{Weighting: mtl.WeightingMetaBalance, MetaBalance: mtl.MetaBalanceTrainConfig{Relax: 1.5}}, mmoe.ArchMMoE, "metabalance.relax 1.5"},
		{"pcgrad task weights", mtl.TrainConfig{Weighting: mtl.WeightingPCGrad, TaskWeights: map[string]float64{"t3": 1}}, mmoe.ArchMMoE, `task_weights names unknown task "t3"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.BatchSize, c.cfg.Workers = 16, 1
			_, err := mtl.NewTrainer(regModel(t, c.arch, 2), regTasks(t, 2), c.cfg)
			if !errors.Is(err, mtl.ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrConfig containing %q", err, c.want)
			}
		})
	}
	if _, err := mtl.NewTrainer(regModel(t, mmoe.ArchMMoE, 1), regTasks(t, 1), mtl.TrainConfig{Weighting: mtl.WeightingPCGrad, BatchSize: 16}); !errors.Is(err, mtl.ErrConfig) || !strings.Contains(err.Error(), "at least 2 tasks") {
		t.Errorf("one task: %v", err)
	}
	if _, err := mtl.ParseTrainConfig([]byte("train:\n  weighting: metabalance\n  metabalance: {beta: 1}\n")); !errors.Is(err, mtl.ErrConfig) {
		t.Errorf("metabalance beta 1: %v", err)
	}
	c, err := mtl.ParseTrainConfig([]byte("train:\n  weighting: metabalance\n  metabalance: {relax: 0.3, target: cvr}\n"))
	if err != nil || c.MetaBalance.Relax != 0.3 || c.MetaBalance.Target != "cvr" {
		t.Errorf("parsed %+v, %v", c.MetaBalance, err)
	}
}

// TestGradientWeightingStepsAllocateNothing, and their state survives a
// checkpoint: a trainer restored from another's state takes the same
// step.
func TestGradientWeightingStepsAllocateNothing(t *testing.T) {
	for _, name := range []string{mtl.WeightingPCGrad, mtl.WeightingMetaBalance} {
		t.Run(name, func(t *testing.T) {
			cfg := mtl.TrainConfig{BatchSize: 64, Workers: 2, Weighting: name}
			m := regModel(t, mmoe.ArchMMoE, 2)
			tr, err := mtl.NewTrainer(m, regTasks(t, 2), cfg)
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
			if !raceEnabled {
				if a := testing.AllocsPerRun(5, func() {
					if _, err := tr.Step(b); err != nil {
						t.Fatal(err)
					}
				}); a > 0 {
					t.Errorf("a %s step allocates %v times", name, a)
				}
			}
			// Restore into a fresh trainer of the same weights: two more
			// steps give the same losses, to the bit.
			m2 := regModel(t, mmoe.ArchMMoE, 2)
			for i, p := range m.Params() {
				copy(m2.Params()[i].Data, p.Data)
			}
			for i, e := range m.Embeddings() {
				copy(m2.Embeddings()[i].Data, e.Data)
			}
			tr2, err := mtl.NewTrainer(m2, regTasks(t, 2), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr2.Close()
			if err := tr2.SetState(tr.State()); err != nil {
				t.Fatal(err)
			}
			b2 := regBatch(rand.New(rand.NewPCG(3, 3)), 64, -2)
			for step := range 2 {
				l1, err1 := tr.Step(b2)
				l1 = append([]float64(nil), l1...)
				l2, err2 := tr2.Step(b2)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				for k := range l1 {
					if math.Float64bits(l1[k]) != math.Float64bits(l2[k]) {
						t.Errorf("step %d after restoring: losses %v, want %v", step, l2, l1)
					}
				}
			}
		})
	}
}
