package mtl

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Task kinds accepted in TaskConfig.Kind.
const (
	// KindBinary is a binary classification head: sigmoid of the logit,
	// logloss against a label in [0, 1].
	KindBinary = "binary"
	// KindRegression is a regression head: the logit is the prediction,
	// squared error against a finite label.
	KindRegression = "regression"
	// KindESMM is the ESMM composition (Ma et al., SIGIR 2018): the head is
	// the conditional logit (for example CVR given a click); the task's
	// loss is taken on the product of the parent's probability and the
	// head's sigmoid (pCTCVR = pCTR x pCVR) against the task's label
	// (click-and-convert) over every row, so the head learns on the entire
	// impression space.
	KindESMM = "esmm"
)

// Delayed-feedback modes accepted in TaskConfig.DelayedFeedback.
const (
	// DelayedResend: the task's positives arrive late and are re-sent. A
	// stream that joins labels after the fact (ingest/join, emit click)
	// trains each row at once with this task's label 0 and, when the
	// positive arrives, re-sends the row with label 1. So every row whose
	// label for this task is 1 is such a re-sent copy: every other task
	// skips it (with ESMM, the click is not counted twice), and this task
	// trains on all rows as they are (the naive baseline).
	DelayedResend = "resend"
	// DelayedFNW is DelayedResend with fake-negative weighting (Ktena et
	// al., "Addressing Delayed Feedback for Continuous Training with
	// Neural Networks in CTR prediction", RecSys 2019) on this task: with
	// p the task's own predicted probability (the chain product for
	// esmm, treated as a constant: no gradient flows through it), a row
	// with label 1 is weighted 1+p and a row with label 0 (1-p)(1+p).
	// Among the rows of one kind of example the labels 1 are then a share
	// q/(1+q) of the rows (q the true rate); the weights move the
	// optimum of the logloss from q/(1+q) back to q. The masked term
	// (MaskedCVRWeight) is weighted the same way with p the head's own
	// sigmoid.
	DelayedFNW = "fnw"
)

// TaskConfig defines one task, trained by one head of the model.
type TaskConfig struct {
	// Name identifies the task and its head ("ctr", "cvr"). Required,
	// unique, made of letters, digits, '_', '-' and '.'.
	Name string `json:"name" yaml:"name"`
	// Kind is KindBinary, KindRegression or KindESMM. Default: "binary".
	Kind string `json:"kind" yaml:"kind"`
	// Label is the label column the task learns from: 0 or 1 for binary
	// and esmm tasks, any finite value for regression. For an esmm task it
	// is the joint event over all rows (click-and-convert over
	// impressions). Default: Name.
	Label string `json:"label" yaml:"label"`
	// Parent names the task whose probability multiplies this head's
	// (esmm only, required there): a binary task, or another esmm task for
	// longer chains (impression -> click -> cart -> buy). The chain must
	// end at a binary task.
	Parent string `json:"parent,omitempty" yaml:"parent,omitempty"`
	// MaskedCVRWeight adds, for an esmm task, the plain logloss of the
	// head's own sigmoid against the task label on the rows where the
	// parent's label is 1 (the clicked rows), times this weight. The term
	// is averaged over those rows. Default: 0 (pure ESMM).
	MaskedCVRWeight float64 `json:"masked_cvr_weight,omitempty" yaml:"masked_cvr_weight,omitempty"`
	// DelayedFeedback is DelayedResend or DelayedFNW for a binary or esmm
	// task whose positives are re-sent late (see those constants); at most
	// one task of a set. Default: "" (labels are final).
	DelayedFeedback string `json:"delayed_feedback,omitempty" yaml:"delayed_feedback,omitempty"`
	// Mask names the column that holds the task's sample space: a row is
	// in it when the column is 1 (>= 0.5). It is another binary or esmm
	// task's label (CVR trained on the clicked rows: mask: click), or any
	// numeric or bool column, which the feature transform turns into 1
	// where it is non-zero and 0 where it is zero or null. The task's loss
	// is then the weighted mean over the rows in its space, Σ w_r·l_r /
	// Σ w_r over those rows (a batch with none of them adds nothing), and
	// its objective is evaluated on them only. Binary and regression
	// tasks; an esmm task is trained on the entire space by design.
	// Default: "" (every row).
	Mask string `json:"mask,omitempty" yaml:"mask,omitempty"`
	// Counterfactual adds ESCM²'s counterfactual risk on an esmm task's
	// head: CounterfactualIPW or CounterfactualDR (see those constants).
	// Default: "" (none).
	Counterfactual string `json:"counterfactual,omitempty" yaml:"counterfactual,omitempty"`
	// CounterfactualWeight is λ_c, the weight of the counterfactual risk
	// in the task's loss. Default: 1 when Counterfactual is set.
	CounterfactualWeight float64 `json:"counterfactual_weight,omitempty" yaml:"counterfactual_weight,omitempty"`
	// IPWClip caps the inverse propensity 1/ô of the counterfactual risk:
	// the propensity ô is clipped from below at 1/IPWClip. Default: 15,
	// the clip of the ESCM² authors' implementation (PaddleRec).
	IPWClip float64 `json:"ipw_clip,omitempty" yaml:"ipw_clip,omitempty"`
	// CalibratorWeight is α of AITM's behavioural-expectation calibrator
	// (Xi et al., KDD 2021) on a binary task with a binary parent (the
	// previous step of a funnel): α·Σ w_r·max(p_t − p_parent, 0) / Σ w_r
	// over the task's rows, which keeps each step's probability below the
	// previous one's. Gradients reach both heads. Default: 0 (none).
	CalibratorWeight float64 `json:"calibrator_weight,omitempty" yaml:"calibrator_weight,omitempty"`
}

