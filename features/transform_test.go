package features_test

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/cespare/xxhash/v2"
	"github.com/onestone/onestone/features"
)

// wantHashID computes a hash-mode id independently, from the documented
// formula: 1 + xxhash64(text, seed = xxhash64(field name)) % buckets.
func wantHashID(field, text string, buckets int) int32 {
	d := xxhash.NewWithSeed(xxhash.Sum64String(field))
	d.WriteString(text)
	return int32(1 + d.Sum64()%uint64(buckets))
}

func newTransformer(t *testing.T, spec string, stats *features.Stats, labels bool) *features.Transformer {
	t.Helper()
	tr, err := features.NewTransformer(mustParse(t, spec), stats, features.TransformerConfig{Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func transform(t *testing.T, tr *features.Transformer, rec arrow.RecordBatch) *features.Batch {
	t.Helper()
	defer rec.Release()
	var b features.Batch
	if err := tr.TransformTo(&b, rec); err != nil {
		t.Fatal(err)
	}
	return &b
}

const noLabel = "tasks: [{name: ctr, kind: binary, label: click}]\n"

func TestTransformHashIDs(t *testing.T) {
	mem := checkedMem(t)
	spec := `fields:
  - {name: s, kind: categorical, buckets: 1000}
  - {name: l, kind: categorical, buckets: 1000}
  - {name: d, kind: categorical, buckets: 1000, side: candidate}
  - {name: i, kind: categorical, buckets: 1000}
  - {name: j, kind: categorical, buckets: 7}
  - {name: u, kind: categorical, buckets: 1000}
  - {name: b, kind: categorical, buckets: 1000}
` + noLabel
	tr := newTransformer(t, spec, nil, false)
	lay := tr.Layout()
	if len(lay.Sparse) != 7 || lay.Sparse[0].Cardinality != 1001 || lay.Sparse[4].Cardinality != 8 ||
		lay.Sparse[2].Side != features.SideCandidate || lay.Sparse[0].Pooling != features.PoolNone || len(lay.Dense) != 0 || lay.Labels != nil {
		t.Fatalf("layout %+v", lay)
	}
	rec := record(t, mem,
		col{"s", utf8, vals[any]("alice", nil, "", "12345")},
		col{"l", lutf8, vals[any]("bob", "bob", nil, "é")},
		col{"d", dictStr, vals[any]("x", "y", "x", nil)},
		col{"i", i64, vals[any](12345, -7, nil, 0)},
		col{"j", i32, vals[any](1, 2, 3, nil)},
		col{"u", u64, vals[any](5, nil, 6, 7)},
		col{"b", boolean, vals[any](true, false, nil, true)},
	)
	b := transform(t, tr, rec)
	want := [][]int32{
		{wantHashID("s", "alice", 1000), 0, wantHashID("s", "", 1000), wantHashID("s", "12345", 1000)},
		{wantHashID("l", "bob", 1000), wantHashID("l", "bob", 1000), 0, wantHashID("l", "é", 1000)},
		{wantHashID("d", "x", 1000), wantHashID("d", "y", 1000), wantHashID("d", "x", 1000), 0},
		{wantHashID("i", "12345", 1000), wantHashID("i", "-7", 1000), 0, wantHashID("i", "0", 1000)},
		{wantHashID("j", "1", 7), wantHashID("j", "2", 7), wantHashID("j", "3", 7), 0},
		{wantHashID("u", "5", 1000), 0, wantHashID("u", "6", 1000), wantHashID("u", "7", 1000)},
		{wantHashID("b", "true", 1000), wantHashID("b", "false", 1000), 0, wantHashID("b", "true", 1000)},
	}
	if b.Rows != 4 || len(b.Sparse) != 7 {
		t.Fatalf("rows %d, sparse %d", b.Rows, len(b.Sparse))
	}
	for f, w := range want {
		if b.Sparse[f].Offsets != nil || !reflect.DeepEqual(b.Sparse[f].IDs, w) {
			t.Errorf("field %s: ids %v offsets %v, want %v", lay.Sparse[f].Name, b.Sparse[f].IDs, b.Sparse[f].Offsets, w)
		}
		if got := features.HashID(lay.Sparse[f].Name, "12345", 1000); f != 4 && got != wantHashID(lay.Sparse[f].Name, "12345", 1000) {
			t.Errorf("HashID disagrees with the formula: %d", got)
		}
	}
	if b.Sparse[1].IDs[0] == b.Sparse[0].IDs[0] && wantHashID("s", "bob", 1000) == wantHashID("l", "bob", 1000) {
		t.Error("different fields should use different seeds")
	}

	// The same value as int64 and as its decimal string gets the same id.
	spec1 := "fields: [{name: uid, kind: categorical, buckets: 100000}]\n" + noLabel
	tr1 := newTransformer(t, spec1, nil, false)
	bi := transform(t, tr1, record(t, mem, col{"uid", i64, vals[any](12345, -3, 9007199254740993)}))
	bs := transform(t, tr1, record(t, mem, col{"uid", utf8, vals[any]("12345", "-3", "9007199254740993")}))
	b32 := transform(t, tr1, record(t, mem, col{"uid", i32, vals[any](12345, -3, 0)}))
	if !reflect.DeepEqual(bi.Sparse[0].IDs, bs.Sparse[0].IDs) || bi.Sparse[0].IDs[0] != b32.Sparse[0].IDs[0] || bi.Sparse[0].IDs[1] != b32.Sparse[0].IDs[1] {
		t.Errorf("int64 ids %v, string ids %v, int32 ids %v", bi.Sparse[0].IDs, bs.Sparse[0].IDs, b32.Sparse[0].IDs)
	}
	for _, id := range bi.Sparse[0].IDs {
		if id < 1 || id > 100000 {
			t.Errorf("id %d out of [1, 100000]", id)
		}
	}
}

func fitStats(t *testing.T, spec *features.Spec, cfg features.FitConfig, recs ...arrow.RecordBatch) *features.Stats {
	t.Helper()
	ft, err := features.NewFitter(spec, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		err := ft.Add(r)
		r.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := ft.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestTransformVocab(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, `fields:
  - {name: cat, kind: categorical, vocab: {min_count: 2}}
  - {name: top, kind: categorical, vocab: {max_size: 2}}
`+noLabel)
	st := fitStats(t, spec, features.FitConfig{},
		record(t, mem,
			col{"cat", i64, vals[any](5, 5, 7, 7, 7, 9, nil, 3, 3)},
			col{"top", utf8, vals[any]("b", "a", "c", "c", "a", "b", "d", nil, "c")},
		))
	cs := st.Fields["cat"]
	if !reflect.DeepEqual(cs.Vocab.Values, []string{"7", "3", "5"}) || !reflect.DeepEqual(cs.Vocab.Counts, []int64{3, 2, 2}) || cs.Vocab.Distinct != 4 || cs.Nulls != 1 || cs.Values != 8 {
		t.Errorf("cat vocab %+v, nulls %d, values %d", cs.Vocab, cs.Nulls, cs.Values)
	}
	if ts := st.Fields["top"].Vocab; !reflect.DeepEqual(ts.Values, []string{"c", "a"}) {
		t.Errorf("top vocab %+v", ts)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if lay := tr.Layout(); lay.Sparse[0].Cardinality != 4 || lay.Sparse[1].Cardinality != 3 {
		t.Errorf("cardinalities %+v", lay.Sparse)
	}
	// Serving sends the ids as strings: "7" must find the id fitted on int64 7.
	b := transform(t, tr, record(t, mem,
		col{"cat", utf8, vals[any]("7", "3", "5", "9", "x", nil)},
		col{"top", dictStr, vals[any]("c", "a", "b", "zzz", nil, "c")},
	))
	if want := []int32{1, 2, 3, 0, 0, 0}; !reflect.DeepEqual(b.Sparse[0].IDs, want) {
		t.Errorf("cat ids %v, want %v", b.Sparse[0].IDs, want)
	}
	if want := []int32{1, 2, 0, 0, 0, 1}; !reflect.DeepEqual(b.Sparse[1].IDs, want) {
		t.Errorf("top ids %v, want %v", b.Sparse[1].IDs, want)
	}
}

// Integer columns find keys that are canonical integer text, and only those.
func TestVocabIntegerKeys(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, "fields: [{name: c, kind: categorical, vocab: {}}]\n"+noLabel)
	keys := []any{"007", "7", "-0", "abc", "18446744073709551615", "-9223372036854775808", "true", "0"}
	// Repeat so that ids follow the order above (descending count).
	var fitVals []any
	for i, k := range keys {
		for range len(keys) - i {
			fitVals = append(fitVals, k)
		}
	}
	st := fitStats(t, spec, features.FitConfig{}, record(t, mem, col{"c", utf8, fitVals}))
	if got := st.Fields["c"].Vocab.Values; !reflect.DeepEqual(vals(got...), keys) {
		t.Fatalf("vocab %v", got)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    col
		want []int32
	}{
		{col{"c", i64, vals[any](7, 0, -1<<63, 8, nil)}, []int32{2, 8, 6, 0, 0}},
		{col{"c", i32, vals[any](7, 0, 1)}, []int32{2, 8, 0}},
		{col{"c", u64, vals[any](7, 0)}, []int32{2, 8}},
		{col{"c", utf8, vals[any]("007", "7", "-0", "abc", "0", "x")}, []int32{1, 2, 3, 4, 8, 0}},
		{col{"c", boolean, vals[any](true, false)}, []int32{7, 0}},
	} {
		b := transform(t, tr, record(t, mem, tc.c))
		if !reflect.DeepEqual(b.Sparse[0].IDs, tc.want) {
			t.Errorf("%s column: ids %v, want %v", tc.c.typ, b.Sparse[0].IDs, tc.want)
		}
	}
	ub := array.NewUint64Builder(mem)
	ub.AppendValues([]uint64{1<<64 - 1, 7}, nil)
	ua := ub.NewArray()
	ub.Release()
	b := transform(t, tr, array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "c", Type: u64}}, nil), []arrow.Array{ua}, 2))
	ua.Release()
	if !reflect.DeepEqual(b.Sparse[0].IDs, []int32{5, 2}) {
		t.Errorf("uint64 ids %v, want [5 2]", b.Sparse[0].IDs)
	}
}

