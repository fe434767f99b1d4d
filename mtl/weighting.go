package mtl

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Weighting chooses the task weights of the total loss Σ_t w_t·L_t. The
// trainer passes Weights() to TaskSet.LossTo as taskWeights and calls
// Update after each step with that step's unweighted per-task losses (and,
// when NeedsGradNorms, the per-task gradient norms on the last shared
// layer). Implementations are not safe for concurrent use.
type Weighting interface {
	// Weights returns the current weight of each task. The slice is owned
	// by the Weighting and changes on Update; do not modify it.
	Weights() []float64
	// Update adapts the weights after a step. losses are the per-task
	// mean losses L_t of the step; gradNorms are ‖∇_W L_t‖ on the shared
	// layer W (nil unless NeedsGradNorms). It fails on non-finite input.
	Update(losses, gradNorms []float64) error
	// NeedsGradNorms reports whether Update needs gradNorms (GradNorm).
	NeedsGradNorms() bool
	// State and SetState save and restore the weighting for checkpoints.
	State() State
	SetState(State) error
}

var (
	_ Weighting = (*Fixed)(nil)
	_ Weighting = (*Uncertainty)(nil)
	_ Weighting = (*GradNorm)(nil)
)

func checkLosses(what string, losses []float64, n int) error {
	if len(losses) != n {
		return fmt.Errorf("mtl: %s: %d losses for %d tasks: %w", what, len(losses), n, ErrShape)
	}
	for t, l := range losses {
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return fmt.Errorf("mtl: %s: loss of task %d is %v: %w", what, t, l, ErrNonFinite)
		}
	}
	return nil
}

// Fixed is a constant weight per task.
type Fixed struct{ w []float64 }

// NewFixed returns fixed task weights; every weight must be finite and
// >= 0, and at least one > 0.
func NewFixed(weights []float64) (*Fixed, error) {
	if len(weights) == 0 {
		return nil, fmt.Errorf("mtl: fixed weighting: no weights: %w", ErrConfig)
	}
	pos := false
	for t, w := range weights {
		if !(w >= 0) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("mtl: fixed weighting: weight of task %d is %v, want finite and >= 0: %w", t, w, ErrConfig)
		}
		pos = pos || w > 0
	}
	if !pos {
		return nil, fmt.Errorf("mtl: fixed weighting: every weight is 0: %w", ErrConfig)
	}
	return &Fixed{w: append([]float64(nil), weights...)}, nil
}

// Weights returns the fixed weights.
func (f *Fixed) Weights() []float64 { return f.w }

// Update only checks its input: fixed weights do not change.
func (f *Fixed) Update(losses, _ []float64) error {
	return checkLosses("fixed weighting", losses, len(f.w))
}

// NeedsGradNorms is false.
func (f *Fixed) NeedsGradNorms() bool { return false }

// State returns the weights (for the record; SetState checks them).
func (f *Fixed) State() State { return State{Values: map[string][]float64{"weights": f.w}} }

// SetState accepts a state of the same number of tasks and restores its
// weights.
func (f *Fixed) SetState(st State) error {
	if err := checkValues(st, "weights", len(f.w)); err != nil {
		return err
	}
	copy(f.w, st.Values["weights"])
	return nil
}

// UncertaintyConfig configures Uncertainty weighting. A zero field takes
// its default.
type UncertaintyConfig struct {
	// Tasks is the number of tasks; at least 2.
	Tasks int
	// InitialLogVar is the starting s_t = log σ_t² of each task.
	// Default: all 0 (weights 1).
	InitialLogVar []float64
	// LR is the Adam learning rate of the s_t. Default: 1e-3.
	LR float64
	// Beta1, Beta2, Eps are the Adam constants. Defaults: 0.9, 0.999, 1e-8.
	Beta1, Beta2, Eps float64
}

// Uncertainty is homoscedastic uncertainty weighting (Kendall, Gal &
// Cipolla, CVPR 2018) with learnt log-variances s_t = log σ_t²:
//
//	total = Σ_t exp(−s_t)·L_t + s_t
//
// for every kind of task. The paper writes ½·exp(−s)·L + ½·s for
// regression (Gaussian likelihood) and exp(−s)·L + ½·s for classification;
// the form used here, common in practice, has the same minimiser
// s_t = log L_t for each task and differs from the regression form only by
// a constant factor ½ on that task's whole term. The task weights are
// exp(−s_t); the s_t take an Adam step on ∂total/∂s_t = 1 − exp(−s_t)·L_t
// in Update.
type Uncertainty struct {
	cfg     UncertaintyConfig
	s, w    []float64
	m, v, g []float64
	step    int64
}

