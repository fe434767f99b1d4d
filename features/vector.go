package features

import (
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"go.yaml.in/yaml/v3"
)

// Vector fields: a fixed-length list of numbers per row (a pretrained
// content or user embedding), read from list<float>, list<double>,
// large_list or fixed_size_list columns (JSON: an array of numbers). A
// vector field of dim D becomes D dense columns "<name>[0]" ..
// "<name>[D-1]" (then "<name>.missing" with a missing indicator) in
// Layout.Dense, at the field's place in spec order, so it enters the
// model's first layer as dense inputs of its side.
//
// Each item is rounded to float32 first (the model's precision, and so the
// same value whether a column holds float or double), then standardised:
//
//	none:    x
//	per_dim: (x - mean[d]) / std[d], the statistics of dimension d
//	global:  (x - mean) / std, the statistics of all items together
//
// with population statistics fitted by the Fitter (std 0 is taken as 1).
// A null list, or a list with a null, NaN or infinite item, is a missing
// vector: every column 0 (the mean, when standardised) and the missing
// indicator 1. A list whose length is not dim is a row fault
// (FaultLength) in training and an error in serving; a finite item beyond
// float32's range, before or after standardisation, is FaultRange in
// training and a missing vector in serving, as for numeric fields.

// Normalize is the standardisation of a vector field.
type Normalize string

// Vector standardisations.
const (
	// NormalizeNone passes the items through.
	NormalizeNone Normalize = "none"
	// NormalizePerDim standardises each dimension with its own fitted mean
	// and std.
	NormalizePerDim Normalize = "per_dim"
	// NormalizeGlobal standardises every dimension with the mean and std of
	// all the field's items.
	NormalizeGlobal Normalize = "global"
)

// MaxDim is the largest dim of a vector field.
const MaxDim = 65536

// FaultLength: a vector field's list has another length than the field's
// dim (a row fault, see RowError).
const FaultLength = "wrong_length"

const wantVector = "vector (list, large_list or fixed_size_list of float or double)"

// VectorColumn returns the name of dense column d of vector field name in
// Layout.Dense: "name[d]".
func VectorColumn(name string, d int) string {
	return name + "[" + strconv.Itoa(d) + "]"
}

// VectorStats are the per-dimension statistics of a vector field's items
// (population, float64). The global ones are in FieldStats.Numeric.
type VectorStats struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

func parseDim(v *yaml.Node, where string) (int, error) {
	x, err := scalarInt(v, where+": dim")
	if err != nil {
		return 0, err
	}
	if x < 1 || x > MaxDim {
		return 0, errorf(ErrSpec, "features: spec line %d: %s: dim must be in [1, %d], found %d", v.Line, where, MaxDim, x)
	}
	return int(x), nil
}

func parseNormalize(v *yaml.Node, where string) (Normalize, error) {
	s, err := scalarString(v, where+": normalize")
	if err != nil {
		return "", err
	}
	switch n := Normalize(s); n {
	case NormalizeNone, NormalizePerDim, NormalizeGlobal:
		return n, nil
	}
	return "", errorf(ErrSpec, "features: spec line %d: %s: unknown normalize %q (want none, per_dim or global)", v.Line, where, s)
}

// validateVector checks the settings of a vector field.
func (f *Field) validateVector() error {
	if f.Dim < 1 || f.Dim > MaxDim {
		return fmt.Errorf("dim must be in [1, %d], found %d", MaxDim, f.Dim)
	}
	switch f.Normalize {
	case "", NormalizeNone, NormalizePerDim, NormalizeGlobal:
	default:
		return fmt.Errorf("unknown normalize %q (want none, per_dim or global)", f.Normalize)
	}
	if f.Buckets != 0 || f.Vocab != nil || f.Exact != nil || f.Pooling != PoolNone || f.Transform != "" || f.Default != 0 {
		return fmt.Errorf("buckets, vocab, exact, pooling, transform and default do not apply to vector fields")
	}
	return nil
}

// vecCol reads a list, large_list or fixed_size_list column of float32 or
// float64 items.
type vecCol struct {
	arr    arrow.Array
	nulls  bool
	base   int // the list array's offset
	off32  []int32
	off64  []int64
	fixed  int // fixed_size_list: the list size; 0 otherwise
	child  arrow.Array
	cnulls bool
	f32    []float32
	f64    []float64
}