// Integer keys spanning a small range are found through a dense table:
// keys, integers between them that are not keys, and integers outside the
// range (by one, and at the extremes, where a difference wraps) get the
// ids the text of the value gets.
func TestVocabDenseIntegerKeys(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, "fields: [{name: c, kind: categorical, vocab: {}}]\n"+noLabel)
	keys := []any{"3", "5", "10", "-2", "x", "07"}
	var fitVals []any
	for i, k := range keys {
		for range len(keys) - i {
			fitVals = append(fitVals, k)
		}
	}
	st := fitStats(t, spec, features.FitConfig{}, record(t, mem, col{"c", utf8, fitVals}))
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ints := []int64{3, 5, 10, -2, 4, 7, 11, -3, math.MinInt64, math.MaxInt64, 0}
	var text, i64s, i32s []any
	for _, x := range ints {
		text = append(text, strconv.FormatInt(x, 10))
		i64s = append(i64s, int(x))
		if x == int64(int32(x)) {
			i32s = append(i32s, int(x))
		}
	}
	want := transform(t, tr, record(t, mem, col{"c", utf8, text})).Sparse[0].IDs
	if !reflect.DeepEqual(want[:5], []int32{1, 2, 3, 4, 0}) {
		t.Fatalf("text ids %v", want)
	}
	if got := transform(t, tr, record(t, mem, col{"c", i64, i64s})).Sparse[0].IDs; !reflect.DeepEqual(got, want) {
		t.Errorf("int64 ids %v, want %v", got, want)
	}
	want32 := append(append([]int32{}, want[:8]...), want[10])
	if got := transform(t, tr, record(t, mem, col{"c", i32, i32s})).Sparse[0].IDs; !reflect.DeepEqual(got, want32) {
		t.Errorf("int32 ids %v, want %v", got, want32)
	}
}

