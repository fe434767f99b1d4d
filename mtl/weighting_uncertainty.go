package mtl

import (
	"fmt"
	"math"
)

// WeightingUncertainty learns the task weights as homoscedastic
// uncertainties (Uncertainty), from each step's losses.
const WeightingUncertainty = "uncertainty"

func init() {
	KnownWeightings[WeightingUncertainty] = WeightingDef{New: func(env WeightingEnv) (Balancer, error) {
		return newLossBalancer(NewUncertainty(UncertaintyConfig{Tasks: env.Tasks.Len()}))
	}}
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
