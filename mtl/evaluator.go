package mtl

import (
	"fmt"
	"strings"
)

// LabelIndex maps each task's label column to its position in columns
// (the label order of a batch, features.Layout.Labels), so that a trainer
// can pass labels[t] = batch.Labels[idx[t]] to LossTo. A task whose label,
// or whose parent's label, is missing gives an ErrConfig error naming the
// task, the column and the columns available.
func (s *TaskSet) LabelIndex(columns []string) ([]int, error) {
	idx := make([]int, len(s.tasks))
	for t, c := range s.tasks {
		i, err := columnIndex(columns, c.Label)
		if err != nil {
			return nil, fmt.Errorf("mtl: task %q: %w", c.Name, err)
		}
		idx[t] = i
	}
	return idx, nil
}

func columnIndex(columns []string, name string) (int, error) {
	for i, c := range columns {
		if c == name {
			return i, nil
		}
	}
	return -1, fmt.Errorf("label column %q not found (have %s): %w", name, strings.Join(columns, ", "), ErrConfig)
}

// Evaluator accumulates the metrics of every objective of a TaskSet over
// batches: the scores of PredictTo against the batch's label columns, a
// conditional objective (CVR) only on the rows where its mask column (the
// click label) is 1. It is not safe for concurrent use.
type Evaluator struct {
	tasks *TaskSet
	accs  []*Accumulator
	label []int // per objective: index into the batch's label columns
	mask  []int // per objective: mask column, or -1
}

// NewEvaluator returns an Evaluator for tasks, whose batches carry the
// label columns `columns` (in order). window > 0 keeps only the last
// window rows of each objective (progressive evaluation); 0 keeps all
// rows until Reset.
func NewEvaluator(tasks *TaskSet, columns []string, window int) (*Evaluator, error) {
	e := &Evaluator{tasks: tasks}
	for _, o := range tasks.ObjectiveSpecs() {
		li, err := columnIndex(columns, o.Label)
		if err != nil {
			return nil, fmt.Errorf("mtl: objective %q: %w", o.Name, err)
		}
		mi := -1
		if o.Mask != "" {
			if mi, err = columnIndex(columns, o.Mask); err != nil {
				return nil, fmt.Errorf("mtl: objective %q: mask: %w", o.Name, err)
			}
		}
		acc, err := NewAccumulator(AccumulatorConfig{Objective: o.Name, Kind: o.Kind, Window: window})
		if err != nil {
			return nil, err
		}
		e.accs = append(e.accs, acc)
		e.label = append(e.label, li)
		e.mask = append(e.mask, mi)
	}
	return e, nil
}

// AddBatch records one batch: scores as produced by PredictTo
// ([objective][row]), labels the batch's label columns ([column][row]),
// groups and weights per row or nil.
func (e *Evaluator) AddBatch(scores, labels [][]float32, groups []uint64, weights []float32) error {
	if len(scores) != len(e.accs) {
		return fmt.Errorf("mtl: evaluator: %d score slices, want %d objectives: %w", len(scores), len(e.accs), ErrShape)
	}
	for o, acc := range e.accs {
		if e.label[o] >= len(labels) || e.mask[o] >= len(labels) {
			return fmt.Errorf("mtl: evaluator: %d label columns, objective %q needs column %d: %w", len(labels), acc.cfg.Objective, max(e.label[o], e.mask[o]), ErrShape)
		}
		var mask []float32
		if e.mask[o] >= 0 {
			mask = labels[e.mask[o]]
		}
		if err := acc.AddBatch(scores[o], labels[e.label[o]], mask, groups, weights); err != nil {
			return err
		}
	}
	return nil
}

// Compute returns the metrics of every objective, in Objectives order.
func (e *Evaluator) Compute() ([]Metrics, error) {
	out := make([]Metrics, len(e.accs))
	for o, acc := range e.accs {
		m, err := acc.Compute()
		if err != nil {
			return nil, err
		}
		out[o] = m
	}
	return out, nil
}

// Reset forgets every row.
func (e *Evaluator) Reset() {
	for _, a := range e.accs {
		a.Reset()
	}
}