func TestTransformNumeric(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, `fields:
  - {name: p, kind: numeric, transform: log1p}
  - {name: s, kind: numeric, transform: standardize, missing_indicator: false, side: candidate}
  - {name: n, kind: numeric, default: 7}
  - {name: z, kind: numeric, transform: standardize}
`+noLabel)
	inf, nan := math.Inf(1), math.NaN()
	st := fitStats(t, spec, features.FitConfig{}, record(t, mem,
		col{"p", f64, vals[any](1.0, 2.0)},
		col{"s", i64, vals[any](2, 6)},
		col{"n", f32, vals[any](1.0, 2.0)},
		col{"z", i32, vals[any](3, 3)},
	))
	if ns := st.Fields["s"].Numeric; ns.Mean != 4 || ns.Std != 2 || ns.Min != 2 || ns.Max != 6 {
		t.Errorf("s stats %+v", ns)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	lay := tr.Layout()
	wantDense := []features.DenseField{{Name: "p"}, {Name: "p.missing"}, {Name: "s", Side: features.SideCandidate}, {Name: "n"}, {Name: "n.missing"}, {Name: "z"}, {Name: "z.missing"}}
	if !reflect.DeepEqual(lay.Dense, wantDense) || len(lay.Sparse) != 0 {
		t.Fatalf("dense layout %+v", lay.Dense)
	}
	b := transform(t, tr, record(t, mem,
		col{"p", f64, vals[any](math.E-1, -(math.E - 1), nil, nan, inf, 0.0)},
		col{"s", f64, vals[any](8.0, nil, -inf, 4.0, nan, 0.0)},
		col{"n", boolean, vals[any](true, false, nil, true, true, false)},
		col{"z", i64, vals[any](3, 4, nil, 2, 3, 3)},
	))
	want := [][]float32{
		{1, 0, 2, 1, 0, 0, 0},
		{-1, 0, 0, 0, 0, 1, 0},
		{0, 1, 0, 7, 1, 0, 1},
		{0, 1, 0, 1, 0, -1, 0},
		{0, 1, 0, 1, 0, 0, 0},
		{0, 0, -2, 0, 0, 0, 0},
	}
	if b.DenseWidth != 7 || len(b.Dense) != 6*7 {
		t.Fatalf("dense width %d len %d", b.DenseWidth, len(b.Dense))
	}
	for r, w := range want {
		got := b.Dense[r*7 : r*7+7]
		for j := range w {
			if math.Abs(float64(got[j]-w[j])) > 1e-6 {
				t.Errorf("row %d: dense %v, want %v", r, got, w)
				break
			}
		}
	}
}

