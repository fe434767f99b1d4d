package mtl

import (
	"fmt"
	"math"
)

// WeightingGradNorm balances the tasks' gradient norms on the last shared
// layer (GradNorm), configured by train.gradnorm.
const WeightingGradNorm = "gradnorm"

func init() {
	KnownWeightings[WeightingGradNorm] = WeightingDef{
		Validate: func(c TrainConfig) error { return c.GradNorm.validate() },
		New:      newGradNormBalancer,
	}
}

// GradNormTrainConfig is the train.gradnorm: section, used with
// weighting: gradnorm. A zero field takes its default.
type GradNormTrainConfig struct {
	// Alpha is GradNorm's restoring-force strength α. Default: 1.5.
	Alpha float64 `yaml:"alpha" json:"alpha,omitempty"`
	// LR is the learning rate of the task weights. Default: 0.025.
	LR float64 `yaml:"lr" json:"lr,omitempty"`
	// Every measures the per-task gradient norms and updates the weights
	// every so many steps (the weights are held in between). Measuring
	// costs one extra backward pass per task on the step's batch, so a
	// step that measures costs about (1 + T·b/(f+b)) times a plain step
	// (f, b: forward and backward time; about 2.3x for 2 tasks); Every
	// amortises it. Default: 1 (every step, as in the paper).
	Every int `yaml:"every" json:"every,omitempty"`
}

func (c GradNormTrainConfig) validate() error {
	if c.Every < 0 {
		return fmt.Errorf("mtl: train: gradnorm.every %d < 0: %w", c.Every, ErrConfig)
	}
	return GradNormConfig{Tasks: 2, Alpha: c.Alpha, LR: c.LR}.Validate()
}

// gradNormBalancer runs GradNorm in the trainer: every Every steps it
// measures ‖∇_W L_t‖ on the last shared layer W, one backward pass per
// task before the step's own, and updates the weights after the step.
type gradNormBalancer struct {
	g        *GradNorm
	every    int
	shared   []int       // DenseParams indices of W
	grads    [][]float32 // one task's gradient of W
	norms    []float64
	measured bool // the current step measured norms
}

// newGradNormBalancer builds GradNorm, refusing models and task sets it
// cannot work on.
func newGradNormBalancer(env WeightingEnv) (Balancer, error) {
	T := env.Tasks.Len()
	if T < 2 {
		return nil, fmt.Errorf("mtl: train: weighting gradnorm needs at least 2 tasks, the spec has %d: %w", T, ErrConfig)
	}
	shared := env.Model.LastSharedLayer()
	if len(shared) == 0 {
		return nil, fmt.Errorf("mtl: train: weighting gradnorm needs a shared layer, and arch %s shares none (use shared_bottom, omoe, mmoe, cgc or ple): %w", env.Model.Arch(), ErrConfig)
	}
	gc := env.Config.GradNorm
	g, err := NewGradNorm(GradNormConfig{Tasks: T, Alpha: gc.Alpha, LR: gc.LR})
	if err != nil {
		return nil, err
	}
	b := &gradNormBalancer{g: g, every: max(gc.Every, 1), shared: shared, norms: make([]float64, T)}
	_, values := env.Model.DenseParams()
	for _, i := range shared {
		b.grads = append(b.grads, make([]float32, len(values[i])))
	}
	return b, nil
}

func (b *gradNormBalancer) Weights() []float64 { return b.g.Weights() }

// BeforeBackward measures the per-task gradient norms when the step is a
// multiple of Every.
func (b *gradNormBalancer) BeforeBackward(s *BalanceStep) error {
	b.measured = s.Step()%int64(b.every) == 0
	if !b.measured {
		return nil
	}
	for k := range b.norms {
		if err := s.TaskGradTo(b.grads, k, b.shared); err != nil {
			return fmt.Errorf("gradnorm: %w", err)
		}
		var ss float64
		for _, d := range b.grads {
			for _, v := range d {
				ss += float64(v) * float64(v)
			}
		}
		b.norms[k] = math.Sqrt(ss)
	}
	return nil
}

