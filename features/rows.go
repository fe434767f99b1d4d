package features

import (
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
)

// Row faults: the kinds of RowError. Ingest uses them as dead-letter
// reasons.
const (
	// FaultLabel: a label is null, or outside its task's domain (a binary
	// label other than 0 or 1, a regression label that is not finite or
	// beyond float32's range).
	FaultLabel = "bad_label"
	// FaultWeight: a sample weight is null, negative, not finite or beyond
	// float32's range.
	FaultWeight = "bad_weight"
	// FaultRange: a number of a dense numeric field is finite in the record
	// but not as a float32, before or after the field's transform (a
	// corrupt or mis-scaled value such as 1e300). NaN, infinities and nulls
	// are missing values, not faults: they get the field's default.
	FaultRange = "out_of_range"
)

// RowError is a value in one row of a record that training cannot use and
// for which no default applies. It wraps ErrValue.
type RowError struct {
	// Row is the row in the record, Column the column.
	Row    int
	Column string
	// Fault is one of the Fault constants.
	Fault string
	// Detail says what is wrong, e.g. "binary label must be 0 or 1, found 2".
	Detail string
}

func (e *RowError) Error() string {
	return fmt.Sprintf("features: column %q: row %d: %s", e.Column, e.Row, e.Detail)
}

// Unwrap returns ErrValue.
func (e *RowError) Unwrap() error { return ErrValue }

func rowErr(col string, r int, fault, format string, args ...any) *RowError {
	return &RowError{Row: r, Column: col, Fault: fault, Detail: fmt.Sprintf(format, args...)}
}

// fits32 reports whether a finite v stays finite as a float32.
func fits32(v float64) bool { return !math.IsInf(float64(float32(v)), 0) }

// labelValue reads and validates label r of a column.
func labelValue(c *numCol, r int, col string, kind TaskKind) (float32, error) {
	v, ok := c.value(r)
	if !ok {
		return 0, rowErr(col, r, FaultLabel, "null label")
	}
	if kind == TaskRegression {
		if !finite(v) {
			return 0, rowErr(col, r, FaultLabel, "regression label must be finite, found %v", v)
		}
		if !fits32(v) {
			return 0, rowErr(col, r, FaultLabel, "regression label beyond float32's range, found %v", v)
		}
		return float32(v), nil
	}
	if v != 0 && v != 1 {
		return 0, rowErr(col, r, FaultLabel, "binary label must be 0 or 1, found %v", v)
	}
	return float32(v), nil
}

// weightValue reads and validates sample weight r.
func weightValue(c *numCol, r int, col string) (float32, error) {
	v, ok := c.value(r)
	if !ok {
		return 0, rowErr(col, r, FaultWeight, "null sample weight")
	}
	if !finite(v) || v < 0 || !fits32(v) {
		return 0, rowErr(col, r, FaultWeight, "sample weight must be finite and >= 0 (and within float32's range), found %v", v)
	}
	return float32(v), nil
}

// transform returns the dense value of a finite raw value v, and ok false
// when v or the value is beyond float32's range (FaultRange).
func (p *densePlan) transform(v float64) (x float32, ok bool) {
	if !fits32(v) {
		return 0, false
	}
	switch p.tr {
	case TransformLog1p:
		v = signedLog1p(v)
	case TransformStandardize:
		v = (v - p.mean) * p.inv
	}
	x = float32(v)
	return x, !math.IsInf(float64(x), 0)
}

// Checker finds the rows of raw records that training cannot use (see
// RowError): the checks TransformTo applies with Labels, and the Fitter in
// Add. A source given a Checker (ingest's KafkaSource and ParquetSource)
// drops such rows before they reach either: into dead letters, or counted
// with --skip-bad-rows. A Checker is immutable and safe for concurrent use.
type Checker struct {
	labels []labelPlan
	weight string
	dense  []densePlan
	// vectors: the vector fields, checked for their length and, with
	// vectorRanges, for items beyond float32's range.
	vectors      []vectorPlan
	vectorRanges bool
	// optional: label and weight columns a record lacks are skipped
	// (fitting), not a schema error (training).
	optional bool
}

// NewChecker returns the checks of a spec without fitted statistics, for
// fitting: the labels (when labels is set) and the sample weight when the
// record has their columns, the raw values of dense numeric fields, and
// the lengths and raw items of vector fields. Transformer.Checker has the full checks, with the fitted transforms.
func NewChecker(spec *Spec, labels bool) (*Checker, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{weight: spec.SampleWeight, optional: true, vectorRanges: true}
	for i := range spec.Fields {
		f := &spec.Fields[i]
		if !f.Sparse() && f.Kind == Numeric {
			c.dense = append(c.dense, densePlan{col: f.Name, inv: 1})
		}
		if f.Kind == Vector {
			c.vectors = append(c.vectors, newVectorFit(f).plan)
		}
	}
	if labels {
		for _, t := range spec.Tasks {
			c.labels = append(c.labels, labelPlan{col: t.Label, kind: t.Kind})
		}
	}
	return c, nil
}

// CheckRows calls bad for every fault in rec's rows, column by column (a
// row may be reported more than once), and returns the number of faults.
// A record-level problem (a missing column, a type a field cannot take) is
// returned as an error wrapping ErrSchema, as TransformTo would; label and
// weight columns the record lacks are skipped when the Checker came from
// NewChecker (they are optional when fitting). CheckRows allocates only the
// errors it reports.
func (c *Checker) CheckRows(rec arrow.RecordBatch, bad func(*RowError)) (int, error) {
	n := int(rec.NumRows())
	faults := 0
	report := func(err error) {
		faults++
		if re, ok := err.(*RowError); ok && bad != nil {
			bad(re)
		}
	}
	for _, l := range c.labels {
		a, err := recordColumn(rec, l.col)
		if err != nil {
			if c.optional {
				continue
			}
			return faults, err
		}
		col, ok := makeNumCol(a)
		if !ok {
			return faults, typeErr(l.col, "label "+wantNumeric, a.DataType())
		}
		for r := 0; r < n; r++ {
			if _, err := labelValue(&col, r, l.col, l.kind); err != nil {
				report(err)
			}
		}
	}
	if a, err := recordColumn(rec, c.weight); c.weight != "" && (err == nil || !c.optional) {
		if err != nil {
			return faults, err
		}
		col, ok := makeNumCol(a)
		if !ok {
			return faults, typeErr(c.weight, "sample weight "+wantNumeric, a.DataType())
		}
		for r := 0; r < n; r++ {
			if _, err := weightValue(&col, r, c.weight); err != nil {
				report(err)
			}
		}
	}
	for i := range c.dense {
		p := &c.dense[i]
		a, err := recordColumn(rec, p.col)
		if err != nil {
			return faults, err
		}
		col, ok := makeNumCol(a)
		if !ok {
			return faults, typeErr(p.col, wantNumeric, a.DataType())
		}
		for r := 0; r < n; r++ {
			if v, ok := col.value(r); ok && finite(v) {
				if _, ok := p.transform(v); !ok {
					report(rangeErr(p, r, v))
				}
			}
		}
	}
	k, err := c.checkVectors(rec, n, bad)
	return faults + k, err
}

func rangeErr(p *densePlan, r int, v float64) *RowError {
	if !fits32(v) {
		return rowErr(p.col, r, FaultRange, "%v is beyond float32's range", v)
	}
	return rowErr(p.col, r, FaultRange, "%v is beyond float32's range after its %s transform", v, p.tr)
}
