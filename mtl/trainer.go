package mtl

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
	"github.com/onestone/onestone/internal/rowindex"
)

// Embedding optimizers accepted in EmbeddingConfig.Optimizer.
const (
	EmbeddingAdagrad = "adagrad"
	EmbeddingAdam    = "adam"
)

// TrainConfig is the train: section of a spec file. A zero field takes its
// default.
type TrainConfig struct {
	// BatchSize is the number of examples per step. Default: 1024.
	BatchSize int `yaml:"batch_size" json:"batch_size"`
	// Epochs over batch data. Default: 1.
	Epochs int `yaml:"epochs" json:"epochs"`
	// Dense configures Adam for every dense parameter. Default: lr 1e-3.
	Dense AdamConfig `yaml:"dense" json:"dense"`
	// Embedding configures the sparse optimizer of the embedding tables.
	Embedding EmbeddingConfig `yaml:"embedding" json:"embedding"`
	// Schedule is the learning-rate schedule (warm-up, decay), applied to
	// dense and sparse learning rates alike. Default: constant.
	Schedule ScheduleConfig `yaml:"schedule" json:"schedule"`
	// ClipNorm clips the global norm of the dense gradient. Default: 0 (off).
	ClipNorm float64 `yaml:"clip_norm" json:"clip_norm"`
	// Weighting names the loss weighting, a key of KnownWeightings (fixed,
	// uncertainty, gradnorm, pcgrad, metabalance, ...). Default: "fixed".
	Weighting string `yaml:"weighting" json:"weighting"`
	// GradNorm configures weighting: gradnorm (ignored otherwise).
	GradNorm GradNormTrainConfig `yaml:"gradnorm" json:"gradnorm"`
	// MetaBalance configures weighting: metabalance (ignored otherwise).
	MetaBalance MetaBalanceTrainConfig `yaml:"metabalance" json:"metabalance,omitzero"`
	// SoftPenalty is λ of soft parameter sharing, λ Σ_{t≠t'} ‖θ_t − θ_t'‖²
	// over the model's matching layers, for arch soft only (setting it with
	// another architecture is an error). Default: 1e-3 for arch soft.
	SoftPenalty float64 `yaml:"soft_penalty" json:"soft_penalty,omitempty"`
	// TaskWeights are the fixed weights by task name. Default: 1 each.
	TaskWeights map[string]float64 `yaml:"task_weights" json:"task_weights,omitempty"`
	// Workers is the number of goroutines a step is split over (by rows).
	// Default: GOMAXPROCS.
	Workers int `yaml:"workers" json:"workers"`
	// EvalEvery evaluates on validation data every so many steps.
	// Default: 0 (at the end of each epoch only).
	EvalEvery int `yaml:"eval_every" json:"eval_every"`
	// Precision of the model's products: "fp32", or "bf16" (bf16
	// operands with float32 sums; the weights, gradients and optimizer
	// state stay float32). bf16 runs where the CPU has AVX512_BF16; on
	// other CPUs the trainer falls back to fp32 (Trainer.Precision says
	// which). Default: "fp32".
	Precision string `yaml:"precision" json:"precision,omitempty"`
}

// EmbeddingConfig configures the sparse optimizer of the embedding tables.
type EmbeddingConfig struct {
	// Optimizer is "adagrad" (row-wise: one float per row of state) or
	// "adam" (lazy Adam: two floats per parameter plus a step count per
	// row). Default: "adagrad".
	Optimizer string `yaml:"optimizer" json:"optimizer"`
	// LR is the learning rate. Default: 0.05 for adagrad, 1e-3 for adam.
	LR float64 `yaml:"lr" json:"lr"`
	// L2 regularises the rows a batch touches. Default: 0.
	L2 float64 `yaml:"l2" json:"l2"`
	// PerElement switches adagrad to one accumulator per parameter.
	PerElement bool `yaml:"per_element" json:"per_element"`
}

