package mtl

import (
	"fmt"
	"math"

	"github.com/onestone/onestone/internal/kernels"
)

// State is the resumable state of an optimizer or a loss weighting, for
// checkpoints. The slices returned by State methods alias the live state
// (no copy of hundreds of megabytes): write them out before the next step.
// SetState methods copy into the live state and check every name and
// length, so a checkpoint of another model is rejected with ErrState.
type State struct {
	// Tensors holds float32 state (moments, accumulators), keyed
	// "<param>.<kind>", e.g. "experts.0.layers.0.weight.m".
	Tensors map[string][]float32 `json:"-"`
	// Values holds small float64 state (loss-weighting parameters).
	Values map[string][]float64 `json:"values,omitempty"`
	// Counts holds per-row step counts (sparse Adam), keyed "<table>.steps".
	Counts map[string][]int32 `json:"-"`
	// Counters holds global step counters, e.g. "step".
	Counters map[string]int64 `json:"counters,omitempty"`
}

func checkTensor(st State, name string, dst []float32) error {
	src, ok := st.Tensors[name]
	if !ok {
		return fmt.Errorf("mtl: state has no tensor %q: %w", name, ErrState)
	}
	if len(src) != len(dst) {
		return fmt.Errorf("mtl: state tensor %q has %d values, want %d: %w", name, len(src), len(dst), ErrState)
	}
	return nil
}

func checkCounts(st State, name string, dst []int32) error {
	src, ok := st.Counts[name]
	if !ok {
		return fmt.Errorf("mtl: state has no counts %q: %w", name, ErrState)
	}
	if len(src) != len(dst) {
		return fmt.Errorf("mtl: state counts %q has %d values, want %d: %w", name, len(src), len(dst), ErrState)
	}
	return nil
}

func checkValues(st State, name string, n int) error {
	src, ok := st.Values[name]
	if !ok {
		return fmt.Errorf("mtl: state has no values %q: %w", name, ErrState)
	}
	if len(src) != n {
		return fmt.Errorf("mtl: state values %q has %d entries, want %d: %w", name, len(src), n, ErrState)
	}
	return nil
}

// Param is one dense parameter tensor, updated in place by an optimizer.
type Param struct {
	Name  string    // unique, e.g. "experts.0.layers.0.weight"
	Value []float32 // the parameter's values (aliased, not copied)
}

// AdamConfig configures the dense Adam optimizer (Kingma & Ba 2015), with
// optional decoupled weight decay (AdamW, Loshchilov & Hutter 2019). A zero
// field takes its default.
type AdamConfig struct {
	// LR is the base learning rate; Step multiplies it by its scale
	// argument (the schedule). Default: 1e-3.
	LR float64 `json:"lr,omitempty" yaml:"lr,omitempty"`
	// Beta1 is the decay of the first moment. Default: 0.9.
	Beta1 float64 `json:"beta1,omitempty" yaml:"beta1,omitempty"`
	// Beta2 is the decay of the second moment. Default: 0.999.
	Beta2 float64 `json:"beta2,omitempty" yaml:"beta2,omitempty"`
	// Eps is added to the root of the bias-corrected second moment.
	// Default: 1e-8.
	Eps float64 `json:"eps,omitempty" yaml:"eps,omitempty"`
	// WeightDecay is the decoupled decay: each step p -= lr·WeightDecay·p.
	// Default: 0 (none).
	WeightDecay float64 `json:"weight_decay,omitempty" yaml:"weight_decay,omitempty"`
}

