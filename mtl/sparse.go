package mtl

import (
	"fmt"
	"math"

	"github.com/onestone/onestone/internal/kernels"
)

// Table is one embedding table updated sparsely: Value holds Rows x Dim
// float32s, row-major.
type Table struct {
	Name  string    // unique, e.g. "embeddings.user_id.weight"
	Value []float32 // the table (aliased, not copied); len must be a multiple of Dim
	Dim   int       // row width (embedding dimension), > 0
}

func checkTables(what string, tables []Table) error {
	if err := checkNames(what, len(tables), func(i int) string { return tables[i].Name }); err != nil {
		return err
	}
	for _, t := range tables {
		if t.Dim <= 0 || len(t.Value)%t.Dim != 0 {
			return fmt.Errorf("mtl: %s: table %q: %d values do not make rows of dim %d: %w", what, t.Name, len(t.Value), t.Dim, ErrConfig)
		}
	}
	return nil
}

// checkSparse checks the arguments of a sparse Step.
func checkSparse(what string, tables []Table, table int, rows []int32, grad []float32) error {
	if table < 0 || table >= len(tables) {
		return fmt.Errorf("mtl: %s: table %d out of range [0, %d): %w", what, table, len(tables), ErrShape)
	}
	t := tables[table]
	if len(grad) != len(rows)*t.Dim {
		return fmt.Errorf("mtl: %s: table %q: %d gradient values for %d rows of dim %d: %w", what, t.Name, len(grad), len(rows), t.Dim, ErrShape)
	}
	n := int32(len(t.Value) / t.Dim)
	for i, r := range rows {
		if r < 0 || r >= n {
			return fmt.Errorf("mtl: %s: table %q: row %d (entry %d) out of range [0, %d): %w", what, t.Name, r, i, n, ErrShape)
		}
	}
	return nil
}

// prefetchAhead is how many rows ahead of its updates a sparse optimizer
// asks for the rows of its table and state (kernels.PrefetchRows): the
// rows a batch touches are scattered over tables far larger than the
// caches, and read one by one each stalls on memory (measured on the std
// tables, 26 x 1024 rows: 4.7 ms of CPU without, 1.3 ms with).
const prefetchAhead = 64

// prefetchNext prefetches, before the update of rows[c:c+prefetchAhead],
// the rows that follow (and at c = 0 those too) in a (rows of da floats)
// and b (rows of db floats, or nil).
func prefetchNext(rows []int32, c int, a []float32, da int, b []float32, db int) {
	lo := c + prefetchAhead
	if c == 0 {
		lo = 0
	}
	hi := min(c+2*prefetchAhead, len(rows))
	if lo >= hi {
		return
	}
	kernels.PrefetchRows(a, da, rows[lo:hi])
	if b != nil {
		kernels.PrefetchRows(b, db, rows[lo:hi])
	}
}

// SparseAdagradConfig configures SparseAdagrad. A zero field takes its
// default.
type SparseAdagradConfig struct {
	// LR is the base learning rate; Step multiplies it by its scale.
	// Default: 0.01.
	LR float64 `json:"lr,omitempty" yaml:"lr,omitempty"`
	// Eps is added to the root of the accumulator. Default: 1e-8.
	Eps float64 `json:"eps,omitempty" yaml:"eps,omitempty"`
	// InitialAccumulator is the starting value of every accumulator.
	// Default: 0.
	InitialAccumulator float64 `json:"initial_accumulator,omitempty" yaml:"initial_accumulator,omitempty"`
	// PerElement keeps one accumulator per parameter (classic Adagrad,
	// 4 bytes per parameter) instead of one per row (row-wise Adagrad, 4
	// bytes per row: 10.4 MB for 26 tables of 100,000 rows). Default:
	// false (row-wise).
	PerElement bool `json:"per_element,omitempty" yaml:"per_element,omitempty"`
	// L2 adds L2·p to the gradient of every touched row (coupled L2
	// regularisation, applied only to the rows in the batch). Default: 0.
	L2 float64 `json:"l2,omitempty" yaml:"l2,omitempty"`
}

