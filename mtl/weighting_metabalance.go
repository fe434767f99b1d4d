package mtl

import (
	"fmt"
	"math"
)

// WeightingMetaBalance is MetaBalance (He et al., "MetaBalance: Improving
// Multi-Task Recommendations via Adapting Gradient Magnitudes of Auxiliary
// Tasks", WWW 2022) on the dense parameters the tasks share, as
// torch-rechub implements it: per shared tensor j, it keeps a moving
// average m_kj ← β·m_kj + (1−β)·‖g_kj‖ of each task's gradient norm, and
// trains the tensor on
//
//	g_target,j + Σ_{k≠target} g_kj·(r·m_target,j/m_kj + 1 − r)
//
// so the auxiliary tasks' gradients are moved towards the target task's
// magnitude by the relax factor r (1: the same magnitude; near 0: left as
// they are). It is configured by train.metabalance. The losses are
// weighted by train.task_weights before, and the task-specific parameters
// and the embeddings train on the plain weighted loss. A step costs as a
// PCGrad step: one extra backward pass per task.
const WeightingMetaBalance = "metabalance"

func init() {
	KnownWeightings[WeightingMetaBalance] = WeightingDef{
		Validate: func(c TrainConfig) error { return c.MetaBalance.validate() },
		New:      newMetaBalancer,
	}
}

// MetaBalanceTrainConfig is the train.metabalance: section, used with
// weighting: metabalance. A zero field takes its default.
type MetaBalanceTrainConfig struct {
	// Relax is the relax factor r in (0, 1]. Default: 0.7 (torch-rechub's
	// default, and in the range the paper recommends).
	Relax float64 `yaml:"relax" json:"relax,omitempty"`
	// Beta is the moving average's β in (0, 1). Default: 0.9.
	Beta float64 `yaml:"beta" json:"beta,omitempty"`
	// Target names the target task, whose gradients are left as they are.
	// Default: the first task.
	Target string `yaml:"target" json:"target,omitempty"`
}

func (c MetaBalanceTrainConfig) withDefaults() MetaBalanceTrainConfig {
	if c.Relax == 0 {
		c.Relax = 0.7
	}
	if c.Beta == 0 {
		c.Beta = 0.9
	}
	return c
}

func (c MetaBalanceTrainConfig) validate() error {
	c = c.withDefaults()
	if !(c.Relax > 0 && c.Relax <= 1) {
		return fmt.Errorf("mtl: train: metabalance.relax %v: want (0, 1]: %w", c.Relax, ErrConfig)
	}
	if !(c.Beta > 0 && c.Beta < 1) {
		return fmt.Errorf("mtl: train: metabalance.beta %v: want (0, 1): %w", c.Beta, ErrConfig)
	}
	return nil
}

// metaBalancer runs MetaBalance in the trainer.
type metaBalancer struct {
	cfg    MetaBalanceTrainConfig
	target int
	w      []float64
	g      *sharedGrads
	norms  []float64 // m, [task][shared tensor], task-major
}

func newMetaBalancer(env WeightingEnv) (Balancer, error) {
	cfg := env.Config.MetaBalance.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	target := 0
	if cfg.Target != "" {
		if target = env.Tasks.Index(cfg.Target); target < 0 {
			return nil, fmt.Errorf("mtl: train: metabalance.target %q is not a task: %w", cfg.Target, ErrConfig)
		}
	}
	w, err := taskWeights(env)
	if err != nil {
		return nil, err
	}
	if _, err := NewFixed(w); err != nil {
		return nil, err
	}
	g, err := newSharedGrads(WeightingMetaBalance, env)
	if err != nil {
		return nil, err
	}
	return &metaBalancer{cfg: cfg, target: target, w: w, g: g, norms: make([]float64, len(w)*len(g.params))}, nil
}

func (b *metaBalancer) Weights() []float64 { return b.w }

// BeforeBackward takes the tasks' weighted gradients of the shared
// parameters.
func (b *metaBalancer) BeforeBackward(s *BalanceStep) error { return b.g.measure(s, b.w) }

// BeforeUpdate updates the moving norms and puts the rescaled sum in place
// of the batch's gradient of the shared parameters.
func (b *metaBalancer) BeforeUpdate(s *BalanceStep) error {
	P, beta, r := len(b.g.params), b.cfg.Beta, b.cfg.Relax
	for k, views := range b.g.views {
		for j, v := range views {
			n := math.Sqrt(dot32(v, v))
			if math.IsNaN(n) || math.IsInf(n, 0) {
				return fmt.Errorf("mtl: metabalance: gradient norm of task %d is %v: %w", k, n, ErrNonFinite)
			}
			b.norms[k*P+j] = beta*b.norms[k*P+j] + (1-beta)*n
		}
	}
	out := b.g.out
	off := 0
	for j := range P {
		size := len(b.g.views[0][j])
		o := out[off : off+size]
		copy(o, b.g.views[b.target][j])
		mt := b.norms[b.target*P+j]
		for k, views := range b.g.views {
			if k == b.target {
				continue
			}
			f := float32(1)
			if mk := b.norms[k*P+j]; mk > 0 {
				f = float32(r*mt/mk + 1 - r)
			}
			for e, x := range views[j] {
				o[e] += f * x
			}
		}
		off += size
	}
	b.g.put(s)
	return nil
}

func (b *metaBalancer) AfterUpdate(*BalanceStep) error { return nil }

// State holds the weights and the moving norms (tasks × shared tensors,
// task-major).
func (b *metaBalancer) State() State {
	return State{Values: map[string][]float64{"weights": b.w, "norms": b.norms}}
}

// SetState restores the moving norms of a state of the same tasks and
// model.
func (b *metaBalancer) SetState(st State) error {
	if err := checkValues(st, "weights", len(b.w)); err != nil {
		return err
	}
	if err := checkValues(st, "norms", len(b.norms)); err != nil {
		return err
	}
	copy(b.norms, st.Values["norms"])
	return nil
}