func makeVecCol(a arrow.Array) (c vecCol, ok bool) {
	c.arr = a
	c.nulls = a.NullN() > 0
	c.base = a.Data().Offset()
	switch v := a.(type) {
	case *array.List:
		c.off32, c.child = v.Offsets(), v.ListValues()
	case *array.LargeList:
		c.off64, c.child = v.Offsets(), v.ListValues()
	case *array.FixedSizeList:
		c.fixed, c.child = int(v.DataType().(*arrow.FixedSizeListType).Len()), v.ListValues()
	default:
		return c, false
	}
	c.cnulls = c.child.NullN() > 0
	switch ch := c.child.(type) {
	case *array.Float32:
		c.f32 = ch.Float32Values()
	case *array.Float64:
		c.f64 = ch.Float64Values()
	default:
		return c, false
	}
	return c, true
}

// span returns the item range of row i, and ok false for a null list.
func (c *vecCol) span(i int) (lo, hi int, ok bool) {
	if c.nulls && c.arr.IsNull(i) {
		return 0, 0, false
	}
	j := c.base + i
	switch {
	case c.fixed > 0:
		return j * c.fixed, (j + 1) * c.fixed, true
	case c.off32 != nil:
		return int(c.off32[j]), int(c.off32[j+1]), true
	}
	return int(c.off64[j]), int(c.off64[j+1]), true
}

// vectorPlan is the transform of one vector field.
type vectorPlan struct {
	col  string
	dim  int
	norm Normalize
	// mean and inv standardise item d as (x-mean[d])*inv[d]; nil for none.
	mean, inv []float64
	at        int // column of item 0 in the dense block
	missing   int // column of the missing indicator, or -1
}

// addVector adds the plan and the dense columns of vector field f; fs
// holds its statistics (nil when normalize is none).
func (t *Transformer) addVector(f *Field, fs *FieldStats) error {
	p := vectorPlan{col: f.Name, dim: f.Dim, norm: f.Normalize, missing: -1}
	switch f.Normalize {
	case NormalizePerDim:
		if fs.Vector == nil || len(fs.Vector.Mean) != f.Dim || len(fs.Vector.Std) != f.Dim {
			return errorf(ErrStats, "features: field %q: normalize per_dim needs a fitted mean and std of each of its %d dimensions, found none or another count", f.Name, f.Dim)
		}
		p.mean, p.inv = make([]float64, f.Dim), make([]float64, f.Dim)
		for d := range f.Dim {
			p.mean[d], p.inv[d] = fs.Vector.Mean[d], invStd(fs.Vector.Std[d])
		}
	case NormalizeGlobal:
		if fs.Numeric == nil {
			return errorf(ErrStats, "features: field %q: normalize global needs a fitted mean and std, found none", f.Name)
		}
		p.mean, p.inv = make([]float64, f.Dim), make([]float64, f.Dim)
		for d := range f.Dim {
			p.mean[d], p.inv[d] = fs.Numeric.Mean, invStd(fs.Numeric.Std)
		}
	}
	for d, m := range p.mean {
		if !finite(m) || !finite(p.inv[d]) {
			return errorf(ErrStats, "features: field %q: dimension %d: mean %v, std %v: want finite", f.Name, d, m, 1/p.inv[d])
		}
	}
	p.at = len(t.layout.Dense)
	for d := range f.Dim {
		t.layout.Dense = append(t.layout.Dense, DenseField{Name: VectorColumn(f.Name, d), Side: f.Side})
	}
	if f.MissingIndicator {
		p.missing = len(t.layout.Dense)
		t.layout.Dense = append(t.layout.Dense, DenseField{Name: f.Name + ".missing", Side: f.Side})
	}
	t.vectors = append(t.vectors, p)
	return nil
}

func invStd(std float64) float64 {
	if std > 0 {
		return 1 / std
	}
	return 1
}

// column returns the reader of the plan's column in rec.
func (p *vectorPlan) column(rec arrow.RecordBatch) (vecCol, error) {
	a, err := recordColumn(rec, p.col)
	if err != nil {
		return vecCol{}, err
	}
	c, ok := makeVecCol(a)
	if !ok {
		return c, typeErr(p.col, wantVector, a.DataType())
	}
	if c.fixed > 0 && c.fixed != p.dim {
		return c, errorf(ErrSchema, "features: column %q: want a vector of %d numbers, found %s", p.col, p.dim, a.DataType())
	}
	return c, nil
}