func (c AdamConfig) withDefaults() AdamConfig {
	if c.LR == 0 {
		c.LR = 1e-3
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	return c
}

// Validate checks the configuration after defaults are applied.
func (c AdamConfig) Validate() error {
	c = c.withDefaults()
	return validateAdam("adam", c.LR, c.Beta1, c.Beta2, c.Eps, c.WeightDecay)
}

func validateAdam(what string, lr, b1, b2, eps, wd float64) error {
	switch {
	case !(lr > 0) || math.IsInf(lr, 0):
		return fmt.Errorf("mtl: %s: lr %v: want finite and > 0: %w", what, lr, ErrConfig)
	case !(b1 >= 0 && b1 < 1):
		return fmt.Errorf("mtl: %s: beta1 %v: want [0, 1): %w", what, b1, ErrConfig)
	case !(b2 >= 0 && b2 < 1):
		return fmt.Errorf("mtl: %s: beta2 %v: want [0, 1): %w", what, b2, ErrConfig)
	case !(eps > 0) || math.IsInf(eps, 0):
		return fmt.Errorf("mtl: %s: eps %v: want finite and > 0: %w", what, eps, ErrConfig)
	case !(wd >= 0) || math.IsInf(wd, 0):
		return fmt.Errorf("mtl: %s: weight decay / l2 %v: want finite and >= 0: %w", what, wd, ErrConfig)
	}
	return nil
}

// Adam is the dense Adam optimizer over a fixed list of parameters. Its
// state is two float32 moments per parameter, preallocated: 8 bytes per
// parameter beyond the parameter itself. Step allocates nothing. Adam is
// not safe for concurrent use.
type Adam struct {
	cfg    AdamConfig
	params []Param
	m, v   [][]float32
	step   int64
	size   int // values over all parameters
}

// NewAdam returns an Adam optimizer for params (their Value slices are
// updated in place). Parameter names must be unique and non-empty.
func NewAdam(cfg AdamConfig, params []Param) (*Adam, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkNames("adam", len(params), func(i int) string { return params[i].Name }); err != nil {
		return nil, err
	}
	a := &Adam{cfg: cfg.withDefaults(), params: append([]Param(nil), params...)}
	a.m = make([][]float32, len(params))
	a.v = make([][]float32, len(params))
	for i, p := range params {
		a.m[i] = make([]float32, len(p.Value))
		a.v[i] = make([]float32, len(p.Value))
		a.size += len(p.Value)
	}
	return a, nil
}

func checkNames(what string, n int, name func(int) string) error {
	seen := make(map[string]bool, n)
	for i := range n {
		nm := name(i)
		if nm == "" {
			return fmt.Errorf("mtl: %s: parameter %d has no name: %w", what, i, ErrConfig)
		}
		if seen[nm] {
			return fmt.Errorf("mtl: %s: parameter %q given twice: %w", what, nm, ErrConfig)
		}
		seen[nm] = true
	}
	return nil
}

// Steps is the number of steps taken.
func (a *Adam) Steps() int64 { return a.step }

// Step applies one update with learning rate cfg.LR·scale (scale is the
// schedule's multiplier, 1 for a constant rate). grads[i] is the gradient
// of params[i], same length. With t the step number (from 1):
//
//	m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//	p -= lr·WeightDecay·p
//	p -= lr·(m/(1−β1^t)) / (sqrt(v/(1−β2^t)) + eps)
//
// the last line computed as lr·sqrt(1−β2^t)/(1−β1^t) · m/(sqrt(v) + eps·sqrt(1−β2^t)),
// which is the same expression.
func (a *Adam) Step(grads [][]float32, scale float64) error {
	if len(grads) != len(a.params) {
		return fmt.Errorf("mtl: adam: %d gradients for %d parameters: %w", len(grads), len(a.params), ErrShape)
	}
	for i, g := range grads {
		if len(g) != len(a.params[i].Value) {
			return fmt.Errorf("mtl: adam: gradient of %q has %d values, want %d: %w", a.params[i].Name, len(g), len(a.params[i].Value), ErrShape)
		}
	}
	c := a.begin(scale)
	a.update(c, 0, a.size, grads, nil)
	return nil
}

// begin counts a step and returns its constants, for update calls that
// together cover every parameter once.
func (a *Adam) begin(scale float64) kernels.AdamConsts {
	a.step++
	c := a.cfg
	lr := c.LR * scale
	t := float64(a.step)
	bc1 := 1 - math.Pow(c.Beta1, t)
	bc2 := 1 - math.Pow(c.Beta2, t)
	return kernels.AdamConsts{
		Beta1:    float32(c.Beta1),
		Beta2:    float32(c.Beta2),
		StepSize: float32(lr * math.Sqrt(bc2) / bc1),
		Eps:      float32(c.Eps * math.Sqrt(bc2)),
		Decay:    float32(1 - lr*c.WeightDecay),
	}
}

// update applies the step c to the parameter values [lo, hi) of the
// parameters' concatenation, with the gradient g0 + g1 (g0 alone when g1
// is nil; both aligned with the parameters, lengths checked). Calls on
// disjoint ranges may run concurrently.
func (a *Adam) update(c kernels.AdamConsts, lo, hi int, g0, g1 [][]float32) {
	off := 0
	for i, p := range a.params {
		n := len(p.Value)
		s, e := max(lo-off, 0), min(hi-off, n)
		off += n
		if s >= e {
			continue
		}
		var h []float32
		if g1 != nil {
			h = g1[i][s:e]
		}
		kernels.AdamUpdate(p.Value[s:e], a.m[i][s:e], a.v[i][s:e], g0[i][s:e], h, c)
	}
}

// State returns the moments ("<name>.m", "<name>.v") and the step counter
// ("step"), aliasing the live state.
func (a *Adam) State() State {
	st := State{Tensors: make(map[string][]float32, 2*len(a.params)), Counters: map[string]int64{"step": a.step}}
	for i, p := range a.params {
		st.Tensors[p.Name+".m"] = a.m[i]
		st.Tensors[p.Name+".v"] = a.v[i]
	}
	return st
}

// SetState restores a State saved by State from an optimizer over the same
// parameters. Nothing is changed when it returns an error.
func (a *Adam) SetState(st State) error {
	for i, p := range a.params {
		if err := checkTensor(st, p.Name+".m", a.m[i]); err != nil {
			return err
		}
		if err := checkTensor(st, p.Name+".v", a.v[i]); err != nil {
			return err
		}
	}
	step, ok := st.Counters["step"]
	if !ok || step < 0 {
		return fmt.Errorf("mtl: adam: state has no valid step counter: %w", ErrState)
	}
	for i, p := range a.params {
		copy(a.m[i], st.Tensors[p.Name+".m"])
		copy(a.v[i], st.Tensors[p.Name+".v"])
	}
	a.step = step
	return nil
}

// SumSquares returns Σ x² over all slices, accumulated in float64.
func SumSquares(xs ...[]float32) float64 {
	var s float64
	for _, x := range xs {
		var part float32 // blocks of float32 keep the loop fast; flushed often
		for j, v := range x {
			part += v * v
			if j&255 == 255 {
				s += float64(part)
				part = 0
			}
		}
		s += float64(part)
	}
	return s
}

// Norm returns the Euclidean norm of the concatenation of grads.
func Norm(grads [][]float32) float64 { return math.Sqrt(SumSquares(grads...)) }

// ClipGradNorm scales grads in place so that their global Euclidean norm
// (over all slices together: pass the dense gradients and the sparse
// embedding gradients in one call) is at most maxNorm, and returns the
// norm before clipping. A non-finite norm is returned unchanged and the
// gradients are left alone, so the caller can stop with ErrNonFinite.
// maxNorm <= 0 disables clipping (the norm is still returned).
func ClipGradNorm(grads [][]float32, maxNorm float64) float64 {
	norm := Norm(grads)
	if maxNorm <= 0 || !(norm > maxNorm) || math.IsInf(norm, 0) {
		return norm
	}
	f := float32(maxNorm / (norm + 1e-6))
	for _, g := range grads {
		for j := range g {
			g[j] *= f
		}
	}
	return norm
}

// Decay shapes of a Schedule after its warm-up.
const (
	DecayConstant    = "constant"     // scale 1 after warm-up
	DecayLinear      = "linear"       // linear from 1 to MinScale over DecaySteps, then MinScale
	DecayCosine      = "cosine"       // half cosine from 1 to MinScale over DecaySteps, then MinScale
	DecayInverseSqrt = "inverse_sqrt" // sqrt(max(WarmupSteps, 1)/(step+1)) after warm-up
)

// ScheduleConfig configures a learning-rate schedule: a linear warm-up
// followed by a decay. A zero field takes its default.
type ScheduleConfig struct {
	// WarmupSteps is the length of the linear warm-up from lr/WarmupSteps
	// to lr. Default: 0 (none).
	WarmupSteps int64 `json:"warmup_steps,omitempty" yaml:"warmup_steps,omitempty"`
	// Decay is one of "constant", "linear", "cosine", "inverse_sqrt".
	// Default: "constant".
	Decay string `json:"decay,omitempty" yaml:"decay,omitempty"`
	// DecaySteps is the number of steps after the warm-up over which
	// linear and cosine decay reach MinScale. Required for those.
	DecaySteps int64 `json:"decay_steps,omitempty" yaml:"decay_steps,omitempty"`
	// MinScale is the final multiplier of linear and cosine decay, in
	// [0, 1]. Default: 0.
	MinScale float64 `json:"min_scale,omitempty" yaml:"min_scale,omitempty"`
}

// Validate checks the configuration.
func (c ScheduleConfig) Validate() error {
	if c.WarmupSteps < 0 {
		return fmt.Errorf("mtl: schedule: warmup_steps %d < 0: %w", c.WarmupSteps, ErrConfig)
	}
	if !(c.MinScale >= 0 && c.MinScale <= 1) {
		return fmt.Errorf("mtl: schedule: min_scale %v: want [0, 1]: %w", c.MinScale, ErrConfig)
	}
	switch c.Decay {
	case "", DecayConstant, DecayInverseSqrt:
	case DecayLinear, DecayCosine:
		if c.DecaySteps <= 0 {
			return fmt.Errorf("mtl: schedule: decay %q needs decay_steps > 0, have %d: %w", c.Decay, c.DecaySteps, ErrConfig)
		}
	default:
		return fmt.Errorf("mtl: schedule: unknown decay %q (want constant, linear, cosine or inverse_sqrt): %w", c.Decay, ErrConfig)
	}
	return nil
}

// Schedule maps a step number to a learning-rate multiplier. It is a
// value type, safe for concurrent use.
type Schedule struct{ cfg ScheduleConfig }

// NewSchedule validates cfg and returns the schedule.
func NewSchedule(cfg ScheduleConfig) (Schedule, error) {
	if err := cfg.Validate(); err != nil {
		return Schedule{}, err
	}
	if cfg.Decay == "" {
		cfg.Decay = DecayConstant
	}
	return Schedule{cfg}, nil
}

// Scale returns the multiplier for the step that follows `step` completed
// steps (step 0 is the first update): (step+1)/WarmupSteps during the
// warm-up, then the decay.
func (s Schedule) Scale(step int64) float64 {
	c := s.cfg
	if step < c.WarmupSteps {
		return float64(step+1) / float64(c.WarmupSteps)
	}
	k := step - c.WarmupSteps // steps since the end of warm-up
	switch c.Decay {
	case DecayLinear:
		if k >= c.DecaySteps {
			return c.MinScale
		}
		return 1 - (1-c.MinScale)*float64(k)/float64(c.DecaySteps)
	case DecayCosine:
		if k >= c.DecaySteps {
			return c.MinScale
		}
		return c.MinScale + (1-c.MinScale)*0.5*(1+math.Cos(math.Pi*float64(k)/float64(c.DecaySteps)))
	case DecayInverseSqrt:
		return math.Sqrt(float64(max(c.WarmupSteps, 1)) / float64(step+1))
	}
	return 1
}
