package mtl

import (
	"fmt"
	"math"

	"github.com/onestone/onestone/features"
)

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

// multiTask is the trainer's state for GradNorm, soft parameter sharing
// and freezing.
type multiTask struct {
	// GradNorm
	gnEvery int
	shared  []int       // Params() indices of the last shared layer
	dlOne   [][]float32 // one task's logit gradients, [head][row]
	oneHot  []float64
	lossTmp []float64
	norms   []float64
	// soft sharing
	softLambda float64
	softParams [][][]float32 // [task][layer]
	softGrads  [][][]float32 // the same layers of workers[0]'s gradients
	softValue  float64
	// freezing
	frozen     bool
	trainGrads [][]float32 // workers[0]'s gradients of the trainable params
}

// newGradNorm builds the GradNorm weighting, refusing models and task sets
// it cannot work on.
func (t *Trainer) newGradNorm() (Weighting, error) {
	T := t.tasks.Len()
	if T < 2 {
		return nil, fmt.Errorf("mtl: train: weighting gradnorm needs at least 2 tasks, the spec has %d: %w", T, ErrConfig)
	}
	t.mt.shared = t.model.LastSharedLayer()
	if len(t.mt.shared) == 0 {
		return nil, fmt.Errorf("mtl: train: weighting gradnorm needs a shared layer, and arch %s shares none (use shared_bottom, omoe, mmoe, cgc or ple): %w", t.model.Arch(), ErrConfig)
	}
	gc := t.cfg.GradNorm
	t.mt.gnEvery = max(gc.Every, 1)
	return NewGradNorm(GradNormConfig{Tasks: T, Alpha: gc.Alpha, LR: gc.LR})
}

// initMultiTask sets up GradNorm's buffers and soft sharing after the
// workers exist.
func (t *Trainer) initMultiTask() error {
	T := t.tasks.Len()
	mt := &t.mt
	if mt.gnEvery > 0 {
		mt.dlOne = make([][]float32, T)
		for h := range mt.dlOne {
			mt.dlOne[h] = make([]float32, t.cfg.BatchSize)
		}
		mt.oneHot = make([]float64, T)
		mt.lossTmp = make([]float64, T)
		mt.norms = make([]float64, T)
	}
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

// taskGradNorms returns ‖∇_W L_t‖ for each task on the last shared layer
// W when GradNorm measures this step, else nil. It runs one backward pass
// per task of that task's unweighted loss alone (its logit gradients from
// LossTo with a one-hot task weighting, so an esmm task's gradient reaches
// its parent's head too) and sums the workers' gradients of W. It must run
// before the step's real backward pass, which overwrites the gradients.
func (t *Trainer) taskGradNorms(ws []*worker, b *features.Batch) ([]float64, error) {
	mt := &t.mt
	if mt.gnEvery == 0 || t.step%int64(mt.gnEvery) != 0 {
		return nil, nil
	}
	n := b.Rows
	T := t.tasks.Len()
	for k := range T {
		clear(mt.oneHot)
		mt.oneHot[k] = 1
		for h := range T {
			t.logits[h] = t.logits[h][:n]
			mt.dlOne[h] = mt.dlOne[h][:n]
		}
		_, err := t.tasks.LossTo(mt.lossTmp, mt.dlOne, t.logits, b.Labels, b.Weights, mt.oneHot)
		for h := range T {
			t.logits[h] = t.logits[h][:cap(t.logits[h])]
			mt.dlOne[h] = mt.dlOne[h][:cap(mt.dlOne[h])]
		}
		if err != nil {
			return nil, err
		}
		t.curDL = mt.dlOne
		t.parallel(ws, phaseBackward)
		if err := t.firstErr(ws); err != nil {
			return nil, fmt.Errorf("backward of task %q: %w", t.tasks.Task(k).Name, err)
		}
		var ss float64
		for _, i := range mt.shared {
			for j := range ws[0].dense[i] {
				var v float32
				for _, w := range ws {
					v += w.dense[i][j]
				}
				ss += float64(v) * float64(v)
			}
		}
		mt.norms[k] = math.Sqrt(ss)
	}
	t.curDL = t.dLogits
	return mt.norms, nil
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

// GradNormEvery is how often GradNorm measures gradient norms (0 without
// GradNorm).
func (t *Trainer) GradNormEvery() int { return t.mt.gnEvery }

// LastGradNorms returns the per-task gradient norms on the last shared
// layer from the last step that measured them (nil without GradNorm or
// before the first; the slice is reused).
func (t *Trainer) LastGradNorms() []float64 {
	if t.mt.gnEvery == 0 || t.step == 0 {
		return nil
	}
	return t.mt.norms
}

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