// Counterfactual risks accepted in TaskConfig.Counterfactual: ESCM²
// (Wang et al., "ESCM²: Entire Space Counterfactual Multi-Task Model for
// Post-Click Conversion Rate Estimation", SIGIR 2022). With o_r the
// parent's label (the click), ô_r the parent's predicted probability
// (pCTR; for a longer chain, the parent's chain product) clipped from below
// at 1/IPWClip and held constant (no gradient reaches the parent through
// it), δ_r the logloss of the head's own sigmoid (pCVR) against the task's
// label, and the means taken over every row of the task (the entire
// impression space), the task's loss gains λ_c times:
const (
	// CounterfactualIPW: the inverse-propensity-weighted risk
	// mean(o_r·δ_r/ô_r).
	CounterfactualIPW = "ipw"
	// CounterfactualDR: the doubly robust risk mean(ê_r + o_r·(δ_r −
	// ê_r)/ô_r) plus the imputation loss mean(o_r·(δ_r − ê_r)²/ô_r). The
	// imputation tower, an extra head of the model named "<task>_impute"
	// (Heads lists it after the tasks; it has no objective), imputes the
	// conversion label r̃_r = σ(its logit) of every impression, and ê_r is
	// the logloss of pCVR against r̃_r. The risk trains the task's head
	// (r̃ held constant): its gradient (1 − o/ô)·(pCVR − r̃) + (o/ô)·(pCVR −
	// y) has expectation pCVR − CVR when either the propensity or the
	// imputed label is right. The imputation loss, o·(r̃ − y)²·z²/ô with z
	// the task's logit, trains the imputation head alone (z held
	// constant). The ESCM² authors' implementation imputes the error
	// itself and lets the imputation loss reach the task's head too, which
	// pulls the CVR head's errors toward the imputed ones and moves its
	// optimum away from the CVR; the form here keeps the optimum
	// (TestCounterfactualFixedPoints).
	CounterfactualDR = "dr"
)

// imputeSuffix names the extra head of a CounterfactualDR task.
const imputeSuffix = "_impute"

// defaultIPWClip is the default of TaskConfig.IPWClip.
const defaultIPWClip = 15

// withDefaults returns c with the documented defaults filled in.
func (c TaskConfig) withDefaults() TaskConfig {
	if c.Kind == "" {
		c.Kind = KindBinary
	}
	if c.Label == "" {
		c.Label = c.Name
	}
	if c.Counterfactual != "" {
		if c.CounterfactualWeight == 0 {
			c.CounterfactualWeight = 1
		}
		if c.IPWClip == 0 {
			c.IPWClip = defaultIPWClip
		}
	}
	return c
}