func TestTransformBucketize(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, "fields: [{name: age, kind: numeric, transform: bucketize, buckets: 4}]\n"+noLabel)
	ages := make([]any, 0, 101)
	for i := 0; i < 100; i++ {
		ages = append(ages, float64(i))
	}
	ages = append(ages, nil)
	st := fitStats(t, spec, features.FitConfig{Seed: 1}, record(t, mem, col{"age", f64, ages}))
	fs := st.Fields["age"]
	if !reflect.DeepEqual(fs.Boundaries, []float64{25, 50, 75}) || fs.Sampled != 100 || fs.Nulls != 1 {
		t.Fatalf("boundaries %v sampled %d nulls %d", fs.Boundaries, fs.Sampled, fs.Nulls)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if c := tr.Layout().Sparse[0].Cardinality; c != 5 {
		t.Errorf("cardinality %d, want 5", c)
	}
	b := transform(t, tr, record(t, mem, col{"age", f64, vals[any](-5.0, 24.9, 25.0, 49.0, 50.0, 75.0, 1e9, nil, math.NaN(), math.Inf(-1), math.Inf(1))}))
	if want := []int32{1, 1, 2, 2, 3, 4, 4, 0, 0, 1, 4}; !reflect.DeepEqual(b.Sparse[0].IDs, want) {
		t.Errorf("bucket ids %v, want %v", b.Sparse[0].IDs, want)
	}

	// Heavy ties collapse boundaries; the reservoir keeps at most QuantileSample values.
	many := append(repeat(0.0, 900), repeat(1.0, 100)...)
	st = fitStats(t, spec, features.FitConfig{Seed: 3, QuantileSample: 50}, record(t, mem, col{"age", f64, many}))
	if fs := st.Fields["age"]; fs.Sampled != 50 || len(fs.Boundaries) > 1 {
		t.Errorf("ties: boundaries %v sampled %d", fs.Boundaries, fs.Sampled)
	}
}

func TestTransformMultiCategorical(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, `fields:
  - {name: tags, kind: multi_categorical, buckets: 50}
  - {name: ints, kind: multi_categorical, vocab: {}, pooling: sum}
`+noLabel)
	ltype := arrow.ListOf(utf8)
	litype := arrow.LargeListOf(i64)
	st := fitStats(t, spec, features.FitConfig{}, record(t, mem,
		col{"tags", ltype, vals[any]([]any{"a"}, nil)},
		col{"ints", litype, vals[any]([]any{10, 20, 20}, []any{30, nil})},
	))
	if v := st.Fields["ints"].Vocab.Values; !reflect.DeepEqual(v, []string{"20", "10", "30"}) {
		t.Errorf("list vocab %v", v)
	}
	if fs := st.Fields["tags"]; fs.Nulls != 1 || fs.Values != 1 {
		t.Errorf("tags stats %+v", fs)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	lay := tr.Layout()
	if lay.Sparse[0].Pooling != features.PoolMean || lay.Sparse[1].Pooling != features.PoolSum || lay.Sparse[0].Cardinality != 51 || lay.Sparse[1].Cardinality != 4 {
		t.Errorf("layout %+v", lay.Sparse)
	}
	b := transform(t, tr, record(t, mem,
		col{"tags", ltype, vals[any]([]any{"a", "b"}, []any{}, nil, []any{nil, "c"}, []any{"a"})},
		col{"ints", litype, vals[any]([]any{20}, nil, []any{}, []any{30, 99, 10}, []any{nil})},
	))
	h := func(s string) int32 { return wantHashID("tags", s, 50) }
	if got := b.Sparse[0]; !reflect.DeepEqual(got.IDs, []int32{h("a"), h("b"), h("c"), h("a")}) || !reflect.DeepEqual(got.Offsets, []int32{0, 2, 2, 2, 3, 4}) {
		t.Errorf("tags ids %v offsets %v", got.IDs, got.Offsets)
	}
	if got := b.Sparse[1]; !reflect.DeepEqual(got.IDs, []int32{1, 3, 0, 2}) || !reflect.DeepEqual(got.Offsets, []int32{0, 1, 1, 1, 4, 4}) {
		t.Errorf("ints ids %v offsets %v", got.IDs, got.Offsets)
	}
}