// WithDefaults returns c with every zero field replaced by its default.
func (c TrainConfig) WithDefaults() TrainConfig {
	if c.BatchSize == 0 {
		c.BatchSize = 1024
	}
	if c.Epochs == 0 {
		c.Epochs = 1
	}
	c.Dense = c.Dense.withDefaults()
	if c.Embedding.Optimizer == "" {
		c.Embedding.Optimizer = EmbeddingAdagrad
	}
	if c.Embedding.LR == 0 {
		c.Embedding.LR = 0.05
		if c.Embedding.Optimizer == EmbeddingAdam {
			c.Embedding.LR = 1e-3
		}
	}
	if c.Weighting == "" {
		c.Weighting = WeightingFixed
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Precision == "" {
		c.Precision = kernels.FP32.String()
	}
	return c
}

// Validate checks the configuration (after defaults).
func (c TrainConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.BatchSize < 1:
		return fmt.Errorf("mtl: train: batch_size %d < 1: %w", c.BatchSize, ErrConfig)
	case c.Epochs < 1:
		return fmt.Errorf("mtl: train: epochs %d < 1: %w", c.Epochs, ErrConfig)
	case c.Workers < 1:
		return fmt.Errorf("mtl: train: workers %d < 1: %w", c.Workers, ErrConfig)
	case c.ClipNorm < 0:
		return fmt.Errorf("mtl: train: clip_norm %v < 0: %w", c.ClipNorm, ErrConfig)
	case c.EvalEvery < 0:
		return fmt.Errorf("mtl: train: eval_every %d < 0: %w", c.EvalEvery, ErrConfig)
	case !(c.SoftPenalty >= 0) || math.IsInf(c.SoftPenalty, 0):
		return fmt.Errorf("mtl: train: soft_penalty %v: want finite and >= 0: %w", c.SoftPenalty, ErrConfig)
	}
	if _, err := kernels.ParsePrecision(c.Precision); err != nil {
		return fmt.Errorf("mtl: train: precision %q: want fp32 or bf16: %w", c.Precision, ErrConfig)
	}
	if err := c.Dense.Validate(); err != nil {
		return err
	}
	if err := c.Schedule.Validate(); err != nil {
		return err
	}
	switch c.Embedding.Optimizer {
	case EmbeddingAdagrad, EmbeddingAdam:
	default:
		return fmt.Errorf("mtl: train: embedding optimizer %q: want adagrad or adam: %w", c.Embedding.Optimizer, ErrConfig)
	}
	w, ok := KnownWeightings[c.Weighting]
	if !ok {
		return fmt.Errorf("mtl: train: weighting %q: want %s: %w", c.Weighting, weightingNames(), ErrConfig)
	}
	if w.Validate != nil {
		return w.Validate(c)
	}
	return nil
}