// Validate checks one task on its own (NewTaskSet also checks the tasks
// against each other). Empty fields that have defaults are accepted.
func (c TaskConfig) Validate() error {
	c = c.withDefaults()
	if c.Name == "" {
		return fmt.Errorf("mtl: task with empty name: %w", ErrConfig)
	}
	if strings.IndexFunc(c.Name, func(r rune) bool {
		return !(r == '_' || r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) >= 0 {
		return fmt.Errorf("mtl: task %q: name may only hold letters, digits, '_', '-' and '.': %w", c.Name, ErrConfig)
	}
	switch c.Kind {
	case KindBinary, KindRegression:
		if c.Parent != "" && c.Kind == KindRegression {
			return fmt.Errorf("mtl: task %q: parent %q is only allowed for kinds %q and %q, not %q: %w", c.Name, c.Parent, KindESMM, KindBinary, c.Kind, ErrConfig)
		}
		if c.Parent == c.Name && c.Parent != "" {
			return fmt.Errorf("mtl: task %q: is its own parent: %w", c.Name, ErrConfig)
		}
		if c.MaskedCVRWeight != 0 {
			return fmt.Errorf("mtl: task %q: masked_cvr_weight is only allowed for kind %q, not %q: %w", c.Name, KindESMM, c.Kind, ErrConfig)
		}
	case KindESMM:
		if c.Parent == "" {
			return fmt.Errorf("mtl: task %q: kind esmm needs a parent (the binary task it is conditioned on, e.g. ctr): %w", c.Name, ErrConfig)
		}
		if c.Parent == c.Name {
			return fmt.Errorf("mtl: task %q: is its own parent: %w", c.Name, ErrConfig)
		}
		if !(c.MaskedCVRWeight >= 0) || math.IsInf(c.MaskedCVRWeight, 0) {
			return fmt.Errorf("mtl: task %q: masked_cvr_weight %v: want finite and >= 0: %w", c.Name, c.MaskedCVRWeight, ErrConfig)
		}
	default:
		return fmt.Errorf("mtl: task %q: unknown kind %q (want %q, %q or %q): %w", c.Name, c.Kind, KindBinary, KindRegression, KindESMM, ErrConfig)
	}
	switch c.DelayedFeedback {
	case "":
	case DelayedResend, DelayedFNW:
		if c.Kind == KindRegression {
			return fmt.Errorf("mtl: task %q: delayed_feedback %q needs a binary or esmm task: %w", c.Name, c.DelayedFeedback, ErrConfig)
		}
	default:
		return fmt.Errorf("mtl: task %q: unknown delayed_feedback %q (want %q or %q): %w", c.Name, c.DelayedFeedback, DelayedResend, DelayedFNW, ErrConfig)
	}
	return c.validateSpace()
}

// validateSpace checks the keys of the sample space, the counterfactual
// risk and the calibrator (defaults applied).
func (c TaskConfig) validateSpace() error {
	if c.Mask != "" {
		if c.Kind == KindESMM {
			return fmt.Errorf("mtl: task %q: mask %q: an esmm task trains on the entire space (use a binary task with a mask for a conditional model, or masked_cvr_weight): %w", c.Name, c.Mask, ErrConfig)
		}
		if c.Mask == c.Label {
			return fmt.Errorf("mtl: task %q: mask %q is the task's own label: %w", c.Name, c.Mask, ErrConfig)
		}
	}
	switch c.Counterfactual {
	case "":
		if c.CounterfactualWeight != 0 || c.IPWClip != 0 {
			return fmt.Errorf("mtl: task %q: counterfactual_weight and ipw_clip need counterfactual: ipw or dr: %w", c.Name, ErrConfig)
		}
	case CounterfactualIPW, CounterfactualDR:
		if c.Kind != KindESMM {
			return fmt.Errorf("mtl: task %q: counterfactual %q needs an esmm task (ESCM² regularises the conditional head of ESMM), not %q: %w", c.Name, c.Counterfactual, c.Kind, ErrConfig)
		}
		if c.DelayedFeedback != "" {
			return fmt.Errorf("mtl: task %q: counterfactual and delayed_feedback cannot be combined: %w", c.Name, ErrConfig)
		}
		if !(c.CounterfactualWeight > 0) || math.IsInf(c.CounterfactualWeight, 0) {
			return fmt.Errorf("mtl: task %q: counterfactual_weight %v: want finite and > 0: %w", c.Name, c.CounterfactualWeight, ErrConfig)
		}
		if !(c.IPWClip >= 1) || math.IsInf(c.IPWClip, 0) {
			return fmt.Errorf("mtl: task %q: ipw_clip %v: want finite and >= 1: %w", c.Name, c.IPWClip, ErrConfig)
		}
	default:
		return fmt.Errorf("mtl: task %q: unknown counterfactual %q (want %q or %q): %w", c.Name, c.Counterfactual, CounterfactualIPW, CounterfactualDR, ErrConfig)
	}
	if !(c.CalibratorWeight >= 0) || math.IsInf(c.CalibratorWeight, 0) {
		return fmt.Errorf("mtl: task %q: calibrator_weight %v: want finite and >= 0: %w", c.Name, c.CalibratorWeight, ErrConfig)
	}
	if c.CalibratorWeight > 0 && (c.Kind != KindBinary || c.Parent == "") {
		return fmt.Errorf("mtl: task %q: calibrator_weight needs a binary task with a parent (the previous step of the funnel), not a %s task with parent %q: %w", c.Name, c.Kind, c.Parent, ErrConfig)
	}
	return nil
}

// Objective is one score a served model produces. Every task has an
// objective named after it (its head's probability, or value for
// regression); every esmm task adds the product probability of its chain
// (named "ctcvr" when the parent is "ctr" and the task "cvr", otherwise
// "<parent objective>_x_<task>").
type Objective struct {
	// Name of the score ("ctr", "cvr", "ctcvr").
	Name string `json:"name"`
	// Task is the index of the task (head) the score belongs to.
	Task int `json:"task"`
	// Kind is KindBinary for probabilities, KindRegression for values.
	Kind string `json:"kind"`
	// Product is true for an ESMM product probability (pCTCVR).
	Product bool `json:"product,omitempty"`
	// Label is the label column to evaluate the score against.
	Label string `json:"label"`
	// Mask, when not empty, is the label column whose value-1 rows are the
	// population of the score: for an esmm head's conditional probability
	// (CVR) these are the parent's positive rows (clicks). Empty: all rows.
	Mask string `json:"mask,omitempty"`
}

// TaskSet is a validated, ordered set of tasks. Head i of the model is task
// i, in the order given to NewTaskSet; after the tasks come the extra heads
// some tasks need (the imputation head of a CounterfactualDR task), so a
// model has Heads() outputs. A TaskSet is immutable after construction and
// safe for concurrent use.
type TaskSet struct {
	tasks      []TaskConfig
	parent     []int   // -1 when none
	chain      [][]int // esmm: [t, parent, ..., first non-esmm]; others: [t]
	objectives []Objective
	objNames   []string
	labels     []string
	delayed    int // the task with DelayedFeedback, or -1

	heads   []string // tasks, then extra heads
	impute  []int    // per task: its imputation head, or -1
	columns []string // label columns: the tasks' labels, then extra mask columns
	mask    []int    // per task: column of its mask, or -1
}

// NewTaskSet validates cfgs and returns the task set. It rejects unknown
// kinds, duplicate task names, esmm tasks whose parent is missing or
// neither binary nor esmm, binary tasks whose parent is not binary, parent
// cycles, masks on a regression task's label, and objective or head names
// that collide.
func NewTaskSet(cfgs []TaskConfig) (*TaskSet, error) {
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("mtl: no tasks: %w", ErrConfig)
	}
	s := &TaskSet{
		tasks:   make([]TaskConfig, len(cfgs)),
		parent:  make([]int, len(cfgs)),
		chain:   make([][]int, len(cfgs)),
		labels:  make([]string, len(cfgs)),
		delayed: -1,
		impute:  make([]int, len(cfgs)),
		mask:    make([]int, len(cfgs)),
	}
	index := make(map[string]int, len(cfgs))
	for i, c := range cfgs {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("%w (task %d)", err, i)
		}
		c = c.withDefaults()
		if j, dup := index[c.Name]; dup {
			return nil, fmt.Errorf("mtl: task %q: defined twice (tasks %d and %d): %w", c.Name, j, i, ErrConfig)
		}
		index[c.Name] = i
		s.tasks[i] = c
		s.labels[i] = c.Label
		if c.DelayedFeedback != "" {
			if s.delayed >= 0 {
				return nil, fmt.Errorf("mtl: tasks %q and %q both have delayed_feedback; at most one task's positives can be re-sent: %w", s.tasks[s.delayed].Name, c.Name, ErrConfig)
			}
			s.delayed = i
		}
	}
	for i, c := range s.tasks {
		s.parent[i] = -1
		if c.Parent == "" {
			continue
		}
		p, ok := index[c.Parent]
		if !ok {
			return nil, fmt.Errorf("mtl: task %q: parent %q is not a task: %w", c.Name, c.Parent, ErrConfig)
		}
		k := s.tasks[p].Kind
		if c.Kind == KindESMM && k != KindBinary && k != KindESMM {
			return nil, fmt.Errorf("mtl: task %q: parent %q is a %s task, want binary or esmm: %w", c.Name, c.Parent, k, ErrConfig)
		}
		if c.Kind == KindBinary && k != KindBinary {
			return nil, fmt.Errorf("mtl: task %q: parent %q is a %s task; the parent of a binary task (the previous step of a funnel) must be binary: %w", c.Name, c.Parent, k, ErrConfig)
		}
		s.parent[i] = p
	}
	for i := range s.tasks {
		seen := []int{i}
		for p := s.parent[i]; p >= 0; p = s.parent[p] {
			if len(seen) > len(s.tasks) || p == i {
				return nil, fmt.Errorf("mtl: task %q: parent chain %s forms a cycle: %w", s.tasks[i].Name, chainNames(s.tasks, seen, p), ErrConfig)
			}
			seen = append(seen, p)
		}
		// The product chain of an esmm task runs up to the first task that
		// is not esmm, whose probability is not conditional.
		ch := []int{i}
		for c := i; s.tasks[c].Kind == KindESMM; {
			c = s.parent[c]
			ch = append(ch, c)
		}
		s.chain[i] = ch
	}
	if err := s.initSpaces(); err != nil {
		return nil, err
	}
	// Objectives: each task's own score, then for esmm its product.
	productName := make([]string, len(s.tasks))
	var name func(t int) string // name of the full (product) probability of t
	name = func(t int) string {
		if s.tasks[t].Kind != KindESMM {
			return s.tasks[t].Name
		}
		if productName[t] != "" {
			return productName[t]
		}
		pn := name(s.parent[t])
		n := pn + "_x_" + s.tasks[t].Name
		if pn == "ctr" && s.tasks[t].Name == "cvr" {
			n = "ctcvr"
		}
		productName[t] = n
		return n
	}
	seen := make(map[string]bool)
	add := func(o Objective) error {
		if seen[o.Name] {
			return fmt.Errorf("mtl: objective name %q is produced twice (rename a task): %w", o.Name, ErrConfig)
		}
		seen[o.Name] = true
		s.objectives = append(s.objectives, o)
		s.objNames = append(s.objNames, o.Name)
		return nil
	}
	for i, c := range s.tasks {
		o := Objective{Name: c.Name, Task: i, Kind: KindBinary, Label: c.Label, Mask: c.Mask}
		switch c.Kind {
		case KindRegression:
			o.Kind = KindRegression
		case KindESMM:
			o.Mask = s.tasks[s.parent[i]].Label
		}
		if err := add(o); err != nil {
			return nil, err
		}
		if c.Kind == KindESMM {
			if err := add(Objective{Name: name(i), Task: i, Kind: KindBinary, Product: true, Label: c.Label}); err != nil {
				return nil, err
			}
		}
	}
	// Extra heads, after the tasks.
	s.heads = make([]string, len(s.tasks))
	for i, c := range s.tasks {
		s.heads[i] = c.Name
		s.impute[i] = -1
	}
	for i, c := range s.tasks {
		if c.Counterfactual != CounterfactualDR {
			continue
		}
		h := c.Name + imputeSuffix
		if _, dup := index[h]; dup || seen[h] {
			return nil, fmt.Errorf("mtl: task %q: counterfactual dr needs a head %q, which is already a task or an objective (rename a task): %w", c.Name, h, ErrConfig)
		}
		s.impute[i] = len(s.heads)
		s.heads = append(s.heads, h)
	}
	return s, nil
}

