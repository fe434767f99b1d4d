package mtl

import (
	"fmt"
	"math"
)

// WeightingFixed weights each task by train.task_weights (1 for a task it
// does not name), constant over training.
const WeightingFixed = "fixed"

func init() {
	KnownWeightings[WeightingFixed] = WeightingDef{New: newFixedBalancer}
}

func newFixedBalancer(env WeightingEnv) (Balancer, error) {
	w, err := taskWeights(env)
	if err != nil {
		return nil, err
	}
	return newLossBalancer(NewFixed(w))
}

// taskWeights returns train.task_weights in task order (1 for a task it
// does not name), refusing names of unknown tasks. The gradient-level
// weightings (pcgrad, metabalance) weight the tasks' losses by it too.
func taskWeights(env WeightingEnv) ([]float64, error) {
	tasks, cfg := env.Tasks, env.Config
	w := make([]float64, tasks.Len())
	for i := range w {
		w[i] = 1
		if v, ok := cfg.TaskWeights[tasks.Task(i).Name]; ok {
			w[i] = v
		}
	}
	for name := range cfg.TaskWeights {
		if tasks.Index(name) < 0 {
			return nil, fmt.Errorf("mtl: train: task_weights names unknown task %q: %w", name, ErrConfig)
		}
	}
	return w, nil
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