// ParseTrainConfig reads the train: section of a spec file's YAML (other
// top-level sections are ignored; unknown keys inside train: are errors).
func ParseTrainConfig(data []byte) (TrainConfig, error) {
	var doc struct {
		Train yaml.Node `yaml:"train"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return TrainConfig{}, fmt.Errorf("mtl: spec: %w", err)
	}
	var c TrainConfig
	if doc.Train.Kind != 0 {
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		if err := enc.Encode(&doc.Train); err != nil {
			return c, fmt.Errorf("mtl: train: %w", err)
		}
		dec := yaml.NewDecoder(&buf)
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return c, fmt.Errorf("mtl: train section: %w (line %d)", err, doc.Train.Line)
		}
	}
	return c, c.Validate()
}

// sparseOptimizer is what SparseAdagrad and SparseAdam share.
type sparseOptimizer interface {
	Step(table int, rows []int32, grad []float32, scale float64) error
	State() State
	SetState(State) error
	StateBytes() int64
	ResetRow(table int, r int32)
	// rowStateLines is the size of the state of one row of a table, in
	// the whole 64-byte cache lines an update of the row reads.
	rowStateLines(table int) int64
}

// StepTimes splits one step's wall time.
type StepTimes struct {
	Forward, Loss, Backward, Optimizer time.Duration
}

// Trainer runs optimisation steps of a model on its tasks. A step splits
// the batch's rows over Workers goroutines, each with its own workspace and
// gradients; the loss is computed once on the whole batch, and the workers'
// gradients are summed in a fixed order, so results are deterministic for a
// seed and a worker count. A Trainer is not safe for concurrent use.
type Trainer struct {
	cfg    TrainConfig
	model  Network
	tasks  *TaskSet
	weight Balancer
	bs     BalanceStep // what weight's hooks see of the current step
	adam   *Adam
	sparse sparseOptimizer
	sched  Schedule

	workers []*worker
	active  []*worker   // the workers of the current step
	scale   float64     // the learning-rate multiplier of the current step
	logits  [][]float32 // [task][row], the whole batch
	dLogits [][]float32
	losses  []float64
	step    int64

	// the model's parameters (DenseParams), their total size
	names       []string
	values      [][]float32
	denseValues int

	// the embedding tables (EmbeddingTables' values) and the exact
	// tables that admit ids to them (SetIDTables)
	tables [][]float32
	ids    *features.IDTables

	// merged sparse gradients, per table, and each table's rows' index
	// in them
	mergeIndex []rowindex.Index
	mergeRows  [][]int32
	mergeGrad  [][]float32
	dims       []int

	// reduced reports whether the step's dense gradients were summed into
	// the first worker's (reduceDense); adamStep is the step's Adam
	// constants.
	reduced  bool
	adamStep kernels.AdamConsts
	prec     kernels.Precision // of the replicas' products

	// curDL is the logit gradient set the backward phase reads: dLogits,
	// or a single task's unweighted gradient (BalanceStep.TaskGradTo).
	curDL [][]float32
	mt    multiTask

	// touched records the embedding rows updated (TrackTouched); nil
	// when not tracking.
	touched *TouchedRows

	// Times are the durations of the last step's phases.
	Times StepTimes
}

type worker struct {
	r     Replica
	dense [][]float32 // r.DenseGrads()
	sub   features.Batch
	dl    [][]float32 // the worker's rows of Trainer.dLogits
	lo    int
	hi    int
	index int
	err   error
	// optBytes is the memory traffic of the worker's share of the
	// last optimizer pass (Trainer.OptimizerBytes).
	optBytes int64
	run      chan int // phases to run (nil until its goroutine starts)
	done     chan struct{}
}

// NewTrainer builds a trainer for model on tasks. The model's heads must be
// the tasks, in order. R is inferred from the model:
// mtl.NewTrainer(m, tasks, cfg) with m an *mmoe.Model.
func NewTrainer[R Replica](model Model[R], tasks *TaskSet, cfg TrainConfig) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	heads, want := model.Heads(), tasks.Heads()
	if len(heads) != len(want) {
		return nil, fmt.Errorf("mtl: trainer: model has %d heads, the tasks need %d (%v): %w", len(heads), len(want), want, ErrConfig)
	}
	for i, h := range heads {
		if h != want[i] {
			return nil, fmt.Errorf("mtl: trainer: head %d is %q, the tasks' head %d is %q: %w", i, h, i, want[i], ErrConfig)
		}
	}
	t := &Trainer{cfg: cfg, model: model, tasks: tasks}
	var err error
	if t.sched, err = NewSchedule(cfg.Schedule); err != nil {
		return nil, err
	}
	if t.weight, err = KnownWeightings[cfg.Weighting].New(WeightingEnv{Config: cfg, Tasks: tasks, Model: model}); err != nil {
		return nil, err
	}
	t.bs.t = t
	t.names, t.values = model.DenseParams()
	tableNames, tableValues, dims := model.EmbeddingTables()
	if len(t.values) != len(t.names) || len(tableValues) != len(tableNames) || len(dims) != len(tableNames) {
		return nil, fmt.Errorf("mtl: trainer: the model lists %d dense names for %d tensors and %d table names for %d tables and %d widths: %w", len(t.names), len(t.values), len(tableNames), len(tableValues), len(dims), ErrShape)
	}
	for i, d := range dims {
		if d < 1 || len(tableValues[i])%d != 0 {
			return nil, fmt.Errorf("mtl: trainer: embedding table %q: %d values in rows of %d: %w", tableNames[i], len(tableValues[i]), d, ErrShape)
		}
	}
	params := make([]Param, len(t.names))
	for i, name := range t.names {
		params[i] = Param{Name: name, Value: t.values[i]}
		t.denseValues += len(t.values[i])
	}
	if t.adam, err = NewAdam(cfg.Dense, params); err != nil {
		return nil, err
	}
	tables := make([]Table, len(tableNames))
	t.dims, t.tables = dims, tableValues
	for i, name := range tableNames {
		tables[i] = Table{Name: name, Value: tableValues[i], Dim: dims[i]}
	}
	ec := cfg.Embedding
	if ec.Optimizer == EmbeddingAdam {
		t.sparse, err = NewSparseAdam(SparseAdamConfig{LR: ec.LR, L2: ec.L2}, tables)
	} else {
		t.sparse, err = NewSparseAdagrad(SparseAdagradConfig{LR: ec.LR, L2: ec.L2, PerElement: ec.PerElement}, tables)
	}
	if err != nil {
		return nil, err
	}
	requested, _ := kernels.ParsePrecision(cfg.Precision)
	t.prec = requested.Effective()
	nw := min(cfg.Workers, cfg.BatchSize)
	per := (cfg.BatchSize + nw - 1) / nw
	for range nw {
		r := model.NewReplica(per)
		if t.prec != kernels.FP32 {
			pr, ok := any(r).(PrecisionReplica)
			if !ok {
				return nil, fmt.Errorf("mtl: trainer: precision %v: the %s model's replicas compute in fp32 only: %w", t.prec, model.Arch(), ErrConfig)
			}
			pr.SetPrecision(t.prec)
		}
		dense := r.DenseGrads()
		if len(dense) != len(t.values) {
			return nil, fmt.Errorf("mtl: trainer: a replica has %d dense gradients for %d parameters: %w", len(dense), len(t.values), ErrShape)
		}
		for i, d := range dense {
			if len(d) != len(t.values[i]) {
				return nil, fmt.Errorf("mtl: trainer: gradient of %q has %d values, the parameter %d: %w", t.names[i], len(d), len(t.values[i]), ErrShape)
			}
		}
		t.workers = append(t.workers, &worker{r: r, dense: dense})
	}
	H := len(heads)
	t.logits = make([][]float32, H)
	t.dLogits = make([][]float32, H)
	for i := range H {
		t.logits[i] = make([]float32, cfg.BatchSize)
		t.dLogits[i] = make([]float32, cfg.BatchSize)
	}
	t.losses = make([]float64, tasks.Len())
	t.curDL = t.dLogits
	if err := t.initMultiTask(); err != nil {
		return nil, err
	}
	if nw > 1 {
		t.mergeIndex = make([]rowindex.Index, len(tables))
		t.mergeRows = make([][]int32, len(tables))
		t.mergeGrad = make([][]float32, len(tables))
	}
	return t, nil
}

// Config returns the effective configuration.
func (t *Trainer) Config() TrainConfig { return t.cfg }

// Steps is the number of steps taken.
func (t *Trainer) Steps() int64 { return t.step }

// Precision is the precision the model's products run in: the
// configuration's, except bf16 on a CPU without AVX512_BF16, which falls
// back to fp32 (kernels.Precision.Effective). A bundle records it.
func (t *Trainer) Precision() kernels.Precision { return t.prec }

// Weights are the current task weights.
func (t *Trainer) Weights() []float64 { return t.weight.Weights() }

// TrackTouched makes the trainer record, from now on, the embedding rows
// each step updates, and returns the record (Touched). Each table is
// marked by the worker that updates it, in the pass that updates it: the
// steps allocate nothing more. Calling it again returns the same record.
func (t *Trainer) TrackTouched() *TouchedRows {
	if t.touched == nil {
		rows := make([]int, len(t.dims))
		_, values, _ := t.model.EmbeddingTables()
		for i, v := range values {
			rows[i] = len(v) / t.dims[i]
		}
		t.touched = newTouchedRows(rows)
	}
	return t.touched
}

// Touched is the record of TrackTouched, or nil when rows are not
// tracked.
func (t *Trainer) Touched() *TouchedRows { return t.touched }

// OptimizerStateBytes is the size of the optimizers' state.
func (t *Trainer) OptimizerStateBytes() int64 {
	return t.sparse.StateBytes() + 8*int64(t.denseValues)
}

// Step trains on one batch (at most BatchSize rows) and returns the
// unweighted per-task mean losses (the slice is reused by the next Step).
// With exact tables (SetIDTables) it first admits the batch's ids, which
// rewrites the ids of b's exact fields. A non-finite loss stops with an
// error naming the step and the task; the model is then left as it was
// before the step's update (the exact tables keep that step's admissions).
func (t *Trainer) Step(b *features.Batch) ([]float64, error) {
	n := b.Rows
	if n == 0 {
		return t.losses, nil
	}
	if n > t.cfg.BatchSize {
		return nil, fmt.Errorf("mtl: trainer: batch of %d rows exceeds batch_size %d: %w", n, t.cfg.BatchSize, ErrShape)
	}
	if len(b.Labels) != len(t.tasks.Columns()) {
		return nil, fmt.Errorf("mtl: trainer: batch has %d label columns, want %d (%v): %w", len(b.Labels), len(t.tasks.Columns()), t.tasks.Columns(), ErrShape)
	}
	t0 := time.Now()
	t.reduced = false
	if err := t.admit(b); err != nil {
		return nil, fmt.Errorf("mtl: step %d: %w", t.step+1, err)
	}
	ws := t.split(b)
	// Forward, per worker.
	t.parallel(ws, phaseForward)
	if err := t.firstErr(ws); err != nil {
		return nil, fmt.Errorf("mtl: step %d: forward: %w", t.step+1, err)
	}
	t1 := time.Now()
	logits, dl := t.logits, t.dLogits
	for h := range logits {
		logits[h] = logits[h][:n]
		dl[h] = dl[h][:n]
	}
	_, err := t.tasks.LossTo(t.losses, dl, logits, b.Labels, b.Weights, t.weight.Weights())
	for h := range logits {
		logits[h] = logits[h][:cap(logits[h])]
		dl[h] = dl[h][:cap(dl[h])]
	}
	if err != nil {
		return nil, fmt.Errorf("mtl: step %d: %w", t.step+1, err)
	}
	t.bs.b, t.bs.ws, t.bs.phase = b, ws, inBeforeBackward
	err = t.weight.BeforeBackward(&t.bs)
	t.bs.phase = outsideHooks
	if err != nil {
		return nil, fmt.Errorf("mtl: step %d: %w", t.step+1, err)
	}
	t2 := time.Now()
	t.curDL = t.dLogits
	t.parallel(ws, phaseBackward)
	if err := t.firstErr(ws); err != nil {
		return nil, fmt.Errorf("mtl: step %d: backward: %w", t.step+1, err)
	}
	t3 := time.Now()
	if err := t.update(ws); err != nil {
		return nil, fmt.Errorf("mtl: step %d: %w", t.step+1, err)
	}
	t.bs.phase = inAfterUpdate
	err = t.weight.AfterUpdate(&t.bs)
	t.bs.phase = outsideHooks
	if err != nil {
		return nil, fmt.Errorf("mtl: step %d: %w", t.step+1, err)
	}
	t.step++
	t4 := time.Now()
	t.Times = StepTimes{Forward: t1.Sub(t0), Loss: t2.Sub(t1), Backward: t3.Sub(t2), Optimizer: t4.Sub(t3)}
	return t.losses, nil
}

// workerDLogits returns the worker's row range of dLogits.
func (t *Trainer) workerDLogits(w *worker) [][]float32 {
	for h := range t.curDL {
		w.dl[h] = t.curDL[h][w.lo:w.hi]
	}
	return w.dl
}

// split assigns contiguous row ranges of b to workers (small batches use
// fewer) and makes each worker's view of its rows.
func (t *Trainer) split(b *features.Batch) []*worker {
	n := b.Rows
	nw := len(t.workers)
	if n < 2*nw {
		nw = 1
	}
	per := (n + nw - 1) / nw
	ws := t.workers[:nw]
	t.active = ws
	for i, w := range ws {
		w.index = i
		w.lo = min(i*per, n)
		w.hi = min(w.lo+per, n)
		if w.dl == nil {
			w.dl = make([][]float32, len(t.logits))
		}
		b.SliceTo(&w.sub, w.lo, w.hi)
	}
	return ws
}

// Phases a worker runs.
const (
	phaseForward = iota
	phaseBackward
	phaseReduce
	phaseOptimize
)

// parallel runs phase on every worker in ws: the first on the calling
// goroutine, the others on their long-lived goroutines (started on first
// use, stopped by Close), so a step allocates nothing.
func (t *Trainer) parallel(ws []*worker, phase int) {
	for _, w := range ws[1:] {
		if w.run == nil {
			w.run, w.done = make(chan int), make(chan struct{})
			go func() {
				for p := range w.run {
					w.err = t.runPhase(w, p)
					w.done <- struct{}{}
				}
			}()
		}
		w.run <- phase
	}
	ws[0].err = t.runPhase(ws[0], phase)
	for _, w := range ws[1:] {
		<-w.done
	}
}

func (t *Trainer) runPhase(w *worker, phase int) error {
	switch phase {
	case phaseForward:
		logits, err := w.r.Forward(&w.sub)
		if err != nil {
			return err
		}
		for h := range t.logits {
			copy(t.logits[h][w.lo:w.hi], logits[h][:w.hi-w.lo])
		}
		return nil
	case phaseBackward:
		return w.r.Backward(&w.sub, t.workerDLogits(w))
	case phaseReduce:
		// Dense gradients summed in worker order into the first
		// worker's, each worker over its share of the values.
		d0 := t.active[0].dense
		lo, hi := t.share(w.index, t.denseValues)
		forRange(d0, lo, hi, func(i, s, e int) {
			for _, o := range t.active[1:] {
				addTo(d0[i][s:e], o.dense[i][s:e])
			}
		})
		return nil
	case phaseOptimize:
		return t.optimize(w.index, len(t.active))
	}
	return nil
}

// share is worker k's range [lo, hi) of n values cut into len(t.active)
// parts, its ends multiples of 16 (a 64-byte cache line of float32, so
// that workers do not write the same line).
func (t *Trainer) share(k, n int) (lo, hi int) {
	parts := len(t.active)
	cut := func(j int) int {
		if j == parts {
			return n
		}
		return min(n, n*j/parts&^15)
	}
	return cut(k), cut(k + 1)
}

// forRange calls f(i, s, e) for each tensor i of xs that overlaps the
// range [lo, hi) of their concatenation, with [s, e) the overlap in
// tensor i's indices.
func forRange(xs [][]float32, lo, hi int, f func(i, s, e int)) {
	off := 0
	for i, x := range xs {
		s, e := max(lo-off, 0), min(hi-off, len(x))
		off += len(x)
		if s < e {
			f(i, s, e)
		}
		if off >= hi {
			return
		}
	}
}

// optimize is worker k of n's share of the optimizer step: its range of
// the dense parameters' values, and the embedding tables f with f ≡ k
// (mod n). Both updates are elementwise or row by row, so the result does
// not depend on n. When the dense gradients were not reduced yet (no hook
// asked for them), each worker sums the workers' gradients of its range in
// the pass that updates it.
func (t *Trainer) optimize(k, n int) error {
	w0 := t.active[0]
	lo, hi := t.share(k, t.adam.size)
	// Adam reads a value, its two moments and its gradient, and writes
	// the value and the moments: 7 float32, and one more for the second
	// worker's gradient when the pass sums them.
	traffic := 4 * int64(hi-lo) * 7
	if t.mt.frozen {
		t.adam.update(t.adamStep, lo, hi, t.mt.trainGrads, nil)
		t.active[k].optBytes = traffic
		return nil // embeddings are shared: frozen
	}
	switch {
	case t.reduced || n == 1:
		t.adam.update(t.adamStep, lo, hi, w0.dense, nil)
	case n == 2:
		t.adam.update(t.adamStep, lo, hi, w0.dense, t.active[1].dense)
		traffic += 4 * int64(hi-lo)
	default:
		d0 := w0.dense
		forRange(d0, lo, hi, func(i, s, e int) {
			for _, o := range t.active[1:] {
				addTo(d0[i][s:e], o.dense[i][s:e])
			}
		})
		traffic += 3 * 4 * int64(hi-lo) * int64(n-1)
		t.adam.update(t.adamStep, lo, hi, d0, nil)
	}
	for f := k; f < len(t.dims); f += n {
		rows, grad := w0.r.SparseGrad(f)
		row := lines(4 * t.dims[f])
		if len(t.active) > 1 {
			in := 0
			for _, w := range t.active {
				r, _ := w.r.SparseGrad(f)
				in += len(r)
			}
			rows, grad = t.mergeSparse(f, t.active)
			// Each worker's row read; a row's first copy written, each
			// further one added to it (read and written).
			traffic += int64(in+len(rows)+2*(in-len(rows))) * row
		}
		if t.touched != nil {
			t.touched.mark(f, rows)
		}
		if err := t.sparse.Step(f, rows, grad, t.scale); err != nil {
			return err
		}
		// Each row's values and state read and written, its gradient
		// read; rows are scattered, so each access costs whole lines.
		traffic += int64(len(rows)) * (3*row + 2*t.sparse.rowStateLines(f))
	}
	t.active[k].optBytes = traffic
	return nil
}

// lines is n bytes rounded up to whole 64-byte cache lines.
func lines(n int) int64 { return int64((n + 63) &^ 63) }

// OptimizerBytes is the memory traffic of the last step's optimizer
// pass, counted from the arrays it reads and writes: every dense value's
// Adam update (the value, its moments and its gradients, as float32),
// the merge of the workers' embedding gradients, and each touched
// embedding row's update, in whole 64-byte cache lines since the rows
// are scattered. Over the pass's time it is the bandwidth the optimizer
// reached, to compare with the machine's copy bandwidth.
func (t *Trainer) OptimizerBytes() int64 {
	var n int64
	for _, w := range t.active {
		n += w.optBytes
	}
	return n
}

// Close stops the trainer's worker goroutines. The Trainer must not be
// used afterwards.
func (t *Trainer) Close() {
	for _, w := range t.workers {
		if w.run != nil {
			close(w.run)
			w.run = nil
		}
	}
}

func (t *Trainer) firstErr(ws []*worker) error {
	var errs []error
	for _, w := range ws {
		if w.err != nil {
			errs = append(errs, w.err)
		}
	}
	return errors.Join(errs...)
}

// reduceDense sums the workers' dense gradients into the first worker's,
// once per step: for what reads the batch's gradient before the update
// (a loss weighting's BeforeUpdate, soft sharing's penalty, clipping,
// freezing). Otherwise the optimizer sums them in its own pass.
func (t *Trainer) reduceDense() {
	if t.reduced {
		return
	}
	if len(t.active) > 1 {
		t.parallel(t.active, phaseReduce)
	}
	t.reduced = true
}

// update applies the step's hooks and the dense and sparse optimizers.
func (t *Trainer) update(ws []*worker) error {
	scale := t.sched.Scale(t.step)
	if t.mt.softParams != nil || t.mt.frozen || t.cfg.ClipNorm > 0 {
		t.reduceDense()
	}
	if err := t.addSoftPenalty(); err != nil {
		return err
	}
	t.bs.phase = inBeforeUpdate
	err := t.weight.BeforeUpdate(&t.bs)
	t.bs.phase = outsideHooks
	if err != nil {
		return err
	}
	dense := ws[0].dense
	if t.mt.frozen {
		dense = t.mt.trainGrads
	}
	if t.cfg.ClipNorm > 0 {
		ClipGradNorm(dense, t.cfg.ClipNorm)
	}
	t.scale = scale
	t.adamStep = t.adam.begin(scale)
	t.parallel(ws, phaseOptimize)
	return t.firstErr(ws)
}

// mergeSparse unions the workers' touched rows of table f, summing the
// gradients of rows touched by more than one worker, in worker order.
func (t *Trainer) mergeSparse(f int, ws []*worker) ([]int32, []float32) {
	dim := t.dims[f]
	n := 0
	for _, w := range ws {
		wRows, _ := w.r.SparseGrad(f)
		n += len(wRows)
	}
	index := &t.mergeIndex[f]
	index.Reset(n)
	rows, grad := t.mergeRows[f][:0], t.mergeGrad[f][:0]
	for _, w := range ws {
		wRows, wGrad := w.r.SparseGrad(f)
		for i, r := range wRows {
			src := wGrad[i*dim : (i+1)*dim]
			if s, added := index.Find(r, int32(len(rows))); !added {
				addTo(grad[int(s)*dim:(int(s)+1)*dim], src)
				continue
			}
			rows = append(rows, r)
			grad = append(grad, src...)
		}
	}
	t.mergeRows[f], t.mergeGrad[f] = rows, grad
	return rows, grad
}

func addTo(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] += v
	}
}

// TrainerState is a trainer's resumable state: the optimizers, the loss
// weighting and the step count (the model's weights are saved apart).
type TrainerState struct {
	Step      int64 `json:"step"`
	Dense     State `json:"dense"`
	Sparse    State `json:"sparse"`
	Weighting State `json:"weighting"`
}

// State returns the trainer's state; its tensors alias the live state, so
// write them out before the next Step.
func (t *Trainer) State() TrainerState {
	return TrainerState{Step: t.step, Dense: t.adam.State(), Sparse: t.sparse.State(), Weighting: t.weight.State()}
}

// SetState restores a state saved by State, checking every tensor's name
// and size (a checkpoint of another model or optimizer is refused).
func (t *Trainer) SetState(st TrainerState) error {
	if err := t.adam.SetState(st.Dense); err != nil {
		return fmt.Errorf("mtl: restore dense optimizer: %w", err)
	}
	if err := t.sparse.SetState(st.Sparse); err != nil {
		return fmt.Errorf("mtl: restore embedding optimizer: %w", err)
	}
	if err := t.weight.SetState(st.Weighting); err != nil {
		return fmt.Errorf("mtl: restore loss weighting: %w", err)
	}
	t.step = st.Step
	return nil
}