// initSpaces finds each task's mask column, adding the columns that are no
// task's label after the labels.
func (s *TaskSet) initSpaces() error {
	s.columns = append([]string(nil), s.labels...)
	for i, c := range s.tasks {
		s.mask[i] = -1
		if c.Mask == "" {
			continue
		}
		if j := slices.Index(s.labels, c.Mask); j >= 0 && s.tasks[j].Kind == KindRegression {
			return fmt.Errorf("mtl: task %q: mask %q is the label of regression task %q; a mask column holds 0 or 1: %w", c.Name, c.Mask, s.tasks[j].Name, ErrConfig)
		}
		j := slices.Index(s.columns, c.Mask)
		if j < 0 {
			j = len(s.columns)
			s.columns = append(s.columns, c.Mask)
		}
		s.mask[i] = j
	}
	return nil
}

func chainNames(tasks []TaskConfig, ch []int, last int) string {
	var b strings.Builder
	for _, t := range ch {
		b.WriteString(tasks[t].Name)
		b.WriteString(" -> ")
	}
	b.WriteString(tasks[last].Name)
	return b.String()
}

// Len is the number of tasks (heads).
func (s *TaskSet) Len() int { return len(s.tasks) }

// Task returns task i with defaults filled in.
func (s *TaskSet) Task(i int) TaskConfig { return s.tasks[i] }