// String lists without null items take a fast path; it must agree with the
// formula and with the vocabulary.
func TestTransformMultiCategoricalNoNullItems(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, `fields:
  - {name: h, kind: multi_categorical, buckets: 97}
  - {name: v, kind: multi_categorical, vocab: {}}
`+noLabel)
	lt := arrow.ListOf(utf8)
	data := vals[any]([]any{"a", "b", "b"}, []any{}, nil, []any{"c"}, []any{"zz", "a"})
	st := fitStats(t, spec, features.FitConfig{}, record(t, mem, col{"h", lt, vals[any]([]any{"x"}, nil)}, col{"v", lt, vals[any]([]any{"b", "b", "a"}, []any{"c"})}))
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b := transform(t, tr, record(t, mem, col{"h", lt, data}, col{"v", lt, data}))
	h := func(s string) int32 { return wantHashID("h", s, 97) }
	wantOffs := []int32{0, 3, 3, 3, 4, 6}
	if got := b.Sparse[0]; !reflect.DeepEqual(got.IDs, []int32{h("a"), h("b"), h("b"), h("c"), h("zz"), h("a")}) || !reflect.DeepEqual(got.Offsets, wantOffs) {
		t.Errorf("hash ids %v offsets %v", got.IDs, got.Offsets)
	}
	// vocab: b=1 (count 2), a=2, c=3 (ties by value)
	if got := b.Sparse[1]; !reflect.DeepEqual(got.IDs, []int32{2, 1, 1, 3, 0, 2}) || !reflect.DeepEqual(got.Offsets, wantOffs) {
		t.Errorf("vocab ids %v offsets %v", got.IDs, got.Offsets)
	}
}

// Records sliced from a larger one (non-zero array offsets) read the right rows.
func TestTransformSlicedRecord(t *testing.T) {
	mem := checkedMem(t)
	tr := newTransformer(t, `fields:
  - {name: s, kind: categorical, buckets: 100}
  - {name: tags, kind: multi_categorical, buckets: 100}
  - {name: x, kind: numeric, missing_indicator: false}
tasks: [{name: ctr, kind: binary, label: click}]
group_key: s
`, nil, true)
	full := record(t, mem,
		col{"s", utf8, vals[any]("a", "b", nil, "d")},
		col{"tags", arrow.ListOf(utf8), vals[any]([]any{"x"}, []any{"y", "z"}, nil, []any{"w"})},
		col{"x", f64, vals[any](1.0, 2.0, 3.0, nil)},
		col{"click", boolean, vals[any](false, true, false, true)},
	)
	defer full.Release()
	b := transform(t, tr, full.NewSlice(1, 4))
	h := func(f, s string) int32 { return wantHashID(f, s, 100) }
	if !reflect.DeepEqual(b.Sparse[0].IDs, []int32{h("s", "b"), 0, h("s", "d")}) {
		t.Errorf("s ids %v", b.Sparse[0].IDs)
	}
	if !reflect.DeepEqual(b.Sparse[1].IDs, []int32{h("tags", "y"), h("tags", "z"), h("tags", "w")}) || !reflect.DeepEqual(b.Sparse[1].Offsets, []int32{0, 2, 2, 3}) {
		t.Errorf("tags ids %v offsets %v", b.Sparse[1].IDs, b.Sparse[1].Offsets)
	}
	if !reflect.DeepEqual(b.Dense, []float32{2, 3, 0}) || !reflect.DeepEqual(b.Labels, [][]float32{{1, 0, 1}}) {
		t.Errorf("dense %v labels %v", b.Dense, b.Labels)
	}
	if b.Groups[1] != 0 || b.Groups[0] != features.HashText("b", features.FieldSeed("s")) {
		t.Errorf("groups %v", b.Groups)
	}
}

