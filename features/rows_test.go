package features_test

import (
	"errors"
	"math"
	"testing"

	"github.com/onestone/onestone/features"
)

const rowsSpec = `fields:
  - {name: x, kind: numeric}
  - {name: z, kind: numeric, transform: standardize, missing_indicator: true, default: -1}
  - {name: l, kind: numeric, transform: log1p}
  - {name: b, kind: numeric, transform: bucketize, buckets: 4}
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: dwell, kind: regression, label: dwell}
sample_weight: w
`

// rowsStats standardizes z with a tiny std, so that 1e30 overflows after
// the transform although it fits a float32 before.
func rowsStats() *features.Stats {
	return &features.Stats{Fields: map[string]*features.FieldStats{
		"z": {Kind: features.Numeric, Numeric: &features.NumericStats{Mean: 0, Std: 1e-20}},
		"b": {Kind: features.Numeric, Boundaries: []float64{0, 1, 2}},
	}}
}

// TestCheckerAgreesWithTransformTo builds a record with one fault per row
// (and clean rows between), and checks that the Checker reports exactly
// the rows on which the training TransformTo fails, with the same error;
// that the clean rows transform; and that the serving transform gives
// out-of-range values the field's default and missing indicator.
func TestCheckerAgreesWithTransformTo(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, rowsSpec)
	train, err := features.NewTransformer(spec, rowsStats(), features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		x, z, l, b   any
		click, dwell any
		w            any
		fault, col   string
	}
	rows := []row{
		{1.0, 0.5, 2.0, 1.0, 1, 1.5, 1.0, "", ""},
		{1e300, 0.5, 2.0, 1.0, 0, 1.5, 1.0, features.FaultRange, "x"},
		{math.NaN(), nil, math.Inf(1), 1e300, 0, 1.5, 1.0, "", ""}, // missing values; a bucketized field takes any number
		{1.0, 1e30, 2.0, 1.0, 0, 1.5, 1.0, features.FaultRange, "z"},
		{1.0, 0.5, -1e300, 1.0, 0, 1.5, 1.0, features.FaultRange, "l"},
		{1.0, 0.5, 2.0, 1.0, 2, 1.5, 1.0, features.FaultLabel, "click"},
		{1.0, 0.5, 2.0, 1.0, nil, 1.5, 1.0, features.FaultLabel, "click"},
		{1.0, 0.5, 2.0, 1.0, 1, 1e300, 1.0, features.FaultLabel, "dwell"},
		{1.0, 0.5, 2.0, 1.0, 1, math.Inf(-1), 1.0, features.FaultLabel, "dwell"},
		{1.0, 0.5, 2.0, 1.0, 1, 1.5, -0.5, features.FaultWeight, "w"},
		{1.0, 0.5, 2.0, 1.0, 1, 1.5, math.NaN(), features.FaultWeight, "w"},
		{1.0, 0.5, 2.0, 1.0, 1, 1.5, 1e300, features.FaultWeight, "w"},
		{1.0, 0.5, 2.0, 1.0, 1, 1.5, nil, features.FaultWeight, "w"},
		{-3.0, -0.5, 0.0, 9.0, 0, -2.0, 0.0, "", ""},
	}
	cols := make([]col, 7)
	for i, name := range []string{"x", "z", "l", "b", "click", "dwell", "w"} {
		cols[i] = col{name: name, typ: f64}
	}
	cols[4].typ = i64
	for _, r := range rows {
		for i, v := range []any{r.x, r.z, r.l, r.b, r.click, r.dwell, r.w} {
			cols[i].vals = append(cols[i].vals, v)
		}
	}
	rec := record(t, mem, cols...)
	defer rec.Release()

	got := map[int]*features.RowError{}
	n, err := train.Checker().CheckRows(rec, func(e *features.RowError) {
		if got[e.Row] != nil {
			t.Errorf("row %d reported twice: %v and %v", e.Row, got[e.Row], e)
		}
		got[e.Row] = e
	})
	if err != nil {
		t.Fatal(err)
	}
	var want int
	for i, r := range rows {
		one := rec.NewSlice(int64(i), int64(i+1))
		var b features.Batch
		terr := train.TransformTo(&b, one)
		one.Release()
		e := got[i]
		switch {
		case r.fault == "":
			if e != nil || terr != nil {
				t.Errorf("clean row %d: checker %v, transform %v", i, e, terr)
			}
			continue
		case e == nil || e.Fault != r.fault || e.Column != r.col:
			t.Errorf("row %d: checker %+v, want fault %s in column %s", i, e, r.fault, r.col)
			continue
		}
		want++
		var re *features.RowError
		if !errors.As(terr, &re) || re.Fault != e.Fault || re.Column != e.Column || !errors.Is(terr, features.ErrValue) {
			t.Errorf("row %d: TransformTo %v, the checker %v", i, terr, e)
		}
		if re != nil && re.Row != 0 {
			t.Errorf("row %d: TransformTo of the one-row slice names row %d", i, re.Row)
		}
	}
	if n != want {
		t.Errorf("CheckRows counted %d faults, want %d", n, want)
	}

	// Serving: the out-of-range values get the default and the missing
	// indicator (z has both); nothing is refused there but bad weights.
	serve, err := features.NewTransformer(spec, rowsStats(), features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	z := rec.NewSlice(3, 4) // z = 1e30: beyond float32 after standardizing
	defer z.Release()
	var b features.Batch
	if err := serve.TransformTo(&b, z); err != nil {
		t.Fatal(err)
	}
	lay := serve.Layout()
	for d, f := range lay.Dense {
		switch f.Name {
		case "z":
			if b.Dense[d] != -1 {
				t.Errorf("served z = %v, want the default -1", b.Dense[d])
			}
		case "z.missing":
			if b.Dense[d] != 1 {
				t.Errorf("served z.missing = %v, want 1", b.Dense[d])
			}
		}
		if math.IsInf(float64(b.Dense[d]), 0) || math.IsNaN(float64(b.Dense[d])) {
			t.Errorf("served %s = %v", f.Name, b.Dense[d])
		}
	}
}

// TestFitterRefusesOutOfRange checks the Fitter's side of the checks: a
// dense value beyond float32 is a RowError (it would wreck the mean), as
// NewChecker reports it, while a bucketized field takes it.
func TestFitterRefusesOutOfRange(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, rowsSpec)
	rec := record(t, mem,
		col{"x", f64, vals[any](1.0, 2.0, 1e300)}, col{"z", f64, vals[any](0.0, 1.0, 2.0)},
		col{"l", f64, vals[any](0.0, 1.0, 2.0)}, col{"b", f64, vals[any](0.0, 1e300, 2.0)},
	)
	defer rec.Release()
	ft, err := features.NewFitter(spec, features.FitConfig{})
	if err != nil {
		t.Fatal(err)
	}
	err = ft.Add(rec)
	var re *features.RowError
	if !errors.As(err, &re) || re.Row != 2 || re.Column != "x" || re.Fault != features.FaultRange {
		t.Fatalf("Fitter.Add = %v, want a FaultRange RowError at row 2 of x", err)
	}
	c, err := features.NewChecker(spec, true)
	if err != nil {
		t.Fatal(err)
	}
	var rows []int
	// Labels and the weight are optional when fitting: the record has none.
	if _, err := c.CheckRows(rec, func(e *features.RowError) { rows = append(rows, e.Row) }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0] != 2 {
		t.Errorf("NewChecker reports rows %v, want [2]", rows)
	}
}