// Configs returns a copy of the tasks with defaults filled in, for saving
// in a bundle.
func (s *TaskSet) Configs() []TaskConfig { return append([]TaskConfig(nil), s.tasks...) }

// Index returns the index of the task called name, or -1.
func (s *TaskSet) Index(name string) int {
	for i, t := range s.tasks {
		if t.Name == name {
			return i
		}
	}
	return -1
}

// Parent returns the index of task i's parent, or -1 when it has none.
func (s *TaskSet) Parent(i int) int { return s.parent[i] }

// Delayed returns the index of the task with DelayedFeedback, or -1. When
// there is one, a row whose label for it is 1 is a re-sent positive, which
// the other tasks skip.
func (s *TaskSet) Delayed() int { return s.delayed }

// Labels returns the label column of each task, in task order. The slice
// must not be modified.
func (s *TaskSet) Labels() []string { return s.labels }

// Columns returns the label columns a batch must carry for LossTo, in the
// order of its labels argument: each task's label, in task order (Labels),
// then the mask columns that are no task's label, in the order of the
// tasks naming them (features.Layout.Labels lists the same). The slice
// must not be modified.
func (s *TaskSet) Columns() []string { return s.columns }

// Heads names the model's outputs, in the order of the logits LossTo and
// PredictTo take: the tasks, then the extra heads (the imputation head
// "<task>_impute" of each CounterfactualDR task, in task order). The slice
// must not be modified.
func (s *TaskSet) Heads() []string { return s.heads }

// HeadParents returns, for each head of Heads, the index of the head
// whose task is its task's parent (AITM's information transfer runs from
// the parent's tower to the child's), or -1; extra heads have none.
func (s *TaskSet) HeadParents() []int {
	p := make([]int, len(s.heads))
	for h := range p {
		p[h] = -1
		if h < len(s.tasks) {
			p[h] = s.parent[h]
		}
	}
	return p
}

// Objectives returns the names of the scores PredictTo produces, in order.
// The slice must not be modified.
func (s *TaskSet) Objectives() []string { return s.objNames }

// ObjectiveSpecs describes each objective of Objectives (label column and
// population to evaluate against). The slice must not be modified.
func (s *TaskSet) ObjectiveSpecs() []Objective { return s.objectives }

// LossError reports a bad label or a non-finite loss in LossTo, naming the
// task and, where known, the row. It wraps ErrLabel or ErrNonFinite.
type LossError struct {
	Task  string  // task name
	Row   int     // row in the batch, or -1
	Value float64 // the offending label, weight or loss
	Err   error   // ErrLabel or ErrNonFinite
	Hint  string  // what to try
}

