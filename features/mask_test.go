package features_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
)

// TestTransformMaskColumns: a mask that is another task's label adds no
// column; a mask on any other column follows the labels, once, as 1 where
// the value is non-zero and 0 where it is zero, null or NaN; the
// projection and the JSON schema include it.
func TestTransformMaskColumns(t *testing.T) {
	mem := checkedMem(t)
	spec := `fields: [{name: x, kind: numeric, missing_indicator: false}]
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: binary, label: conv, mask: click}
  - {name: dwell, kind: regression, label: dwell, mask: member}
  - {name: like, kind: binary, label: like, mask: member}
  - {name: share, kind: binary, label: share, mask: x}
`
	tr := newTransformer(t, spec, nil, true)
	if got, want := tr.Layout().Labels, []string{"click", "conv", "dwell", "like", "share", "member", "x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("labels layout %v, want %v", got, want)
	}
	s := mustParse(t, spec)
	if got, want := s.Columns(true), []string{"x", "click", "conv", "dwell", "like", "share", "member"}; !reflect.DeepEqual(got, want) {
		t.Errorf("columns %v, want %v", got, want)
	}
	if f := s.Schema(true).Field(6); f.Name != "member" || !f.Nullable || f.Type != arrow.PrimitiveTypes.Float64 {
		t.Errorf("JSON schema of the mask column: %v", f)
	}
	for _, member := range []col{
		{"member", f64, vals[any](2.5, 0.0, nil, math.NaN(), -1.0)},
		{"member", boolean, vals[any](true, false, nil, false, true)},
		{"member", i32, vals[any](7, 0, nil, 0, -3)},
	} {
		b := transform(t, tr, record(t, mem,
			col{"x", f64, vals[any](1.0, 0.0, 0.0, 0.5, -2.0)},
			col{"click", i64, vals[any](1, 0, 0, 1, 1)},
			col{"conv", i64, vals[any](1, 0, 0, 0, 0)},
			col{"dwell", f64, vals[any](1.0, 2.0, 3.0, 4.0, 5.0)},
			col{"like", i64, vals[any](0, 0, 1, 0, 1)},
			col{"share", i64, vals[any](0, 0, 0, 0, 1)},
			member,
		))
		if got, want := b.Labels[5], []float32{1, 0, 0, 0, 1}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s mask %v, want %v", member.typ, got, want)
		}
		if got, want := b.Labels[6], []float32{1, 0, 0, 1, 1}; !reflect.DeepEqual(got, want) {
			t.Errorf("mask on the input x: %v, want %v", got, want)
		}
	}
}