// NewUncertainty validates cfg and returns the weighting.
func NewUncertainty(cfg UncertaintyConfig) (*Uncertainty, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := AdamConfig{LR: cfg.LR, Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: cfg.Eps}.withDefaults()
	cfg.LR, cfg.Beta1, cfg.Beta2, cfg.Eps = a.LR, a.Beta1, a.Beta2, a.Eps
	u := &Uncertainty{cfg: cfg, s: make([]float64, cfg.Tasks), w: make([]float64, cfg.Tasks),
		m: make([]float64, cfg.Tasks), v: make([]float64, cfg.Tasks), g: make([]float64, cfg.Tasks)}
	for t := range u.s {
		if cfg.InitialLogVar != nil {
			u.s[t] = cfg.InitialLogVar[t]
		}
		u.w[t] = math.Exp(-u.s[t])
	}
	return u, nil
}

// Validate checks the configuration after defaults are applied.
func (cfg UncertaintyConfig) Validate() error {
	if cfg.Tasks < 2 {
		return fmt.Errorf("mtl: uncertainty weighting needs at least 2 tasks, have %d: %w", cfg.Tasks, ErrConfig)
	}
	a := AdamConfig{LR: cfg.LR, Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: cfg.Eps}.withDefaults()
	if err := validateAdam("uncertainty weighting", a.LR, a.Beta1, a.Beta2, a.Eps, 0); err != nil {
		return err
	}
	if cfg.InitialLogVar != nil && len(cfg.InitialLogVar) != cfg.Tasks {
		return fmt.Errorf("mtl: uncertainty weighting: %d initial log-variances for %d tasks: %w", len(cfg.InitialLogVar), cfg.Tasks, ErrConfig)
	}
	for t, s := range cfg.InitialLogVar {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("mtl: uncertainty weighting: initial log-variance of task %d is %v: %w", t, s, ErrConfig)
		}
	}
	return nil
}

// Weights returns exp(−s_t).
func (u *Uncertainty) Weights() []float64 { return u.w }

// LogVars returns the current s_t = log σ_t² (do not modify).
func (u *Uncertainty) LogVars() []float64 { return u.s }

// Total returns Σ_t exp(−s_t)·L_t + s_t, the objective being minimised.
func (u *Uncertainty) Total(losses []float64) float64 {
	var sum float64
	for t, l := range losses {
		sum += math.Exp(-u.s[t])*l + u.s[t]
	}
	return sum
}

// GradTo writes ∂Total/∂s_t = 1 − exp(−s_t)·L_t into dst (nil allocates).
func (u *Uncertainty) GradTo(dst, losses []float64) []float64 {
	if dst == nil {
		dst = make([]float64, len(u.s))
	}
	for t, l := range losses {
		dst[t] = 1 - math.Exp(-u.s[t])*l
	}
	return dst
}

// NeedsGradNorms is false.
func (u *Uncertainty) NeedsGradNorms() bool { return false }

// Update takes one Adam step on the log-variances.
func (u *Uncertainty) Update(losses, _ []float64) error {
	if err := checkLosses("uncertainty weighting", losses, len(u.s)); err != nil {
		return err
	}
	u.GradTo(u.g, losses)
	u.step++
	c := u.cfg
	bc1 := 1 - math.Pow(c.Beta1, float64(u.step))
	bc2 := 1 - math.Pow(c.Beta2, float64(u.step))
	for t, g := range u.g {
		u.m[t] = c.Beta1*u.m[t] + (1-c.Beta1)*g
		u.v[t] = c.Beta2*u.v[t] + (1-c.Beta2)*g*g
		u.s[t] -= c.LR * (u.m[t] / bc1) / (math.Sqrt(u.v[t]/bc2) + c.Eps)
		u.w[t] = math.Exp(-u.s[t])
	}
	return nil
}

// State returns s, the Adam moments and the step counter.
func (u *Uncertainty) State() State {
	return State{Values: map[string][]float64{"log_var": u.s, "m": u.m, "v": u.v}, Counters: map[string]int64{"step": u.step}}
}

