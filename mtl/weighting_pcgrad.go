package mtl

import "math/rand/v2"

// WeightingPCGrad is PCGrad (Yu et al., NeurIPS 2020) on the dense
// parameters the tasks share: each step takes every task's gradient of
// them (one extra backward pass per task), removes from each the
// components that conflict with the others' (PCGrad.ProjectTo, in a
// random task order) and trains the shared parameters on the sum of the
// projected gradients. The losses are weighted by train.task_weights
// (1 by default) before the projection, and every task-specific parameter
// and the embeddings train on the plain weighted loss. A step costs about
// (1 + T·b/(f+b)) plain steps (f, b: forward and backward time), as a
// GradNorm step that measures.
const WeightingPCGrad = "pcgrad"

func init() {
	KnownWeightings[WeightingPCGrad] = WeightingDef{New: newPCGradBalancer}
}

// pcgradBalancer runs PCGrad in the trainer. The projection order of step
// s comes from a PCG seeded with s, so a resumed run projects as the
// uninterrupted one would.
type pcgradBalancer struct {
	w           []float64
	g           *sharedGrads
	src         *rand.PCG
	pc          *PCGrad
	projections int
}

func newPCGradBalancer(env WeightingEnv) (Balancer, error) {
	w, err := taskWeights(env)
	if err != nil {
		return nil, err
	}
	if _, err := NewFixed(w); err != nil {
		return nil, err
	}
	g, err := newSharedGrads(WeightingPCGrad, env)
	if err != nil {
		return nil, err
	}
	src := rand.NewPCG(0, 0)
	pc, err := NewPCGrad(len(w), len(g.out), rand.New(src))
	if err != nil {
		return nil, err
	}
	return &pcgradBalancer{w: w, g: g, src: src, pc: pc}, nil
}

func (b *pcgradBalancer) Weights() []float64 { return b.w }

// BeforeBackward takes the tasks' weighted gradients of the shared
// parameters.
func (b *pcgradBalancer) BeforeBackward(s *BalanceStep) error { return b.g.measure(s, b.w) }

// BeforeUpdate puts the sum of the projected gradients in place of the
// batch's gradient of the shared parameters.
func (b *pcgradBalancer) BeforeUpdate(s *BalanceStep) error {
	b.src.Seed(0x9e3779b97f4a7c15, uint64(s.Step()))
	n, err := b.pc.ProjectTo(b.g.out, b.g.flat)
	if err != nil {
		return err
	}
	b.projections = n
	b.g.put(s)
	return nil
}

func (b *pcgradBalancer) AfterUpdate(*BalanceStep) error { return nil }

// State records the weights; PCGrad has no state of its own.
func (b *pcgradBalancer) State() State {
	return State{Values: map[string][]float64{"weights": b.w}}
}

// SetState accepts a state of the same number of tasks.
func (b *pcgradBalancer) SetState(st State) error { return checkValues(st, "weights", len(b.w)) }

// PCGradProjections is the number of projections PCGrad made in the last
// step (how often tasks' gradients conflicted), or -1 without PCGrad.
func (t *Trainer) PCGradProjections() int {
	if b, ok := t.weight.(*pcgradBalancer); ok {
		return b.projections
	}
	return -1
}
