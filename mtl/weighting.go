package mtl

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/onestone/onestone/features"
)

// KnownWeightings are the loss weightings train.weighting can name, by
// name. Each weighting's file adds its entry in an init function
// (weighting_fixed.go, weighting_uncertainty.go, weighting_gradnorm.go):
// a new weighting is one new file, which holds its method, its Balancer
// and its entry. Packages outside mtl may add entries too, before building
// a trainer; the map must not change while trainers are being built.
var KnownWeightings = map[string]WeightingDef{}

// WeightingDef defines a loss weighting.
type WeightingDef struct {
	// Validate checks the weighting's own settings in c (defaults
	// applied), when the train: section is validated, before any model
	// exists. Nil if it has none.
	Validate func(c TrainConfig) error
	// New builds the weighting for a trainer. It may refuse a model or a
	// task set it cannot work on (errors wrapping ErrConfig).
	New func(env WeightingEnv) (Balancer, error)
}

// WeightingEnv is what a weighting is built from.
type WeightingEnv struct {
	Config TrainConfig // the effective train: section
	Tasks  *TaskSet
	Model  Network // parameters, and which of them the tasks share
}

// weightingNames lists KnownWeightings' names, sorted, for messages.
func weightingNames() string {
	names := make([]string, 0, len(KnownWeightings))
	for n := range KnownWeightings {
		names = append(names, n)
	}
	slices.Sort(names)
	switch len(names) {
	case 0:
		return "none"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// A Balancer is a loss weighting as the Trainer runs it. It gives the task
// weights of each step's loss Σ_t w_t·L_t and may look at and change the
// step's gradients: a weighting of the loss alone (fixed, uncertainty)
// only answers Weights and adapts in AfterUpdate; a gradient-level one
// also measures per-task gradients on the shared parameters in
// BeforeBackward (GradNorm takes their norms; PCGrad or MetaBalance would
// keep them) and may rewrite the batch's gradient in BeforeUpdate (PCGrad
// or MetaBalance would put their combination of the per-task gradients in
// place of the shared parameters' gradient). A step calls, in order:
//
//	Weights        the loss and its logit gradients use these weights
//	BeforeBackward then the backward pass of the weighted loss
//	BeforeUpdate   then soft sharing's penalty, clipping, the optimizers
//	AfterUpdate
//
// A Balancer belongs to one Trainer and is not safe for concurrent use.
// The hooks run once per step, and must not allocate in steady state.
type Balancer interface {
	// Weights returns the task weights of the next step's loss. The slice
	// is the Balancer's; the trainer does not modify it.
	Weights() []float64
	// BeforeBackward runs after the step's forward pass and loss, before
	// its backward pass: the place for s.TaskGradTo.
	BeforeBackward(s *BalanceStep) error
	// BeforeUpdate runs after the backward pass with the batch's dense
	// gradients (s.DenseGrads), before clipping and the optimizers.
	BeforeUpdate(s *BalanceStep) error
	// AfterUpdate runs after the optimizers, with the step's losses.
	AfterUpdate(s *BalanceStep) error
	// State and SetState save and restore the weighting for checkpoints.
	State() State
	SetState(State) error
}

// BalanceStep is the trainer's side of a step, as a Balancer's hooks see
// it. It is valid during the hook it is passed to.
type BalanceStep struct {
	t     *Trainer
	b     *features.Batch
	ws    []*worker
	phase balancePhase

	// TaskGradTo's buffers, allocated on its first call
	dlOne   [][]float32 // one task's logit gradients, [head][row]
	oneHot  []float64
	lossTmp []float64
}

// balancePhase is the hook a BalanceStep is passed to.
type balancePhase uint8

const (
	outsideHooks balancePhase = iota
	inBeforeBackward
	inBeforeUpdate
	inAfterUpdate
)

// Step is the number of steps taken before this one (0 for the first).
func (s *BalanceStep) Step() int64 { return s.t.step }

// Losses returns the step's unweighted per-task mean losses (the
// Balancer must not modify them).
func (s *BalanceStep) Losses() []float64 { return s.t.losses }

// TaskGradTo runs a backward pass of task's unweighted loss alone on the
// step's batch and writes into dst[j] the batch's gradient of dense
// parameter params[j] (indices into Network.DenseParams; dst[j] of the
// parameter's size), summed over the workers. The loss is the one
// TaskSet.LossTo gives with weight 1 on task and 0 on the others, so an
// esmm task's gradient reaches its parent's head too. It may only be
// called in BeforeBackward, since the step's own backward pass follows it.
// It costs one backward pass.
func (s *BalanceStep) TaskGradTo(dst [][]float32, task int, params []int) error {
	t := s.t
	if s.phase != inBeforeBackward {
		return fmt.Errorf("mtl: TaskGradTo called outside BeforeBackward: %w", ErrState)
	}
	T := t.tasks.Len()
	if task < 0 || task >= T || len(dst) != len(params) {
		return fmt.Errorf("mtl: TaskGradTo: task %d of %d, %d destinations for %d parameters: %w", task, T, len(dst), len(params), ErrShape)
	}
	for j, i := range params {
		if i < 0 || i >= len(t.values) || len(dst[j]) != len(t.values[i]) {
			return fmt.Errorf("mtl: TaskGradTo: destination %d does not fit parameter %d: %w", j, i, ErrShape)
		}
	}
	if s.dlOne == nil {
		s.dlOne = make([][]float32, len(t.logits))
		for h := range s.dlOne {
			s.dlOne[h] = make([]float32, t.cfg.BatchSize)
		}
		s.oneHot = make([]float64, T)
		s.lossTmp = make([]float64, T)
	}
	n := s.b.Rows
	clear(s.oneHot)
	s.oneHot[task] = 1
	for h := range t.logits {
		t.logits[h] = t.logits[h][:n]
		s.dlOne[h] = s.dlOne[h][:n]
	}
	_, err := t.tasks.LossTo(s.lossTmp, s.dlOne, t.logits, s.b.Labels, s.b.Weights, s.oneHot)
	for h := range t.logits {
		t.logits[h] = t.logits[h][:cap(t.logits[h])]
		s.dlOne[h] = s.dlOne[h][:cap(s.dlOne[h])]
	}
	if err != nil {
		return err
	}
	t.curDL = s.dlOne
	t.parallel(s.ws, phaseBackward)
	t.curDL = t.dLogits
	if err := t.firstErr(s.ws); err != nil {
		return fmt.Errorf("backward of task %q: %w", t.tasks.Task(task).Name, err)
	}
	for j, i := range params {
		d := dst[j]
		for e := range d {
			var v float32
			for _, w := range s.ws {
				v += w.dense[i][e]
			}
			d[e] = v
		}
	}
	return nil
}

// DenseGrads returns, in BeforeUpdate, the batch's dense gradients summed
// over the workers, aligned with Network.DenseParams; a Balancer may
// rewrite them. Elsewhere it returns nil.
func (s *BalanceStep) DenseGrads() [][]float32 {
	if s.phase != inBeforeUpdate {
		return nil
	}
	s.t.reduceDense()
	return s.ws[0].dense
}

// sharedGrads holds each task's gradient of the dense parameters the tasks
// share, one flat slice per task with a view per parameter: what the
// gradient-level weightings (pcgrad, metabalance) combine in place of the
// batch's gradient of those parameters. The embeddings, also shared, keep
// the batch's gradient (the trainer's sparse gradients are per batch).
type sharedGrads struct {
	params []int         // Network.DenseParams indices of the shared parameters
	flat   [][]float32   // per task: the gradients, concatenated
	views  [][][]float32 // per task, per shared parameter: its part of flat
	out    []float32     // a combination, the size of one task's flat
}

// newSharedGrads allocates sharedGrads for env's model, refusing (naming
// the weighting) fewer than 2 tasks and a model whose tasks share no
// dense parameter.
func newSharedGrads(weighting string, env WeightingEnv) (*sharedGrads, error) {
	T := env.Tasks.Len()
	if T < 2 {
		return nil, fmt.Errorf("mtl: train: weighting %s needs at least 2 tasks, the spec has %d: %w", weighting, T, ErrConfig)
	}
	_, values := env.Model.DenseParams()
	g := &sharedGrads{}
	size := 0
	for i := range values {
		if env.Model.TaskOf(i) < 0 {
			g.params = append(g.params, i)
			size += len(values[i])
		}
	}
	if len(g.params) == 0 {
		return nil, fmt.Errorf("mtl: train: weighting %s works on the dense parameters the tasks share, and arch %s shares none (use shared_bottom, omoe, mmoe, cgc or ple): %w", weighting, env.Model.Arch(), ErrConfig)
	}
	g.out = make([]float32, size)
	for range T {
		flat := make([]float32, size)
		var views [][]float32
		off := 0
		for _, i := range g.params {
			views = append(views, flat[off:off+len(values[i]):off+len(values[i])])
			off += len(values[i])
		}
		g.flat, g.views = append(g.flat, flat), append(g.views, views)
	}
	return g, nil
}

// measure takes every task's gradient of the shared parameters on the
// step's batch (in BeforeBackward), times the task's weight w[k]; a task
// of weight 0 costs no backward pass.
func (g *sharedGrads) measure(s *BalanceStep, w []float64) error {
	for k, flat := range g.flat {
		if w[k] == 0 {
			clear(flat)
			continue
		}
		if err := s.TaskGradTo(g.views[k], k, g.params); err != nil {
			return err
		}
		if w[k] != 1 {
			f := float32(w[k])
			for e := range flat {
				flat[e] *= f
			}
		}
	}
	return nil
}

// put writes g.out in place of the batch's gradient of the shared
// parameters (in BeforeUpdate).
func (g *sharedGrads) put(s *BalanceStep) {
	dense := s.DenseGrads()
	off := 0
	for _, i := range g.params {
		off += copy(dense[i], g.out[off:])
	}
}

// lossBalancer runs a Weighting of the loss alone: its weights, updated
// from each step's losses.
type lossBalancer struct{ w Weighting }

func (l lossBalancer) Weights() []float64                { return l.w.Weights() }
func (l lossBalancer) BeforeBackward(*BalanceStep) error { return nil }
func (l lossBalancer) BeforeUpdate(*BalanceStep) error   { return nil }
func (l lossBalancer) AfterUpdate(s *BalanceStep) error  { return l.w.Update(s.Losses(), nil) }
func (l lossBalancer) State() State                      { return l.w.State() }
func (l lossBalancer) SetState(st State) error           { return l.w.SetState(st) }
func newLossBalancer(w Weighting, err error) (Balancer, error) {
	if err != nil {
		return nil, err
	}
	return lossBalancer{w}, nil
}

// Weighting chooses the task weights of the total loss Σ_t w_t·L_t from
// the per-task losses (and, when NeedsGradNorms, the per-task gradient
// norms on the last shared layer): the common form of Fixed, Uncertainty
// and GradNorm. The trainer runs each through a Balancer.
// Implementations are not safe for concurrent use.
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
	_ Balancer  = lossBalancer{}
	_ Balancer  = (*gradNormBalancer)(nil)
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