func TestTransformLabelsGroupsWeights(t *testing.T) {
	mem := checkedMem(t)
	spec := `fields: [{name: x, kind: numeric, missing_indicator: false}]
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conv, parent: ctr}
  - {name: dwell, kind: regression, label: dwell}
group_key: user
sample_weight: w
`
	tr := newTransformer(t, spec, nil, true)
	if lay := tr.Layout(); !reflect.DeepEqual(lay.Labels, []string{"click", "conv", "dwell"}) {
		t.Fatalf("labels layout %v", lay.Labels)
	}
	good := func(click, conv, dwell, w, user col) arrow.RecordBatch {
		return record(t, mem, col{"x", f64, vals[any](1.0, 2.0, 3.0)}, click, conv, dwell, w, user)
	}
	b := transform(t, tr, good(
		col{"click", boolean, vals[any](true, false, true)},
		col{"conv", i64, vals[any](1, 0, 0)},
		col{"dwell", f32, vals[any](1.5, 0.0, -2.0)},
		col{"w", i32, vals[any](1, 2, 0)},
		col{"user", i64, vals[any](42, 42, nil)},
	))
	wantLabels := [][]float32{{1, 0, 1}, {1, 0, 0}, {1.5, 0, -2}}
	if !reflect.DeepEqual(b.Labels, wantLabels) || !reflect.DeepEqual(b.Weights, []float32{1, 2, 0}) {
		t.Errorf("labels %v weights %v", b.Labels, b.Weights)
	}
	g := features.HashText("42", xxhash.Sum64String("user"))
	if !reflect.DeepEqual(b.Groups, []uint64{g, g, 0}) {
		t.Errorf("groups %v, want [%d %d 0]", b.Groups, g, g)
	}
	// The same group as a string (JSON) hashes alike.
	b2 := transform(t, tr, good(
		col{"click", f64, vals[any](1.0, 0.0, 1.0)},
		col{"conv", f64, vals[any](1.0, 0.0, 0.0)},
		col{"dwell", f64, vals[any](1.5, 0.0, -2.0)},
		col{"w", f64, vals[any](1.0, 2.0, 0.0)},
		col{"user", utf8, vals[any]("42", "42", nil)},
	))
	if !reflect.DeepEqual(b2.Groups, b.Groups) || !reflect.DeepEqual(b2.Labels, wantLabels) {
		t.Errorf("JSON-typed record: groups %v labels %v", b2.Groups, b2.Labels)
	}

	okClick := col{"click", boolean, vals[any](true, false, true)}
	okConv := col{"conv", i64, vals[any](1, 0, 0)}
	okDwell := col{"dwell", f64, vals[any](1.0, 2.0, 3.0)}
	okW := col{"w", f64, vals[any](1.0, 1.0, 1.0)}
	okUser := col{"user", utf8, vals[any]("a", "b", "c")}
	for _, tc := range []struct {
		name string
		rec  arrow.RecordBatch
		want string
		kind error
	}{
		{"binary 2", good(okClick, col{"conv", i64, vals[any](0, 2, 0)}, okDwell, okW, okUser), `features: column "conv": row 1: binary label must be 0 or 1, found 2`, features.ErrValue},
		{"binary 0.5", good(col{"click", f64, vals[any](0.0, 1.0, 0.5)}, okConv, okDwell, okW, okUser), `column "click": row 2: binary label must be 0 or 1, found 0.5`, features.ErrValue},
		{"null label", good(col{"click", boolean, vals[any](true, nil, true)}, okConv, okDwell, okW, okUser), `column "click": row 1: null label`, features.ErrValue},
		{"null int label", good(okClick, col{"conv", i64, vals[any](nil, 1, 0)}, okDwell, okW, okUser), `column "conv": row 0: null label`, features.ErrValue},
		{"nan regression", good(okClick, okConv, col{"dwell", f64, vals[any](1.0, math.NaN(), 3.0)}, okW, okUser), `column "dwell": row 1: regression label must be finite`, features.ErrValue},
		{"null weight", good(okClick, okConv, okDwell, col{"w", f64, vals[any](1.0, 1.0, nil)}, okUser), `column "w": row 2: null sample weight`, features.ErrValue},
		{"negative weight", good(okClick, okConv, okDwell, col{"w", f64, vals[any](-1.0, 1.0, 1.0)}, okUser), `column "w": row 0: sample weight must be finite and >= 0`, features.ErrValue},
		{"label type", good(okClick, col{"conv", utf8, vals[any]("1", "0", "0")}, okDwell, okW, okUser), `features: column "conv": want label numeric (int32, int64, float, double, bool), found utf8`, features.ErrSchema},
		{"group type", good(okClick, okConv, okDwell, okW, col{"user", f64, vals[any](1.0, 1.0, 1.0)}), "", nil},
		{"missing label", record(t, mem, col{"x", f64, vals[any](1.0)}, col{"click", boolean, vals[any](true)}), `features: column "conv": missing from the record`, features.ErrSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b features.Batch
			err := tr.TransformTo(&b, tc.rec)
			tc.rec.Release()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.kind) {
				t.Errorf("error %v, want %q wrapping %v", err, tc.want, tc.kind)
			}
		})
	}

	// Without Labels the label columns are neither needed nor read.
	serve := newTransformer(t, spec, nil, false)
	b3 := transform(t, serve, record(t, mem, col{"x", f64, vals[any](1.0)}, col{"w", f64, vals[any](1.0)}, col{"user", utf8, vals[any]("u")}))
	if b3.Labels != nil || serve.Layout().Labels != nil {
		t.Errorf("serving batch has labels %v", b3.Labels)
	}
}

func TestTransformSchemaErrors(t *testing.T) {
	mem := checkedMem(t)
	tr := newTransformer(t, `fields:
  - {name: cat, kind: categorical, buckets: 10}
  - {name: tags, kind: multi_categorical, buckets: 10}
  - {name: price, kind: numeric}
`+noLabel, nil, false)
	okCat := col{"cat", utf8, vals[any]("a")}
	okTags := col{"tags", arrow.ListOf(utf8), vals[any]([]any{"a"})}
	okPrice := col{"price", f64, vals[any](1.0)}
	for _, tc := range []struct {
		name string
		cols []col
		want string
	}{
		{"price utf8", []col{okCat, okTags, {"price", utf8, vals[any]("1")}}, `features: column "price": want numeric (int32, int64, float, double, bool), found utf8`},
		{"cat float", []col{{"cat", f64, vals[any](1.0)}, okTags, okPrice}, `features: column "cat": want categorical (utf8, large_utf8, dictionary<int, utf8>, int32, int64, uint32, uint64, bool), found float64`},
		{"tags not a list", []col{okCat, {"tags", utf8, vals[any]("a")}, okPrice}, `features: column "tags": want multi_categorical`},
		{"tags list of float", []col{okCat, {"tags", arrow.ListOf(f64), vals[any]([]any{1.0})}, okPrice}, `found list<item: float64, nullable>`},
		{"missing price", []col{okCat, okTags}, `features: column "price": missing from the record`},
		{"missing cat", []col{okTags, okPrice}, `features: column "cat": missing from the record`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := record(t, mem, tc.cols...)
			defer rec.Release()
			var b features.Batch
			err := tr.TransformTo(&b, rec)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, features.ErrSchema) {
				t.Errorf("error %v, want %q wrapping ErrSchema", err, tc.want)
			}
		})
	}
}