func (b *gradNormBalancer) BeforeUpdate(*BalanceStep) error { return nil }

// AfterUpdate takes GradNorm's step on the weights if this step measured
// the norms.
func (b *gradNormBalancer) AfterUpdate(s *BalanceStep) error {
	if !b.measured {
		return nil
	}
	return b.g.Update(s.Losses(), b.norms)
}

func (b *gradNormBalancer) State() State            { return b.g.State() }
func (b *gradNormBalancer) SetState(st State) error { return b.g.SetState(st) }

// GradNormEvery is how often GradNorm measures gradient norms (0 without
// GradNorm).
func (t *Trainer) GradNormEvery() int {
	if b, ok := t.weight.(*gradNormBalancer); ok {
		return b.every
	}
	return 0
}

// LastGradNorms returns the per-task gradient norms on the last shared
// layer from the last step that measured them (nil without GradNorm or
// before the first; the slice is reused).
func (t *Trainer) LastGradNorms() []float64 {
	b, ok := t.weight.(*gradNormBalancer)
	if !ok || t.step == 0 {
		return nil
	}
	return b.norms
}

// GradNormConfig configures GradNorm. A zero field takes its default.
type GradNormConfig struct {
	// Tasks is the number of tasks; at least 2.
	Tasks int
	// Alpha is the restoring-force strength α. Default: 1.5 (the paper's
	// value for its multi-task benchmarks).
	Alpha float64
	// LR is the learning rate of the plain gradient step on the weights.
	// Default: 0.025.
	LR float64
	// InitialLosses are L_t(0), the reference for the training rates.
	// Default: the losses of the first Update.
	InitialLosses []float64
	// MinWeight bounds every weight from below before renormalising, so
	// that no task is switched off for good. Default: 1e-3.
	MinWeight float64
}

// GradNorm is GradNorm weighting (Chen, Badrinarayanan, Lee & Rabinovich,
// ICML 2018). With g_t = ‖∇_W L_t‖ on the last shared layer W, G_t =
// w_t·g_t, Ḡ their mean, L̃_t = L_t/L_t(0) and r_t = L̃_t / mean(L̃), each
// Update takes a gradient step on
//
//	L_grad = Σ_t |G_t − Ḡ·r_t^α|
//
// with respect to the weights (the target Ḡ·r_t^α held constant, as in the
// paper), so ∂L_grad/∂w_t = sign(G_t − target_t)·g_t, then bounds the
// weights below by MinWeight and renormalises them to Σ_t w_t = T.
// Tasks that train slowly (high r_t) or have small gradients gain weight.
type GradNorm struct {
	cfg  GradNormConfig
	w    []float64
	l0   []float64
	have bool // l0 set
}