// vecState is the outcome of reading one row of a vector.
type vecState uint8

const (
	vecOK      vecState = iota
	vecMissing          // a null, NaN or infinite item
	vecRange            // an item beyond float32's range, before or after standardisation
)

// row transforms items [lo, lo+dim) of c into out (when out is not nil).
// For vecRange, j and v are the item and its raw value.
func (p *vectorPlan) row(out []float32, c *vecCol, lo int) (st vecState, j int, v float64) {
	if c.f32 != nil {
		for j, x := range c.f32[lo : lo+p.dim] {
			v := float64(x)
			if !finite(v) || (c.cnulls && c.child.IsNull(lo+j)) {
				return vecMissing, j, v
			}
			if p.mean != nil {
				x = float32((v - p.mean[j]) * p.inv[j])
				if math.IsInf(float64(x), 0) {
					return vecRange, j, v
				}
			}
			if out != nil {
				out[j] = x
			}
		}
		return vecOK, 0, 0
	}
	for j, v := range c.f64[lo : lo+p.dim] {
		if !finite(v) || (c.cnulls && c.child.IsNull(lo+j)) {
			return vecMissing, j, v
		}
		x, st := p.item64(j, v)
		if st != vecOK {
			return st, j, v
		}
		if out != nil {
			out[j] = x
		}
	}
	return vecOK, 0, 0
}

// item64 transforms item j of a float64 vector, v, finite: vecRange when
// it is beyond float32's range, before or after standardisation. The one
// rule for float64 items, of Arrow columns and of JSON (JSONRows).
func (p *vectorPlan) item64(j int, v float64) (float32, vecState) {
	x := float32(v)
	if math.IsInf(float64(x), 0) {
		return 0, vecRange
	}
	if p.mean != nil {
		x = float32((float64(x) - p.mean[j]) * p.inv[j])
		if math.IsInf(float64(x), 0) {
			return 0, vecRange
		}
	}
	return x, vecOK
}

// fill writes the plan's columns of every row of rec into the dense
// block. A list of another length is an error; with strict, so is an item
// beyond float32's range (else the vector is missing).
func (p *vectorPlan) fill(dense []float32, w int, rec arrow.RecordBatch, n int, strict bool) error {
	c, err := p.column(rec)
	if err != nil {
		return err
	}
	for r := 0; r < n; r++ {
		row := dense[r*w : r*w+w]
		out := row[p.at : p.at+p.dim]
		st := vecMissing
		if lo, hi, ok := c.span(r); ok {
			if hi-lo != p.dim {
				return p.lengthErr(r, hi-lo)
			}
			var j int
			var v float64
			if st, j, v = p.row(out, &c, lo); st == vecRange && strict {
				return p.rangeErr(r, j, v)
			}
		}
		if st != vecOK {
			clear(out)
		}
		if p.missing >= 0 {
			row[p.missing] = 0
			if st != vecOK {
				row[p.missing] = 1
			}
		}
	}
	return nil
}

// check calls bad (when not nil) for the faults of rec's rows, a wrong
// length and with ranges an item beyond float32's range, and returns
// their number.
func (p *vectorPlan) check(rec arrow.RecordBatch, n int, ranges bool, bad func(*RowError)) (int, error) {
	c, err := p.column(rec)
	if err != nil {
		return 0, err
	}
	faults := 0
	report := func(e *RowError) {
		faults++
		if bad != nil {
			bad(e)
		}
	}
	for r := 0; r < n; r++ {
		lo, hi, ok := c.span(r)
		if !ok {
			continue
		}
		if hi-lo != p.dim {
			report(p.lengthErr(r, hi-lo))
			continue
		}
		if !ranges {
			continue
		}
		if st, j, v := p.row(nil, &c, lo); st == vecRange {
			report(p.rangeErr(r, j, v))
		}
	}
	return faults, nil
}

func (p *vectorPlan) lengthErr(r, k int) *RowError {
	return rowErr(p.col, r, FaultLength, "want a vector of %d numbers, found %d", p.dim, k)
}