func TestNewTransformerNeedsStats(t *testing.T) {
	for _, tc := range []struct{ field, want string }{
		{"{name: c, kind: categorical, vocab: {}}", `features: field "c": a vocabulary needs fitted stats`},
		{"{name: c, kind: multi_categorical, vocab: {}}", `features: field "c": a vocabulary needs fitted stats`},
		{"{name: x, kind: numeric, transform: standardize}", `features: field "x": standardize needs fitted stats`},
		{"{name: x, kind: numeric, transform: bucketize, buckets: 3}", `features: field "x": bucketize needs fitted stats`},
	} {
		spec := mustParse(t, "fields: ["+tc.field+"]\n"+noLabel)
		for _, st := range []*features.Stats{nil, {Fields: map[string]*features.FieldStats{}}} {
			_, err := features.NewTransformer(spec, st, features.TransformerConfig{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, features.ErrStats) {
				t.Errorf("%s: error %v, want %q", tc.field, err, tc.want)
			}
		}
	}
	// Stats of the wrong kind, or without the needed part.
	spec := mustParse(t, "fields: [{name: x, kind: numeric, transform: bucketize, buckets: 3}]\n"+noLabel)
	for _, fs := range []*features.FieldStats{{Kind: features.Categorical}, {Kind: features.Numeric}, {Kind: features.Numeric, Boundaries: []float64{1, 2, 3}}} {
		if _, err := features.NewTransformer(spec, &features.Stats{Fields: map[string]*features.FieldStats{"x": fs}}, features.TransformerConfig{}); !errors.Is(err, features.ErrStats) {
			t.Errorf("stats %+v: error %v", fs, err)
		}
	}
	if _, err := features.NewTransformer(&features.Spec{}, nil, features.TransformerConfig{}); !errors.Is(err, features.ErrSpec) {
		t.Errorf("empty spec: %v", err)
	}
}

// One Transformer, many goroutines, each with its own Batch (run with -race).
func TestTransformConcurrent(t *testing.T) {
	mem := checkedMem(t)
	tr := newTransformer(t, benchSpec, benchStats(t), true)
	rec := benchRecord(t, mem, 512, 1)
	defer rec.Release()
	var ref features.Batch
	if err := tr.TransformTo(&ref, rec); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for g := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b features.Batch
			for range 5 {
				if err := tr.TransformTo(&b, rec); err != nil {
					errs[g] = err
					return
				}
				if !reflect.DeepEqual(&b, &ref) {
					errs[g] = errors.New("batch differs from the reference")
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestTransformDictionaryStrings: dictionary-encoded strings, whose
// dictionary values TransformTo hashes or looks up once per batch, give
// the batch that plain strings give, row by row: hash and vocabulary
// fields, the group key's hashes, null rows, dictionary values repeated
// or unused, int32 indices (Parquet's) and others, and a sliced record.
func TestTransformDictionaryStrings(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, "fields:\n  - {name: h, kind: categorical, buckets: 37}\n  - {name: v, kind: categorical, vocab: {}}\ngroup_key: h\n"+noLabel)
	rows := []any{"a", "b", nil, "c", "a", "zz", "b", nil, "a", "d", "c", "c"}
	st := fitStats(t, spec, features.FitConfig{}, record(t, mem, col{"h", utf8, rows}, col{"v", utf8, rows}))
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := transform(t, tr, record(t, mem, col{"h", utf8, rows}, col{"v", utf8, rows}))

	// dictRecord builds both columns with indices of type idx over a
	// dictionary with a repeated and an unused value, "b" at two places.
	dictValues := []string{"c", "b", "unused", "a", "zz", "d", "b"}
	dictRecord := func(idx arrow.DataType) arrow.RecordBatch {
		dt := &arrow.DictionaryType{IndexType: idx, ValueType: utf8}
		sb := array.NewStringBuilder(mem)
		sb.AppendValues(dictValues, nil)
		dict := sb.NewArray()
		sb.Release()
		defer dict.Release()
		ib := array.NewBuilder(mem, idx)
		for i, v := range rows {
			if v == nil {
				ib.AppendNull()
				continue
			}
			k := slices.Index(dictValues, v.(string))
			if v == "b" && i%2 == 0 {
				k = len(dictValues) - 1
			}
			switch ib := ib.(type) {
			case *array.Int32Builder:
				ib.Append(int32(k))
			case *array.Int8Builder:
				ib.Append(int8(k))
			}
		}
		ix := ib.NewArray()
		ib.Release()
		defer ix.Release()
		a := array.NewDictionaryArray(dt, ix, dict)
		defer a.Release()
		schema := arrow.NewSchema([]arrow.Field{{Name: "h", Type: dt, Nullable: true}, {Name: "v", Type: dt, Nullable: true}}, nil)
		return array.NewRecordBatch(schema, []arrow.Array{a, a}, int64(len(rows)))
	}
	same := func(what string, got, want *features.Batch) {
		t.Helper()
		for i := range want.Sparse {
			if !reflect.DeepEqual(got.Sparse[i].IDs, want.Sparse[i].IDs) {
				t.Errorf("%s: field %d ids %v, plain strings give %v", what, i, got.Sparse[i].IDs, want.Sparse[i].IDs)
			}
		}
		if !reflect.DeepEqual(got.Groups, want.Groups) {
			t.Errorf("%s: groups %v, plain strings give %v", what, got.Groups, want.Groups)
		}
	}
	for _, idx := range []arrow.DataType{arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int8} {
		rec := dictRecord(idx)
		same(idx.String()+" indices", transform(t, tr, rec), want)
	}
	rec0 := dictRecord(arrow.PrimitiveTypes.Int32)
	defer rec0.Release()
	var b features.Batch
	if a := testing.AllocsPerRun(10, func() {
		if err := tr.TransformTo(&b, rec0); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("TransformTo of dictionary columns allocates %v times per call in steady state, want 0", a)
	}

	// A slice of the record (offset 3): rows 3..10 of the plain batch.
	rec := dictRecord(arrow.PrimitiveTypes.Int32)
	sl := rec.NewSlice(3, 11)
	rec.Release()
	var part features.Batch
	want.SliceTo(&part, 3, 11)
	same("slice", transform(t, tr, sl), &part)
}

// TestTransformDictionaryLists: lists of dictionary-encoded strings (as
// ingest's Dictionary reads string lists), whose dictionary values
// TransformTo hashes or looks up once per batch, give the ids and offsets
// that lists of plain strings give: hash and vocabulary fields, null
// lists, empty lists, null elements (dropped) or none, no null list at
// all (one run of items), int32 indices (Parquet's) and int16, and a
// sliced record.
func TestTransformDictionaryLists(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, `fields:
  - {name: h, kind: multi_categorical, buckets: 41}
  - {name: v, kind: multi_categorical, vocab: {}}
`+noLabel)
	lt := arrow.ListOf(utf8)
	withNulls := vals[any]([]any{"a", "b", "b"}, []any{}, nil, []any{nil, "c"}, []any{"zz", "a"}, []any{"d", nil, nil}, nil, []any{"b"})
	noNulls := vals[any]([]any{"a", "b", "b"}, []any{}, nil, []any{"c"}, []any{"zz", "a"}, []any{"d"}, nil, []any{"b"})
	noNullLists := vals[any]([]any{"a", "b", "b"}, []any{}, []any{"c"}, []any{"zz", "a"}, []any{"d"}, []any{}, []any{"b"}, []any{"a"})
	st := fitStats(t, spec, features.FitConfig{}, record(t, mem, col{"h", lt, vals[any]([]any{"x"})}, col{"v", lt, vals[any]([]any{"b", "b", "a", "c"})}))
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]any{withNulls, noNulls, noNullLists} {
		want := transform(t, tr, record(t, mem, col{"h", lt, data}, col{"v", lt, data}))
		for _, idx := range []arrow.DataType{arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int16} {
			dlt := arrow.ListOf(&arrow.DictionaryType{IndexType: idx, ValueType: utf8})
			rec := record(t, mem, col{"h", dlt, data}, col{"v", dlt, data})
			sl := rec.NewSlice(2, 7)
			got := transform(t, tr, rec)
			var part features.Batch
			want.SliceTo(&part, 2, 7)
			gotPart := transform(t, tr, sl)
			for i := range want.Sparse {
				for _, c := range []struct {
					what      string
					got, want features.SparseColumn
				}{{"batch", got.Sparse[i], want.Sparse[i]}, {"slice", gotPart.Sparse[i], part.Sparse[i]}} {
					// SliceTo keeps the offsets of the whole batch.
					wantIDs := c.want.IDs[c.want.Offsets[0]:c.want.Offsets[len(c.want.Offsets)-1]]
					wantOffs := make([]int32, len(c.want.Offsets))
					for r, o := range c.want.Offsets {
						wantOffs[r] = o - c.want.Offsets[0]
					}
					if !reflect.DeepEqual(c.got.IDs, wantIDs) || !reflect.DeepEqual(c.got.Offsets, wantOffs) {
						t.Errorf("%s indices, %s: field %d ids %v offsets %v, plain strings give %v %v", idx, c.what, i, c.got.IDs, c.got.Offsets, wantIDs, wantOffs)
					}
				}
			}
		}
	}
}