// SetState restores a State of the same number of tasks.
func (u *Uncertainty) SetState(st State) error {
	for _, k := range []string{"log_var", "m", "v"} {
		if err := checkValues(st, k, len(u.s)); err != nil {
			return err
		}
	}
	copy(u.s, st.Values["log_var"])
	copy(u.m, st.Values["m"])
	copy(u.v, st.Values["v"])
	u.step = st.Counters["step"]
	for t := range u.s {
		u.w[t] = math.Exp(-u.s[t])
	}
	return nil
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

// PCGrad is gradient surgery for multi-task learning (Yu et al., NeurIPS
// 2020): each task's gradient on the shared parameters is projected onto
// the normal plane of every other task's gradient it conflicts with
// (negative dot product), in a random task order, and the projected
// gradients are summed. It is applied by the trainer to the per-task
// gradients of the shared parameters. Not safe for concurrent use.
type PCGrad struct {
	rng   *rand.Rand
	order []int
	buf   []float32
	dots  []float64
}

// NewPCGrad returns a PCGrad for `tasks` tasks (at least 2) with shared
// gradients of `size` values; rng chooses the projection order.
func NewPCGrad(tasks, size int, rng *rand.Rand) (*PCGrad, error) {
	if tasks < 2 {
		return nil, fmt.Errorf("mtl: pcgrad needs at least 2 tasks, have %d: %w", tasks, ErrConfig)
	}
	if size <= 0 || rng == nil {
		return nil, fmt.Errorf("mtl: pcgrad: size %d and rng %v: want size > 0 and an rng: %w", size, rng != nil, ErrConfig)
	}
	return &PCGrad{rng: rng, order: make([]int, tasks), buf: make([]float32, size), dots: make([]float64, tasks)}, nil
}

// ProjectTo writes Σ_t g'_t into dst, where g'_t is taskGrads[t] with its
// conflicting components removed. taskGrads are not modified. It returns
// the number of projections made (how often tasks conflicted).
func (p *PCGrad) ProjectTo(dst []float32, taskGrads [][]float32) (int, error) {
	if len(taskGrads) != len(p.order) {
		return 0, fmt.Errorf("mtl: pcgrad: %d task gradients, want %d: %w", len(taskGrads), len(p.order), ErrShape)
	}
	n := len(p.buf)
	if len(dst) != n {
		return 0, fmt.Errorf("mtl: pcgrad: dst has %d values, want %d: %w", len(dst), n, ErrShape)
	}
	for t, g := range taskGrads {
		if len(g) != n {
			return 0, fmt.Errorf("mtl: pcgrad: gradient of task %d has %d values, want %d: %w", t, len(g), n, ErrShape)
		}
		p.dots[t] = dot32(g, g)
	}
	clear(dst)
	projections := 0
	for i, gi := range taskGrads {
		copy(p.buf, gi)
		for k := range p.order {
			p.order[k] = k
		}
		p.rng.Shuffle(len(p.order), func(a, b int) { p.order[a], p.order[b] = p.order[b], p.order[a] })
		for _, j := range p.order {
			if j == i || p.dots[j] == 0 {
				continue
			}
			d := dot32(p.buf, taskGrads[j])
			if d >= 0 {
				continue
			}
			projections++
			f := float32(d / p.dots[j])
			for k, x := range taskGrads[j] {
				p.buf[k] -= f * x
			}
		}
		for k, x := range p.buf {
			dst[k] += x
		}
	}
	return projections, nil
}

func dot32(a, b []float32) float64 {
	var s float64
	b = b[:len(a)]
	for i, x := range a {
		s += float64(x) * float64(b[i])
	}
	return s
}

// SoftSharingPenaltyTo returns the soft parameter sharing penalty
//
//	λ·Σ_{t≠t'} ‖θ_t − θ_t'‖²
//
// summed over ordered pairs of tasks (each unordered pair counts twice, as
// the formula reads) and over matching layers: groups[t][l] is layer l of
// task t's network, and layer l must have the same length in every task.
// When grads is not nil (same shape as groups) the penalty's gradient
// 4λ·(T·θ_t − Σ_u θ_u) is added to it. It needs at least 2 tasks; it
// allocates nothing.
func SoftSharingPenaltyTo(grads, groups [][][]float32, lambda float64) (float64, error) {
	T := len(groups)
	if T < 2 {
		return 0, fmt.Errorf("mtl: soft-sharing penalty needs at least 2 tasks, have %d: %w", T, ErrConfig)
	}
	if !(lambda >= 0) || math.IsInf(lambda, 0) {
		return 0, fmt.Errorf("mtl: soft-sharing penalty: lambda %v: want finite and >= 0: %w", lambda, ErrConfig)
	}
	L := len(groups[0])
	for t := range T {
		if len(groups[t]) != L {
			return 0, fmt.Errorf("mtl: soft-sharing penalty: task %d has %d layers, task 0 %d: %w", t, len(groups[t]), L, ErrShape)
		}
		if grads != nil && (len(grads) != T || len(grads[t]) != L) {
			return 0, fmt.Errorf("mtl: soft-sharing penalty: gradients do not match the parameter groups (task %d): %w", t, ErrShape)
		}
		for l := range L {
			if len(groups[t][l]) != len(groups[0][l]) || (grads != nil && len(grads[t][l]) != len(groups[0][l])) {
				return 0, fmt.Errorf("mtl: soft-sharing penalty: layer %d of task %d has %d values, task 0 %d: %w", l, t, len(groups[t][l]), len(groups[0][l]), ErrShape)
			}
		}
	}
	// Σ_{t≠t'} (a_t − a_t')² = 2T·Σ_t (a_t − mean)² per element.
	var sum float64
	ft := float64(T)
	for l := range L {
		for j := range groups[0][l] {
			var mean float64
			for t := range T {
				mean += float64(groups[t][l][j])
			}
			mean /= ft
			for t := range T {
				d := float64(groups[t][l][j]) - mean
				sum += d * d
				if grads != nil {
					grads[t][l][j] += float32(4 * lambda * ft * d)
				}
			}
		}
	}
	return lambda * 2 * ft * sum, nil
}