func (p *vectorPlan) rangeErr(r, j int, v float64) *RowError {
	if !fits32(v) {
		return rowErr(p.col, r, FaultRange, "item %d: %v is beyond float32's range", j, v)
	}
	return rowErr(p.col, r, FaultRange, "item %d: %v is beyond float32's range after its %s normalisation", j, v, p.norm)
}

// checkVectors runs the vector fields' checks of CheckRows and returns the
// number of faults.
func (c *Checker) checkVectors(rec arrow.RecordBatch, n int, bad func(*RowError)) (int, error) {
	faults := 0
	for i := range c.vectors {
		k, err := c.vectors[i].check(rec, n, c.vectorRanges, bad)
		faults += k
		if err != nil {
			return faults, err
		}
	}
	return faults, nil
}

// vectorFit accumulates the statistics of a vector field: Welford's
// algorithm per dimension (every dimension has the same count).
type vectorFit struct {
	plan     vectorPlan // raw values: no standardisation
	n        int64
	mean, m2 []float64
	min, max float64
}

func newVectorFit(f *Field) *vectorFit {
	return &vectorFit{
		plan: vectorPlan{col: f.Name, dim: f.Dim, norm: NormalizeNone, missing: -1},
		mean: make([]float64, f.Dim), m2: make([]float64, f.Dim),
		min: math.Inf(1), max: math.Inf(-1),
	}
}

// addVector accumulates the rows of a vector column: a missing vector
// counts as a null, a wrong length or an item beyond float32's range is a
// *RowError.
func (ff *fieldFit) addVector(rec arrow.RecordBatch, n int) error {
	vf := ff.vec
	c, err := vf.plan.column(rec)
	if err != nil {
		return err
	}
	for r := 0; r < n; r++ {
		lo, hi, ok := c.span(r)
		if !ok {
			ff.nulls++
			continue
		}
		if hi-lo != vf.plan.dim {
			return vf.plan.lengthErr(r, hi-lo)
		}
		switch st, j, v := vf.plan.row(nil, &c, lo); st {
		case vecMissing:
			ff.nulls++
			continue
		case vecRange:
			return vf.plan.rangeErr(r, j, v)
		}
		ff.values++
		vf.n++
		inv := 1 / float64(vf.n)
		for j := range vf.plan.dim {
			var x float64 // as the transform sees it: rounded to float32
			if c.f32 != nil {
				x = float64(c.f32[lo+j])
			} else {
				x = float64(float32(c.f64[lo+j]))
			}
			d := x - vf.mean[j]
			vf.mean[j] += d * inv
			vf.m2[j] += d * (x - vf.mean[j])
			vf.min = min(vf.min, x)
			vf.max = max(vf.max, x)
		}
	}
	return nil
}

// finishVector sets the statistics of a vector field: per dimension, and
// over all items (in Numeric: the mean of the means, and the population
// std of all items from the dimensions' variances and means).
func (ff *fieldFit) finishVector(fs *FieldStats) error {
	vf := ff.vec
	dim := vf.plan.dim
	vs := &VectorStats{Mean: make([]float64, dim), Std: make([]float64, dim)}
	ns := &NumericStats{}
	if vf.n > 0 {
		for j := range dim {
			vs.Mean[j] = vf.mean[j]
			vs.Std[j] = math.Sqrt(vf.m2[j] / float64(vf.n))
			ns.Mean += vf.mean[j]
		}
		ns.Mean /= float64(dim)
		var v float64
		for j := range dim {
			d := vf.mean[j] - ns.Mean
			v += vf.m2[j]/float64(vf.n) + d*d
		}
		ns.Std = math.Sqrt(v / float64(dim))
		ns.Min, ns.Max = vf.min, vf.max
	}
	if !finite(ns.Mean) || !finite(ns.Std) {
		return errorf(ErrStats, "features: field %q: mean or std overflows float64 (values too large)", ff.f.Name)
	}
	for j := range dim {
		if !finite(vs.Std[j]) {
			return errorf(ErrStats, "features: field %q: dimension %d: std overflows float64 (values too large)", ff.f.Name, j)
		}
	}
	fs.Numeric, fs.Vector = ns, vs
	return nil
}