func (c SparseAdagradConfig) withDefaults() SparseAdagradConfig {
	if c.LR == 0 {
		c.LR = 0.01
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	return c
}

// Validate checks the configuration after defaults are applied.
func (c SparseAdagradConfig) Validate() error {
	c = c.withDefaults()
	if err := validateAdam("sparse adagrad", c.LR, 0, 0, c.Eps, c.L2); err != nil {
		return err
	}
	if !(c.InitialAccumulator >= 0) || math.IsInf(c.InitialAccumulator, 0) {
		return fmt.Errorf("mtl: sparse adagrad: initial_accumulator %v: want finite and >= 0: %w", c.InitialAccumulator, ErrConfig)
	}
	return nil
}

// SparseAdagrad is Adagrad for embedding tables that touches only the rows
// in a batch. Row-wise (default): for a touched row r with gradient g,
//
//	acc[r] += mean_j(g_j²);  p_rj -= lr·g_j / (sqrt(acc[r]) + eps)
//
// (one float32 per row, as FBGEMM's row-wise Adagrad). Per-element: acc
// has one float32 per parameter and acc_rj += g_j². Rows not in the batch
// are left exactly unchanged. Step allocates nothing. SparseAdagrad is not
// safe for concurrent use, except that Step calls on different tables may
// run concurrently.
type SparseAdagrad struct {
	cfg    SparseAdagradConfig
	tables []Table
	acc    [][]float32
}

// NewSparseAdagrad returns a sparse Adagrad optimizer over tables.
func NewSparseAdagrad(cfg SparseAdagradConfig, tables []Table) (*SparseAdagrad, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkTables("sparse adagrad", tables); err != nil {
		return nil, err
	}
	o := &SparseAdagrad{cfg: cfg.withDefaults(), tables: append([]Table(nil), tables...)}
	o.acc = make([][]float32, len(tables))
	for i, t := range tables {
		n := len(t.Value) / t.Dim
		if o.cfg.PerElement {
			n = len(t.Value)
		}
		a := make([]float32, n)
		if v := float32(o.cfg.InitialAccumulator); v != 0 {
			for j := range a {
				a[j] = v
			}
		}
		o.acc[i] = a
	}
	return o, nil
}

// StateBytes is the optimizer's state size in bytes.
func (o *SparseAdagrad) StateBytes() int64 {
	var n int64
	for _, a := range o.acc {
		n += 4 * int64(len(a))
	}
	return n
}

// rowStateLines: a row's accumulator, one value or one per element.
func (o *SparseAdagrad) rowStateLines(table int) int64 {
	if o.cfg.PerElement {
		return lines(4 * o.tables[table].Dim)
	}
	return lines(4)
}

// Step updates the touched rows of table `table` (its index in the tables
// given to NewSparseAdagrad). rows are the unique touched rows; grad holds
// len(rows)·Dim values, row i's gradient at grad[i·Dim:(i+1)·Dim]. The
// learning rate is cfg.LR·scale. A row listed twice is updated twice.
func (o *SparseAdagrad) Step(table int, rows []int32, grad []float32, scale float64) error {
	if err := checkSparse("sparse adagrad", o.tables, table, rows, grad); err != nil {
		return err
	}
	dim := o.tables[table].Dim
	val := o.tables[table].Value
	acc := o.acc[table]
	lr := float32(o.cfg.LR * scale)
	eps := float32(o.cfg.Eps)
	l2 := float32(o.cfg.L2)
	invDim := 1 / float32(dim)
	accDim := 1
	if o.cfg.PerElement {
		accDim = dim
	}
	for i, r := range rows {
		if i%prefetchAhead == 0 {
			prefetchNext(rows, i, val, dim, acc, accDim)
		}
		p := val[int(r)*dim : int(r)*dim+dim]
		g := grad[i*dim : i*dim+dim]
		if o.cfg.PerElement {
			a := acc[int(r)*dim : int(r)*dim+dim]
			for j, gj := range g {
				gj += l2 * p[j]
				a[j] += gj * gj
				p[j] -= lr * gj / (float32(math.Sqrt(float64(a[j]))) + eps)
			}
			continue
		}
		if l2 == 0 {
			var ss float32
			for _, gj := range g {
				ss += gj * gj
			}
			a := acc[r] + ss*invDim
			acc[r] = a
			f := lr / (float32(math.Sqrt(float64(a))) + eps)
			for j, gj := range g {
				p[j] -= f * gj
			}
			continue
		}
		var ss float32
		for j, gj := range g {
			gj += l2 * p[j]
			ss += gj * gj
		}
		a := acc[r] + ss*invDim
		acc[r] = a
		f := lr / (float32(math.Sqrt(float64(a))) + eps)
		for j, gj := range g {
			p[j] -= f * (gj + l2*p[j])
		}
	}
	return nil
}

// State returns the accumulators ("<table>.acc"), aliasing the live state.
func (o *SparseAdagrad) State() State {
	st := State{Tensors: make(map[string][]float32, len(o.tables))}
	for i, t := range o.tables {
		st.Tensors[t.Name+".acc"] = o.acc[i]
	}
	return st
}

// SetState restores a State saved by State from an optimizer over the same
// tables and mode. Nothing is changed when it returns an error.
func (o *SparseAdagrad) SetState(st State) error {
	for i, t := range o.tables {
		if err := checkTensor(st, t.Name+".acc", o.acc[i]); err != nil {
			return err
		}
	}
	for i, t := range o.tables {
		copy(o.acc[i], st.Tensors[t.Name+".acc"])
	}
	return nil
}

// SparseAdamConfig configures SparseAdam. A zero field takes its default.
type SparseAdamConfig struct {
	// LR is the base learning rate; Step multiplies it by its scale.
	// Default: 1e-3.
	LR float64 `json:"lr,omitempty" yaml:"lr,omitempty"`
	// Beta1 is the decay of the first moment. Default: 0.9.
	Beta1 float64 `json:"beta1,omitempty" yaml:"beta1,omitempty"`
	// Beta2 is the decay of the second moment. Default: 0.999.
	Beta2 float64 `json:"beta2,omitempty" yaml:"beta2,omitempty"`
	// Eps is added to the root of the bias-corrected second moment.
	// Default: 1e-8.
	Eps float64 `json:"eps,omitempty" yaml:"eps,omitempty"`
	// L2 adds L2·p to the gradient of every touched row. Default: 0.
	L2 float64 `json:"l2,omitempty" yaml:"l2,omitempty"`
}

func (c SparseAdamConfig) withDefaults() SparseAdamConfig {
	a := AdamConfig{LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps}.withDefaults()
	c.LR, c.Beta1, c.Beta2, c.Eps = a.LR, a.Beta1, a.Beta2, a.Eps
	return c
}

// Validate checks the configuration after defaults are applied.
func (c SparseAdamConfig) Validate() error {
	c = c.withDefaults()
	return validateAdam("sparse adam", c.LR, c.Beta1, c.Beta2, c.Eps, c.L2)
}

// SparseAdam is lazy Adam for embedding tables: only the rows in a batch
// have their moments decayed and updated; other rows, and their moments,
// are left exactly unchanged. Bias correction uses a per-row step count
// (the number of times the row was updated), so a row first seen late in
// training starts like a fresh Adam instead of with a tiny bias-corrected
// first moment. Memory: two float32 moments per parameter plus one int32
// per row, 8 bytes per parameter + 4 per row: for 26 tables of 100,000 rows
// of dim 16 that is 2 x 166 MB + 10 MB, which does not fit the 600 MB
// training target on top of the 166 MB of tables; use SparseAdagrad
// (row-wise, 10 MB) there. Step allocates nothing. SparseAdam is not safe
// for concurrent use, except that Step calls on different tables may run
// concurrently.
type SparseAdam struct {
	cfg    SparseAdamConfig
	tables []Table
	m, v   [][]float32
	steps  [][]int32
	// exactUntil is the row step count from which β1^t and β2^t are
	// below 1e-12.
	exactUntil float64
	// logBeta1 and logBeta2 are log β1 and log β2: β^t = exp(t·log β).
	logBeta1, logBeta2 float64
}

// NewSparseAdam returns a lazy sparse Adam optimizer over tables.
func NewSparseAdam(cfg SparseAdamConfig, tables []Table) (*SparseAdam, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkTables("sparse adam", tables); err != nil {
		return nil, err
	}
	o := &SparseAdam{cfg: cfg.withDefaults(), tables: append([]Table(nil), tables...)}
	o.m = make([][]float32, len(tables))
	o.v = make([][]float32, len(tables))
	o.steps = make([][]int32, len(tables))
	o.logBeta1, o.logBeta2 = math.Log(o.cfg.Beta1), math.Log(o.cfg.Beta2)
	o.exactUntil = math.Ceil(math.Log(1e-12) / math.Log(max(o.cfg.Beta1, o.cfg.Beta2, 1e-300)))
	for i, t := range tables {
		o.m[i] = make([]float32, len(t.Value))
		o.v[i] = make([]float32, len(t.Value))
		o.steps[i] = make([]int32, len(t.Value)/t.Dim)
	}
	return o, nil
}

// StateBytes is the optimizer's state size in bytes.
func (o *SparseAdam) StateBytes() int64 {
	var n int64
	for i := range o.m {
		n += 4*int64(len(o.m[i])+len(o.v[i])) + 4*int64(len(o.steps[i]))
	}
	return n
}

// rowStateLines: a row's two moments and its step count, three arrays.
func (o *SparseAdam) rowStateLines(table int) int64 {
	return 2*lines(4*o.tables[table].Dim) + lines(4)
}

// Step updates the touched rows of table `table`, as SparseAdagrad.Step.
// Each touched row takes one Adam step with its own step count.
func (o *SparseAdam) Step(table int, rows []int32, grad []float32, scale float64) error {
	if err := checkSparse("sparse adam", o.tables, table, rows, grad); err != nil {
		return err
	}
	c := o.cfg
	dim := o.tables[table].Dim
	val, m, v, steps := o.tables[table].Value, o.m[table], o.v[table], o.steps[table]
	lr := c.LR * scale
	b1, b2 := float32(c.Beta1), float32(c.Beta2)
	c1, c2 := 1-b1, 1-b2
	l2 := float32(c.L2)
	for i, r := range rows {
		if i%prefetchAhead == 0 {
			prefetchNext(rows, i, val, dim, m, dim)
			prefetchNext(rows, i, v, dim, nil, 0)
		}
		if steps[r] < math.MaxInt32 {
			steps[r]++
		}
		t := float64(steps[r])
		// Bias correction by the exact power until β^t < 1e-12, where it
		// no longer changes a float32 update and Pow is skipped.
		bc1, bc2 := 1.0, 1.0
		if t < o.exactUntil {
			bc1 = -math.Expm1(t * o.logBeta1)
			bc2 = -math.Expm1(t * o.logBeta2)
		}
		stepSize := float32(lr * math.Sqrt(bc2) / bc1)
		eps := float32(c.Eps * math.Sqrt(bc2))
		lo := int(r) * dim
		p, mr, vr := val[lo:lo+dim], m[lo:lo+dim], v[lo:lo+dim]
		g := grad[i*dim : i*dim+dim]
		for j, gj := range g {
			gj += l2 * p[j]
			mj := b1*mr[j] + c1*gj
			vj := b2*vr[j] + c2*gj*gj
			mr[j], vr[j] = mj, vj
			p[j] -= stepSize * mj / (float32(math.Sqrt(float64(vj))) + eps)
		}
	}
	return nil
}

// State returns the moments ("<table>.m", "<table>.v") and per-row step
// counts ("<table>.steps"), aliasing the live state.
func (o *SparseAdam) State() State {
	st := State{Tensors: make(map[string][]float32, 2*len(o.tables)), Counts: make(map[string][]int32, len(o.tables))}
	for i, t := range o.tables {
		st.Tensors[t.Name+".m"] = o.m[i]
		st.Tensors[t.Name+".v"] = o.v[i]
		st.Counts[t.Name+".steps"] = o.steps[i]
	}
	return st
}

// SetState restores a State saved by State from an optimizer over the same
// tables. Nothing is changed when it returns an error.
func (o *SparseAdam) SetState(st State) error {
	for i, t := range o.tables {
		if err := checkTensor(st, t.Name+".m", o.m[i]); err != nil {
			return err
		}
		if err := checkTensor(st, t.Name+".v", o.v[i]); err != nil {
			return err
		}
		if err := checkCounts(st, t.Name+".steps", o.steps[i]); err != nil {
			return err
		}
	}
	for i, t := range o.tables {
		copy(o.m[i], st.Tensors[t.Name+".m"])
		copy(o.v[i], st.Tensors[t.Name+".v"])
		copy(o.steps[i], st.Counts[t.Name+".steps"])
	}
	return nil
}