// Error implements error.
func (e *LossError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mtl: task %q", e.Task)
	if e.Row >= 0 {
		fmt.Fprintf(&b, " row %d", e.Row)
	}
	fmt.Fprintf(&b, ": %v (value %v)", e.Err, e.Value)
	if e.Hint != "" {
		b.WriteString(": ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Unwrap returns ErrLabel or ErrNonFinite.
func (e *LossError) Unwrap() error { return e.Err }

const nonFiniteHint = "lower the learning rate or warm it up, clip the gradient norm, or check the inputs for NaN"

// LossTo computes the mean loss of every task over a batch and writes the
// gradient of the weighted total loss Σ_t taskWeights[t]·losses[t] with
// respect to each head's logit into dLogits (overwritten, not
// accumulated).
//
// logits and dLogits are indexed [head][row], heads in the order of Heads
// (the tasks, then extra heads); labels is indexed [column][row], columns
// in the order of Columns (the tasks' labels, then extra mask columns).
// sampleWeights holds one weight >= 0 per row, nil meaning all 1; each
// task's loss is the weighted mean Σ_r w_r·l_r / Σ_r w_r over the rows of
// its sample space (every row, or those its Mask holds), so the gradients
// are already divided by the weight sum. taskWeights holds one weight per
// task (nil: all 1), as given by a Weighting. losses receives the
// unweighted per-task mean losses; a nil losses is allocated.
//
// Losses: binary softplus(z) − y·z (the logloss of sigmoid(z)); regression
// (z − y)² (mean squared error, gradient 2(z − y)); esmm
// −y·log P − (1−y)·log(1−P) with log P = Σ_chain log σ(z_i), computed in
// log space so that it stays finite for logits of any size, plus the
// optional masked term (times MaskedCVRWeight) and counterfactual risk
// (times CounterfactualWeight); binary, plus the optional calibrator
// (times CalibratorWeight). Each extra term is included in losses[t]. A
// batch whose weights sum to zero gives zero losses and gradients.
//
// With a DelayedFeedback task d, the rows whose label for d is 1 are
// re-sent positives: every other task's loss skips them (its mean is over
// the other rows), and with DelayedFNW d's terms are weighted by 1+p
// (label 1) or (1-p)(1+p) (label 0), p its prediction held constant.
//
// Labels of binary and esmm tasks must be 0 or 1, regression labels must
// be finite: otherwise a *LossError wrapping ErrLabel names the task
// and row. A NaN or infinite logit, or a non-finite loss, gives a
// *LossError wrapping ErrNonFinite that names the task, the row and head of
// the first bad logit, with a hint; dLogits are then unusable. In steady
// state LossTo allocates nothing.
func (s *TaskSet) LossTo(losses []float64, dLogits, logits, labels [][]float32, sampleWeights []float32, taskWeights []float64) ([]float64, error) {
	T, H, C := len(s.tasks), len(s.heads), len(s.columns)
	if losses == nil {
		losses = make([]float64, T)
	}
	if len(losses) != T || len(dLogits) != H || len(logits) != H || len(labels) != C {
		return losses, fmt.Errorf("mtl: LossTo: %d tasks, %d heads and %d label columns but %d losses, %d dLogits, %d logits, %d labels: %w", T, H, C, len(losses), len(dLogits), len(logits), len(labels), ErrShape)
	}
	if taskWeights != nil && len(taskWeights) != T {
		return losses, fmt.Errorf("mtl: LossTo: %d tasks but %d task weights: %w", T, len(taskWeights), ErrShape)
	}
	n := len(logits[0])
	for h := range H {
		if len(logits[h]) != n || len(dLogits[h]) != n {
			return losses, fmt.Errorf("mtl: LossTo: head %q: %d logits, %d dLogits, want %d rows: %w", s.heads[h], len(logits[h]), len(dLogits[h]), n, ErrShape)
		}
		clear(dLogits[h])
	}
	for c := range C {
		if len(labels[c]) != n {
			return losses, fmt.Errorf("mtl: LossTo: label column %q: %d labels, want %d rows: %w", s.columns[c], len(labels[c]), n, ErrShape)
		}
	}
	clear(losses)
	if sampleWeights != nil && len(sampleWeights) != n {
		return losses, fmt.Errorf("mtl: LossTo: %d sample weights, want %d rows: %w", len(sampleWeights), n, ErrShape)
	}
	var W float64
	if sampleWeights == nil {
		W = float64(n)
	} else {
		for r, w := range sampleWeights {
			if !(w >= 0) || math.IsInf(float64(w), 1) {
				return losses, &LossError{Task: "(sample weight)", Row: r, Value: float64(w), Err: ErrLabel, Hint: "sample weights must be finite and >= 0"}
			}
			W += float64(w)
		}
	}
	if W == 0 {
		return losses, nil
	}
	var resent []float32 // rows that are re-sent positives of the delayed task
	if s.delayed >= 0 {
		resent = labels[s.delayed]
	}
	for t := range T {
		tw := 1.0
		if taskWeights != nil {
			tw = taskWeights[t]
		}
		skip, Wt, fnw := resent, W, false
		if t == s.delayed {
			skip, fnw = nil, s.tasks[t].DelayedFeedback == DelayedFNW
		}
		var mask []float32
		if m := s.mask[t]; m >= 0 {
			mask = labels[m]
		}
		if skip != nil || mask != nil {
			if Wt = weightSum(sampleWeights, mask, skip, n); Wt == 0 {
				continue
			}
		}
		var err error
		switch s.tasks[t].Kind {
		case KindBinary:
			losses[t], err = binaryLoss(dLogits[t], logits[t], labels[t], sampleWeights, tw/Wt, mask, skip, fnw)
			if err == nil && s.tasks[t].CalibratorWeight > 0 {
				var c float64
				c, err = s.calibratorLoss(t, dLogits, logits, sampleWeights, tw/Wt, mask, skip)
				losses[t] += c
			}
			losses[t] /= Wt
		case KindRegression:
			losses[t], err = regressionLoss(dLogits[t], logits[t], labels[t], sampleWeights, tw/Wt, mask, skip)
			losses[t] /= Wt
		case KindESMM:
			losses[t], err = s.esmmLoss(t, dLogits, logits, labels, sampleWeights, tw, Wt, skip, fnw)
			if err == nil && s.tasks[t].Counterfactual != "" {
				var c float64
				c, err = s.counterfactualLoss(t, dLogits, logits, labels, sampleWeights, tw/Wt, skip)
				losses[t] += c / Wt
			}
		}
		if err == errNonFiniteLogit {
			return losses, s.nonFinite(t, logits, math.NaN())
		}
		if err != nil {
			return losses, s.annotate(err, t)
		}
		if math.IsNaN(losses[t]) || math.IsInf(losses[t], 0) {
			return losses, s.nonFinite(t, logits, losses[t])
		}
	}
	return losses, nil
}

// annotate fills the task name into a *LossError from a loss kernel.
func (s *TaskSet) annotate(err error, t int) error {
	if le, ok := err.(*LossError); ok {
		le.Task = s.tasks[t].Name
	}
	return err
}

// nonFinite builds the error for a non-finite loss of task t, pointing at
// the first non-finite logit of the task's chain when there is one.
func (s *TaskSet) nonFinite(t int, logits [][]float32, loss float64) error {
	e := &LossError{Task: s.tasks[t].Name, Row: -1, Value: loss, Err: ErrNonFinite, Hint: nonFiniteHint}
	heads := append(s.chain[t][:len(s.chain[t]):len(s.chain[t])], s.parent[t], s.impute[t])
	for _, c := range heads {
		if c < 0 {
			continue
		}
		for r, z := range logits[c] {
			if math.IsNaN(float64(z)) || math.IsInf(float64(z), 0) {
				e.Row, e.Value = r, float64(z)
				e.Hint = fmt.Sprintf("logit of head %q is %v; %s", s.heads[c], z, nonFiniteHint)
				return e
			}
		}
	}
	return e
}

// errNonFiniteLogit is returned by the loss kernels and turned into a
// *LossError by LossTo.
var errNonFiniteLogit = errors.New("mtl: non-finite logit")

// finite32 reports whether x is neither NaN nor infinite.
func finite32(x float32) bool { return math.Float32bits(x)&0x7f800000 != 0x7f800000 }

// softplus returns log(1 + exp(x)) without overflow.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// sigmoid returns 1 / (1 + exp(-x)) without overflow.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// maxLogP bounds log P away from 0 so that log(1 − P) stays finite
// (log(1 − P) >= about −690) when float64 rounds P to exactly 1.
const maxLogP = -1e-300

// log1mexp returns log(1 − exp(a)) for a < 0 (Mächler 2012).
func log1mexp(a float64) float64 {
	if a > -math.Ln2 {
		return math.Log(-math.Expm1(a))
	}
	return math.Log1p(-math.Exp(a))
}

// rowIn reports whether row r is in a loss: mask is nil or holds there,
// and skip is nil or does not.
func rowIn(mask, skip []float32, r int) bool {
	return (mask == nil || mask[r] >= 0.5) && (skip == nil || !(skip[r] >= 0.5))
}

// weightSum returns the sum of the weights (1 each when w is nil) of the
// rows in a loss (rowIn).
func weightSum(w, mask, skip []float32, n int) float64 {
	var sum float64
	for r := range n {
		if !rowIn(mask, skip, r) {
			continue
		}
		if w == nil {
			sum++
		} else {
			sum += float64(w[r])
		}
	}
	return sum
}

// fnwWeight is the fake-negative weight of a row with label y when the
// model predicts p (DelayedFNW).
func fnwWeight(p, y float64) float64 {
	if y == 1 {
		return 1 + p
	}
	return (1 - p) * (1 + p)
}

// binaryLoss returns Σ_r w_r·f_r·(softplus(z) − y·z) over the rows in the
// loss (rowIn) and adds scale·w_r·f_r·(σ(z) − y) to d, where f_r is 1, or
// the fake-negative weight of σ(z) when fnw.
func binaryLoss(d, z, y, w []float32, scale float64, mask, skip []float32, fnw bool) (float64, error) {
	var sum float64
	for r := range z {
		if !rowIn(mask, skip, r) {
			continue
		}
		yr := float64(y[r])
		if yr != 0 && yr != 1 {
			return 0, &LossError{Row: r, Value: yr, Err: ErrLabel, Hint: "binary labels must be 0 or 1"}
		}
		if !finite32(z[r]) {
			return 0, errNonFiniteLogit
		}
		zr := float64(z[r])
		wr := 1.0
		if w != nil {
			wr = float64(w[r])
		}
		e := math.Exp(-math.Abs(zr)) // shared by softplus and sigmoid
		sig := 1 / (1 + e)
		if zr < 0 {
			sig = e / (1 + e)
		}
		if fnw {
			wr *= fnwWeight(sig, yr)
		}
		sum += wr * (max(zr, 0) + math.Log1p(e) - yr*zr)
		d[r] += float32(scale * wr * (sig - yr))
	}
	return sum, nil
}

// regressionLoss returns Σ_r w_r·(z − y)² over the rows in the loss
// (rowIn) and adds scale·w_r·2(z − y) to d.
func regressionLoss(d, z, y, w []float32, scale float64, mask, skip []float32) (float64, error) {
	var sum float64
	for r := range z {
		if !rowIn(mask, skip, r) {
			continue
		}
		yr := float64(y[r])
		if math.IsNaN(yr) || math.IsInf(yr, 0) {
			return 0, &LossError{Row: r, Value: yr, Err: ErrLabel, Hint: "regression labels must be finite"}
		}
		if !finite32(z[r]) {
			return 0, errNonFiniteLogit
		}
		e := float64(z[r]) - yr
		wr := 1.0
		if w != nil {
			wr = float64(w[r])
		}
		sum += wr * e * e
		d[r] += float32(scale * wr * 2 * e)
	}
	return sum, nil
}

// esmmLoss computes the mean ESMM loss of task t over the rows skip does not
// hold (already divided by the weight sums; W is the rows' weight sum) and
// accumulates its gradients into the heads of t's chain. With fnw the
// terms are fake-negative weighted.
func (s *TaskSet) esmmLoss(t int, dLogits, logits, labels [][]float32, w []float32, tw, W float64, skip []float32, fnw bool) (float64, error) {
	chain := s.chain[t]
	y := labels[t]
	scale := tw / W
	var sum float64
	for r := range y {
		if skip != nil && skip[r] >= 0.5 {
			continue
		}
		yr := float64(y[r])
		if yr != 0 && yr != 1 {
			return 0, &LossError{Row: r, Value: yr, Err: ErrLabel, Hint: "esmm labels (the joint event, e.g. click-and-convert) must be 0 or 1"}
		}
		var logP float64
		for _, c := range chain {
			if !finite32(logits[c][r]) {
				return 0, errNonFiniteLogit
			}
			logP -= softplus(-float64(logits[c][r]))
		}
		logP = min(logP, maxLogP)
		log1mP := log1mexp(logP)
		wr := 1.0
		if w != nil {
			wr = float64(w[r])
		}
		if fnw {
			wr *= fnwWeight(math.Exp(logP), yr)
		}
		sum += wr * (-yr*logP - (1-yr)*log1mP)
		// dL/dz_i = σ(−z_i)·(−y + (1−y)·P/(1−P)). P/(1−P) = exp(log P −
		// log(1−P)) <= exp(690) because of the clamp, so the product with
		// σ(−z_i) is finite (it tends to 0·large = 0, never Inf·0).
		k := scale * wr * (-yr + (1-yr)*math.Exp(logP-log1mP))
		for _, c := range chain {
			dLogits[c][r] += float32(k * sigmoid(-float64(logits[c][r])))
		}
	}
	loss := sum / W
	mw := s.tasks[t].MaskedCVRWeight
	if mw == 0 {
		return loss, nil
	}
	mask := labels[s.parent[t]]
	Wm := weightSum(w, mask, skip, len(mask))
	if Wm == 0 {
		return loss, nil
	}
	msum, err := binaryLoss(dLogits[t], logits[t], y, w, tw*mw/Wm, mask, skip, fnw)
	if err != nil {
		return 0, err
	}
	return loss + mw*msum/Wm, nil
}

// PredictTo maps logits ([head][row], heads in the order of Heads) to the
// scores of Objectives ([objective][row]): sigmoid for binary and esmm
// heads, identity for regression heads, and the chain product Π σ(z_i) for
// each esmm product. Extra heads give no score.
// A nil scores is allocated; otherwise each scores[o] must have one entry
// per row. It allocates nothing when scores is given.
func (s *TaskSet) PredictTo(scores, logits [][]float32) ([][]float32, error) {
	if len(logits) != len(s.heads) {
		return scores, fmt.Errorf("mtl: PredictTo: %d logit heads, want %d: %w", len(logits), len(s.heads), ErrShape)
	}
	n := len(logits[0])
	for t := range logits {
		if len(logits[t]) != n {
			return scores, fmt.Errorf("mtl: PredictTo: head %q has %d rows, head %q %d: %w", s.heads[t], len(logits[t]), s.heads[0], n, ErrShape)
		}
	}
	if scores == nil {
		scores = make([][]float32, len(s.objectives))
		for o := range scores {
			scores[o] = make([]float32, n)
		}
	}
	if len(scores) != len(s.objectives) {
		return scores, fmt.Errorf("mtl: PredictTo: %d score slices, want %d objectives: %w", len(scores), len(s.objectives), ErrShape)
	}
	for o, obj := range s.objectives {
		dst := scores[o]
		if len(dst) != n {
			return scores, fmt.Errorf("mtl: PredictTo: objective %q has %d rows, want %d: %w", obj.Name, len(dst), n, ErrShape)
		}
		z := logits[obj.Task]
		switch {
		case obj.Kind == KindRegression:
			copy(dst, z)
		case obj.Product:
			chain := s.chain[obj.Task]
			for r := range dst {
				var logP float64
				for _, c := range chain {
					logP -= softplus(-float64(logits[c][r]))
				}
				dst[r] = float32(math.Exp(logP))
			}
		default:
			for r, zr := range z {
				dst[r] = float32(sigmoid(float64(zr)))
			}
		}
	}
	return scores, nil
}
