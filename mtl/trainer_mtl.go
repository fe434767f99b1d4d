package mtl

import (
	"fmt"
	"math"
)

// multiTask is the trainer's state for soft parameter sharing and
// freezing.
type multiTask struct {
	// soft sharing
	softLambda float64
	softParams [][][]float32 // [task][layer]
	softGrads  [][][]float32 // the same layers of workers[0]'s gradients
	softValue  float64
	// freezing
	frozen     bool
	trainGrads [][]float32 // workers[0]'s gradients of the trainable params
}

// initMultiTask sets up soft sharing after the workers exist.
func (t *Trainer) initMultiTask() error {
	T := len(t.logits) // the heads: the tasks, and extra heads
	mt := &t.mt
	if !t.model.SoftSharing() {
		if t.cfg.SoftPenalty != 0 {
			return fmt.Errorf("mtl: train: soft_penalty %v is for arch soft, the model is %s: %w", t.cfg.SoftPenalty, t.model.Arch(), ErrConfig)
		}
		return nil
	}
	if T < 2 {
		return fmt.Errorf("mtl: train: arch soft (soft parameter sharing) needs at least 2 tasks, the spec has %d: %w", T, ErrConfig)
	}
	mt.softLambda = t.cfg.SoftPenalty
	if mt.softLambda == 0 {
		mt.softLambda = 1e-3
	}
	groups := t.model.MatchingLayers()
	if len(groups) == 0 {
		return fmt.Errorf("mtl: train: arch soft: the model has no matching layers: %w", ErrConfig)
	}
	d0 := t.workers[0].dense
	mt.softParams = make([][][]float32, T)
	mt.softGrads = make([][][]float32, T)
	for task := range T {
		for _, g := range groups {
			mt.softParams[task] = append(mt.softParams[task], t.values[g[task]])
			mt.softGrads[task] = append(mt.softGrads[task], d0[g[task]])
		}
	}
	return nil
}

// addSoftPenalty adds the soft sharing penalty's gradient to the reduced
// dense gradients (arch soft only).
func (t *Trainer) addSoftPenalty() error {
	mt := &t.mt
	if mt.softParams == nil {
		return nil
	}
	v, err := SoftSharingPenaltyTo(mt.softGrads, mt.softParams, mt.softLambda)
	if err != nil {
		return err
	}
	mt.softValue = v
	return nil
}

// SoftPenalty returns the soft parameter sharing penalty λ Σ_{t≠t'}
// ‖θ_t − θ_t'‖² before the last step's update (0 unless arch soft).
func (t *Trainer) SoftPenalty() float64 { return t.mt.softValue }

// SoftLambda is the soft sharing penalty's λ in use (0 unless arch soft).
func (t *Trainer) SoftLambda() float64 { return t.mt.softLambda }

// FreezeShared keeps the parameters shared by all tasks fixed from now
// on: every dense parameter with model.TaskOf(i) == -1 (shared experts,
// omoe's gate, ple's shared gates) and every embedding table. Only
// task-specific parameters (task experts and gates, towers, heads) are
// updated, by a fresh Adam over just those (the shared ones get no
// optimizer state, so they stay bit-identical). Call it before the first
// Step, and before SetState when resuming a frozen run (the optimizer
// state then holds only the trainable parameters). It fails if nothing
// would be trained (arch single and soft have no shared part, which is
// fine; a model with only shared parameters is not).
func (t *Trainer) FreezeShared() error {
	if t.mt.frozen {
		return nil
	}
	var params []Param
	var grads [][]float32
	d0 := t.workers[0].dense
	for i, name := range t.names {
		if t.model.TaskOf(i) < 0 {
			continue
		}
		params = append(params, Param{Name: name, Value: t.values[i]})
		grads = append(grads, d0[i])
	}
	if len(params) == 0 {
		return fmt.Errorf("mtl: trainer: freezing the shared part leaves no parameter to train: %w", ErrConfig)
	}
	adam, err := NewAdam(t.cfg.Dense, params)
	if err != nil {
		return err
	}
	t.adam = adam
	t.mt.trainGrads = grads
	t.mt.frozen = true
	return nil
}

// Frozen reports whether FreezeShared was called.
func (t *Trainer) Frozen() bool { return t.mt.frozen }

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