// NewGradNorm validates cfg and returns the weighting, all weights 1.
func NewGradNorm(cfg GradNormConfig) (*GradNorm, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := &GradNorm{cfg: cfg, w: make([]float64, cfg.Tasks), l0: make([]float64, cfg.Tasks)}
	for t := range g.w {
		g.w[t] = 1
	}
	if cfg.InitialLosses != nil {
		if err := g.setInitial(cfg.InitialLosses); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func (cfg GradNormConfig) withDefaults() GradNormConfig {
	if cfg.Alpha == 0 {
		cfg.Alpha = 1.5
	}
	if cfg.LR == 0 {
		cfg.LR = 0.025
	}
	if cfg.MinWeight == 0 {
		cfg.MinWeight = 1e-3
	}
	return cfg
}

// Validate checks the configuration after defaults are applied.
func (cfg GradNormConfig) Validate() error {
	if cfg.Tasks < 2 {
		return fmt.Errorf("mtl: gradnorm weighting needs at least 2 tasks, have %d: %w", cfg.Tasks, ErrConfig)
	}
	cfg = cfg.withDefaults()
	switch {
	case !(cfg.Alpha >= 0) || math.IsInf(cfg.Alpha, 0):
		return fmt.Errorf("mtl: gradnorm: alpha %v: want finite and >= 0: %w", cfg.Alpha, ErrConfig)
	case !(cfg.LR > 0) || math.IsInf(cfg.LR, 0):
		return fmt.Errorf("mtl: gradnorm: lr %v: want finite and > 0: %w", cfg.LR, ErrConfig)
	case !(cfg.MinWeight > 0 && cfg.MinWeight < 1):
		return fmt.Errorf("mtl: gradnorm: min_weight %v: want (0, 1): %w", cfg.MinWeight, ErrConfig)
	}
	if cfg.InitialLosses != nil {
		return (&GradNorm{w: make([]float64, cfg.Tasks), l0: make([]float64, cfg.Tasks)}).setInitial(cfg.InitialLosses)
	}
	return nil
}

func (g *GradNorm) setInitial(l0 []float64) error {
	if len(l0) != len(g.w) {
		return fmt.Errorf("mtl: gradnorm: %d initial losses for %d tasks: %w", len(l0), len(g.w), ErrConfig)
	}
	for t, l := range l0 {
		if !(l > 0) || math.IsInf(l, 0) {
			return fmt.Errorf("mtl: gradnorm: initial loss of task %d is %v, want finite and > 0: %w", t, l, ErrConfig)
		}
	}
	copy(g.l0, l0)
	g.have = true
	return nil
}

// Weights returns the current weights (Σ = number of tasks).
func (g *GradNorm) Weights() []float64 { return g.w }

// NeedsGradNorms is true.
func (g *GradNorm) NeedsGradNorms() bool { return true }

// Update takes one GradNorm step. gradNorms[t] is ‖∇_W L_t‖ of the
// unweighted loss of task t on the last shared layer.
func (g *GradNorm) Update(losses, gradNorms []float64) error {
	T := len(g.w)
	if err := checkLosses("gradnorm", losses, T); err != nil {
		return err
	}
	if err := checkLosses("gradnorm (gradient norms)", gradNorms, T); err != nil {
		return err
	}
	if !g.have {
		if err := g.setInitial(losses); err != nil {
			return err
		}
	}
	var gbar, rbar float64
	for t := range T {
		gbar += g.w[t] * gradNorms[t]
		rbar += losses[t] / g.l0[t]
	}
	gbar /= float64(T)
	rbar /= float64(T)
	var sum float64
	for t := range T {
		r := 1.0
		if rbar > 0 {
			r = losses[t] / g.l0[t] / rbar
		}
		target := gbar * math.Pow(r, g.cfg.Alpha)
		G := g.w[t] * gradNorms[t]
		var sign float64
		switch {
		case G > target:
			sign = 1
		case G < target:
			sign = -1
		}
		g.w[t] = max(g.w[t]-g.cfg.LR*sign*gradNorms[t], g.cfg.MinWeight)
		sum += g.w[t]
	}
	for t := range T {
		g.w[t] *= float64(T) / sum
	}
	return nil
}

// State returns the weights and the initial losses.
func (g *GradNorm) State() State {
	st := State{Values: map[string][]float64{"weights": g.w}}
	if g.have {
		st.Values["initial_losses"] = g.l0
	}
	return st
}

// SetState restores a State of the same number of tasks.
func (g *GradNorm) SetState(st State) error {
	if err := checkValues(st, "weights", len(g.w)); err != nil {
		return err
	}
	if l0, ok := st.Values["initial_losses"]; ok {
		if err := g.setInitial(l0); err != nil {
			return fmt.Errorf("%w (%w)", err, ErrState)
		}
	}
	copy(g.w, st.Values["weights"])
	return nil
}
