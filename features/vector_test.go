package features_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
)

func TestParseVectorField(t *testing.T) {
	s := mustParse(t, `fields:
  - {name: user_id, kind: categorical, buckets: 10}
  - {name: emb, kind: vector, dim: 4, normalize: per_dim, side: candidate}
  - {name: uemb, kind: vector, dim: 3, missing_indicator: false}
`+noLabel)
	f := s.Field("emb")
	if f.Kind != features.Vector || f.Dim != 4 || f.Normalize != features.NormalizePerDim || f.Side != features.SideCandidate || !f.MissingIndicator || f.Sparse() {
		t.Fatalf("emb: %+v", *f)
	}
	if u := s.Field("uemb"); u.Normalize != features.NormalizeNone || u.MissingIndicator {
		t.Fatalf("uemb: %+v", *u)
	}
	sch := s.Schema(false)
	if ty := sch.Field(sch.FieldIndices("emb")[0]).Type; !arrow.TypeEqual(ty, arrow.ListOf(arrow.PrimitiveTypes.Float64)) {
		t.Fatalf("schema type of emb: %s", ty)
	}

	for _, c := range []struct{ spec, want string }{
		{"  - {name: emb, kind: vector}", `spec line 2: field "emb": a vector field needs dim`},
		{"  - {name: emb, kind: vector, dim: 0}", `dim must be in [1, 65536], found 0`},
		{"  - {name: emb, kind: vector, dim: 70000}", `dim must be in [1, 65536], found 70000`},
		{"  - {name: emb, kind: vector, dim: x}", `dim: want an integer`},
		{"  - {name: emb, kind: vector, dim: 4, normalize: l2}", `unknown normalize "l2" (want none, per_dim or global)`},
		{"  - {name: emb, kind: vector, dim: 4, transform: log1p}", `key "transform" does not apply to a vector field`},
		{"  - {name: emb, kind: vector, dim: 4, buckets: 3}", `key "buckets" does not apply to a vector field`},
		{"  - {name: emb, kind: vector, dim: 4, default: 1}", `key "default" does not apply to a vector field`},
		{"  - {name: emb, kind: vector, dim: 4, exact: {capacity: 10}}", `key "exact" does not apply to a vector field`},
		{"  - {name: x, kind: numeric, dim: 4}", `key "dim" does not apply to a numeric field`},
		{"  - {name: x, kind: categorical, buckets: 3, normalize: global}", `key "normalize" does not apply to a categorical field`},
		{"  - {name: emb, kind: vectr, dim: 4}", `unknown kind "vectr" (want categorical, multi_categorical, numeric or vector)`},
	} {
		_, err := features.ParseSpec(strings.NewReader("fields:\n" + c.spec + "\n" + noLabel))
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, features.ErrSpec) {
			t.Errorf("%s: error %v, want one containing %q", c.spec, err, c.want)
		}
	}
	_, err := features.ParseSpec(strings.NewReader("fields:\n  - {name: emb, kind: vector, dim: 2}\ngroup_key: emb\n" + noLabel))
	if err == nil || !strings.Contains(err.Error(), `group_key "emb" is a vector field`) {
		t.Errorf("vector group key: %v", err)
	}
	// A spec built in code is validated the same way.
	bad := &features.Spec{Fields: []features.Field{{Name: "emb", Kind: features.Vector, Dim: 2, Transform: features.TransformLog1p}}, Tasks: s.Tasks}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "do not apply to vector fields") {
		t.Errorf("Validate of a vector with a transform: %v", err)
	}
	bad = &features.Spec{Fields: []features.Field{{Name: "x", Kind: features.Numeric, Transform: features.TransformNone, Dim: 2}}, Tasks: s.Tasks}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "dim and normalize apply to vector fields only") {
		t.Errorf("Validate of a numeric with a dim: %v", err)
	}
}

const vecSpec = `fields:
  - {name: user_id, kind: categorical, buckets: 100}
  - {name: a, kind: vector, dim: 3, normalize: per_dim}
  - {name: price, kind: numeric}
  - {name: b, kind: vector, dim: 3, normalize: global, side: candidate}
  - {name: c, kind: vector, dim: 3, missing_indicator: false}
tasks: [{name: ctr, kind: binary, label: click}]
`

// vecRows are the test vectors: rows of 3 items, nil for a null list.
var vecRows = [][]float64{
	{1, 2, 3},
	{-4.5, 0.25, 1e6},
	nil,
	{0.1, 0.2, 0.3},
	{7, -7, 7},
	{2.5, math.NaN(), 1}, // a NaN item: the vector is missing
}

func vecValues(rows [][]float64) []any {
	out := make([]any, len(rows))
	for i, r := range rows {
		if r != nil {
			out[i] = vals(r...)
		}
	}
	return out
}

func vecRecord(t testing.TB, mem memory.Allocator, item arrow.DataType, list func(arrow.DataType) arrow.DataType, rows [][]float64) arrow.RecordBatch {
	v := vecValues(rows)
	n := len(rows)
	users, prices, clicks := make([]any, n), make([]any, n), make([]any, n)
	for i := range n {
		users[i], prices[i], clicks[i] = "u", float64(i), i%2
	}
	return record(t, mem,
		col{"user_id", utf8, users},
		col{"a", list(item), v},
		col{"price", f64, prices},
		col{"b", list(item), v},
		col{"c", list(item), v},
		col{"click", i64, clicks},
	)
}

var vecLists = map[string]func(arrow.DataType) arrow.DataType{
	"list":            func(t arrow.DataType) arrow.DataType { return arrow.ListOf(t) },
	"large_list":      func(t arrow.DataType) arrow.DataType { return arrow.LargeListOf(t) },
	"fixed_size_list": func(t arrow.DataType) arrow.DataType { return arrow.FixedSizeListOf(3, t) },
}

// refStats computes the statistics of the present rows independently:
// two passes, float64, over the items rounded to float32.
func refStats(rows [][]float64) (mean, std []float64, gmean, gstd float64) {
	var ok [][]float64
	for _, r := range rows {
		if r == nil || math.IsNaN(r[0]+r[1]+r[2]) {
			continue
		}
		x := make([]float64, len(r))
		for j, v := range r {
			x[j] = float64(float32(v))
		}
		ok = append(ok, x)
	}
	mean, std = make([]float64, 3), make([]float64, 3)
	var all []float64
	for j := range 3 {
		for _, r := range ok {
			mean[j] += r[j] / float64(len(ok))
			all = append(all, r[j])
		}
		for _, r := range ok {
			std[j] += (r[j] - mean[j]) * (r[j] - mean[j]) / float64(len(ok))
		}
		std[j] = math.Sqrt(std[j])
	}
	for _, x := range all {
		gmean += x / float64(len(all))
	}
	for _, x := range all {
		gstd += (x - gmean) * (x - gmean) / float64(len(all))
	}
	return mean, std, gmean, math.Sqrt(gstd)
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*(1+math.Abs(b)) }

func TestVectorFitAndTransform(t *testing.T) {
	spec := mustParse(t, vecSpec)
	mean, std, gmean, gstd := refStats(vecRows)
	for _, item := range []arrow.DataType{f32, f64} {
		for lname, list := range vecLists {
			t.Run(lname+"<"+item.String()+">", func(t *testing.T) {
				mem := checkedMem(t)
				fit, err := features.NewFitter(spec, features.FitConfig{})
				if err != nil {
					t.Fatal(err)
				}
				rec := vecRecord(t, mem, item, list, vecRows)
				defer rec.Release()
				if err := fit.Add(rec); err != nil {
					t.Fatal(err)
				}
				st, err := fit.Finish()
				if err != nil {
					t.Fatal(err)
				}
				fs := st.Fields["a"]
				if fs.Kind != features.Vector || fs.Nulls != 2 || fs.Values != 4 || fs.Vector == nil || fs.Numeric == nil {
					t.Fatalf("stats of a: %+v", fs)
				}
				for j := range 3 {
					if !near(fs.Vector.Mean[j], mean[j]) || !near(fs.Vector.Std[j], std[j]) {
						t.Errorf("dim %d: mean %v std %v, want %v %v", j, fs.Vector.Mean[j], fs.Vector.Std[j], mean[j], std[j])
					}
				}
				if !near(fs.Numeric.Mean, gmean) || !near(fs.Numeric.Std, gstd) || fs.Numeric.Min != -7 || fs.Numeric.Max != 1e6 {
					t.Errorf("global %+v, want mean %v std %v min -7 max 1e6", *fs.Numeric, gmean, gstd)
				}
				// The stats file round-trips.
				path := filepath.Join(t.TempDir(), "s.stats.json")
				if err := st.Save(path); err != nil {
					t.Fatal(err)
				}
				if st, err = features.LoadStats(path); err != nil {
					t.Fatal(err)
				}

				tr, err := features.NewTransformer(spec, st, features.TransformerConfig{Labels: true})
				if err != nil {
					t.Fatal(err)
				}
				lay := tr.Layout()
				var names []string
				for _, d := range lay.Dense {
					names = append(names, d.Name)
				}
				wantNames := "a[0] a[1] a[2] a.missing price price.missing b[0] b[1] b[2] b.missing c[0] c[1] c[2]"
				if strings.Join(names, " ") != wantNames {
					t.Fatalf("dense layout %v, want %s", names, wantNames)
				}
				if lay.Dense[6].Side != features.SideCandidate || lay.Dense[9].Side != features.SideCandidate || lay.Dense[0].Side != features.SideContext {
					t.Fatalf("sides %+v", lay.Dense)
				}
				var b features.Batch
				if err := tr.TransformTo(&b, rec); err != nil {
					t.Fatal(err)
				}
				w := b.DenseWidth
				fsb := st.Fields["b"]
				for r, raw := range vecRows {
					row := b.Dense[r*w : (r+1)*w]
					missing := raw == nil || math.IsNaN(raw[1])
					for j := range 3 {
						var wa, wb, wc float32
						if !missing {
							x := float64(float32(raw[j]))
							wa = float32((x - fs.Vector.Mean[j]) / fs.Vector.Std[j])
							wb = float32((x - fsb.Numeric.Mean) / fsb.Numeric.Std)
							wc = float32(x)
						}
						if row[j] != wa || row[6+j] != wb || row[10+j] != wc {
							t.Errorf("row %d item %d: a %v b %v c %v, want %v %v %v", r, j, row[j], row[6+j], row[10+j], wa, wb, wc)
						}
					}
					wm := float32(0)
					if missing {
						wm = 1
					}
					if row[3] != wm || row[9] != wm || row[4] != float32(r) {
						t.Errorf("row %d: missing %v %v price %v, want %v", r, row[3], row[9], row[4], wm)
					}
				}
			})
		}
	}
}

func TestVectorNeedsStats(t *testing.T) {
	spec := mustParse(t, vecSpec)
	_, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err == nil || !errors.Is(err, features.ErrStats) || !strings.Contains(err.Error(), `field "a": normalize: per_dim needs fitted stats`) {
		t.Fatalf("no stats: %v", err)
	}
	st := &features.Stats{Fields: map[string]*features.FieldStats{
		"a": {Kind: features.Vector, Numeric: &features.NumericStats{Std: 1}, Vector: &features.VectorStats{Mean: []float64{0, 0}, Std: []float64{1, 1}}},
		"b": {Kind: features.Vector, Numeric: &features.NumericStats{Std: 1}},
	}}
	_, err = features.NewTransformer(spec, st, features.TransformerConfig{})
	if err == nil || !errors.Is(err, features.ErrStats) || !strings.Contains(err.Error(), "each of its 3 dimensions") {
		t.Fatalf("stats of 2 dimensions for 3: %v", err)
	}
	// Only normalize none: no stats needed.
	none := mustParse(t, "fields:\n  - {name: c, kind: vector, dim: 2}\n"+noLabel)
	if _, err := features.NewTransformer(none, nil, features.TransformerConfig{}); err != nil {
		t.Fatal(err)
	}
}

func TestVectorWrongLength(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, "fields:\n  - {name: c, kind: vector, dim: 3}\n  - {name: x, kind: numeric}\n"+noLabel)
	rows := [][]float64{{1, 2, 3}, {1, 2, 3}, {1, 2}, nil, {1, 2, 3, 4}}
	rec := record(t, mem,
		col{"c", arrow.ListOf(f32), vecValues(rows)},
		col{"x", f64, vals(1.0, 2.0, 3.0, 4.0, 1e300)},
		col{"click", i64, vals(0, 1, 0, 1, 0)},
	)
	defer rec.Release()
	good := record(t, mem, // x in range
		col{"c", arrow.ListOf(f32), vecValues(rows)},
		col{"x", f64, vals(1.0, 2.0, 3.0, 4.0, 5.0)},
		col{"click", i64, vals(0, 1, 0, 1, 0)},
	)
	defer good.Release()
	for _, labels := range []bool{true, false} {
		tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		var b features.Batch
		err = tr.TransformTo(&b, good)
		var re *features.RowError
		if !errors.As(err, &re) || re.Row != 2 || re.Column != "c" || re.Fault != features.FaultLength || !errors.Is(err, features.ErrValue) {
			t.Fatalf("labels %v: TransformTo error %v, want wrong_length at row 2", labels, err)
		}
		if want := `features: column "c": row 2: want a vector of 3 numbers, found 2`; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		// The checker finds every such row (and, in training, the numeric
		// out of range), the serving one the lengths only.
		var got []string
		n, err := tr.Checker().CheckRows(rec, func(e *features.RowError) { got = append(got, e.Column+":"+e.Fault) })
		if err != nil {
			t.Fatal(err)
		}
		want := "c:wrong_length c:wrong_length"
		if labels {
			want = "x:out_of_range c:wrong_length c:wrong_length"
		}
		if strings.Join(got, " ") != want || n != len(got) {
			t.Errorf("labels %v: checker found %d %v, want %s", labels, n, got, want)
		}
	}
	fit, err := features.NewFitter(spec, features.FitConfig{})
	if err != nil {
		t.Fatal(err)
	}
	err = fit.Add(rec)
	var re *features.RowError
	if !errors.As(err, &re) || re.Fault != features.FaultLength || re.Row != 2 {
		t.Fatalf("Fitter.Add: %v", err)
	}
	chk, err := features.NewChecker(spec, true)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := chk.CheckRows(rec, nil); n != 3 || err != nil {
		t.Errorf("NewChecker found %d faults (%v), want 3", n, err)
	}

	// A fixed_size_list of another size is the wrong type for the field.
	fixed := record(t, mem,
		col{"c", arrow.FixedSizeListOf(2, f32), vecValues([][]float64{{1, 2}})},
		col{"x", f64, vals(1.0)},
	)
	defer fixed.Release()
	tr, _ := features.NewTransformer(spec, nil, features.TransformerConfig{})
	var b features.Batch
	if err := tr.TransformTo(&b, fixed); !errors.Is(err, features.ErrSchema) || !strings.Contains(err.Error(), "want a vector of 3 numbers, found fixed_size_list") {
		t.Fatalf("fixed_size_list<2>: %v", err)
	}
	// So is a list of strings.
	strs := record(t, mem, col{"c", arrow.ListOf(utf8), vecValues(nil)}, col{"x", f64, nil})
	defer strs.Release()
	if err := tr.TransformTo(&b, strs); !errors.Is(err, features.ErrSchema) || !strings.Contains(err.Error(), "want vector (list, large_list or fixed_size_list of float or double), found list<item: utf8") {
		t.Fatalf("list<utf8>: %v", err)
	}
}

func TestVectorOutOfRange(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, "fields:\n  - {name: c, kind: vector, dim: 2, normalize: per_dim}\n"+noLabel)
	st := &features.Stats{Fields: map[string]*features.FieldStats{
		"c": {Kind: features.Vector, Vector: &features.VectorStats{Mean: []float64{0, 0}, Std: []float64{1, 1e-30}}},
	}}
	rows := [][]float64{{1, 0}, {1e300, 0}, {0, 1e10}}
	rec := record(t, mem, col{"c", arrow.ListOf(f64), vecValues(rows)}, col{"click", i64, vals(0, 1, 0)})
	defer rec.Release()
	strict, err := features.NewTransformer(spec, st, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if _, err := strict.Checker().CheckRows(rec, func(e *features.RowError) { got = append(got, e.Error()) }); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`features: column "c": row 1: item 0: 1e+300 is beyond float32's range`,
		`features: column "c": row 2: item 1: 1e+10 is beyond float32's range after its per_dim normalisation`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("faults\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var b features.Batch
	var re *features.RowError
	if err := strict.TransformTo(&b, rec); !errors.As(err, &re) || re.Fault != features.FaultRange || re.Row != 1 {
		t.Fatalf("strict TransformTo: %v", err)
	}
	// Serving: a missing vector.
	serve, _ := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err := serve.TransformTo(&b, rec); err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, 0, 0, 0, 0, 1, 0, 0, 1}; !equalF32(b.Dense, want) {
		t.Fatalf("dense %v, want %v", b.Dense, want)
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestVectorJSON: JSON events decoded with Spec.Schema give the same batch
// as typed records of float32 or float64 items; a slice of a record (an
// offset into its lists) gives the rows it holds.
func TestVectorJSON(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, vecSpec)
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([][]float64, 40)
	for i := range rows {
		if i%7 == 3 {
			continue // null
		}
		rows[i] = []float64{rng.NormFloat64(), rng.NormFloat64() * 100, float64(float32(rng.Float64()))}
	}
	fit, _ := features.NewFitter(spec, features.FitConfig{})
	rec64 := vecRecord(t, mem, f64, vecLists["list"], rows)
	defer rec64.Release()
	if err := fit.Add(rec64); err != nil {
		t.Fatal(err)
	}
	st, err := fit.Finish()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, item := range []arrow.DataType{f32, f64} {
		typed := vecRecord(t, mem, item, vecLists["fixed_size_list"], rows)
		// The events, as the Kafka producer and the bundle's sample write them.
		enc, err := features.NewJSONEncoder(typed.Schema())
		if err != nil {
			t.Fatal(err)
		}
		dec, err := features.NewJSONDecoder(spec.Schema(false), features.JSONConfig{Allocator: mem, Known: []string{"click"}})
		if err != nil {
			t.Fatal(err)
		}
		for r := range rows {
			if err := dec.Append(enc.AppendRow(nil, typed, r)); err != nil {
				t.Fatal(err)
			}
		}
		fromJSON := dec.NewRecordBatch()
		var want, got features.Batch
		if err := tr.TransformTo(&want, typed); err != nil {
			t.Fatal(err)
		}
		if err := tr.TransformTo(&got, fromJSON); err != nil {
			t.Fatal(err)
		}
		if !equalF32(got.Dense, want.Dense) {
			t.Errorf("%s: the JSON events transform to\n%v\nthe typed record to\n%v", item, got.Dense, want.Dense)
		}
		// A slice of the record: its rows.
		sl := typed.NewSlice(5, 17)
		var part features.Batch
		if err := tr.TransformTo(&part, sl); err != nil {
			t.Fatal(err)
		}
		w := want.DenseWidth
		if !equalF32(part.Dense, want.Dense[5*w:17*w]) {
			t.Errorf("%s: slice [5, 17) differs", item)
		}
		sl.Release()
		fromJSON.Release()
		typed.Release()
		dec.Release()
	}

	// Wrong JSON types.
	dec, err := features.NewJSONDecoder(spec.Schema(false), features.JSONConfig{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	for ev, want := range map[string]string{
		`{"a":[1,"2",3]}`: `features: field "a": want array of numbers, found string`,
		`{"a":3}`:         `features: field "a": want array of numbers, found number`,
		`{"a":[1,[2],3]}`: `features: field "a": want array of numbers, found array`,
		`{"a":[1e400]}`:   `features: field "a": want numbers in float64 range, found 1e400`,
	} {
		err := dec.Append([]byte(ev))
		if !errors.Is(err, features.ErrEventType) || err.Error() != want {
			t.Errorf("%s: %v, want %s", ev, err, want)
		}
	}
	if err := dec.Append([]byte(`{"a":[1,2,3,4],"b":null,"c":[null,1,2]}`)); err != nil {
		t.Fatal(err)
	}
	one := dec.NewRecordBatch()
	defer one.Release()
	var b features.Batch
	var re *features.RowError
	if err := tr.TransformTo(&b, one); !errors.As(err, &re) || re.Column != "a" || re.Fault != features.FaultLength {
		t.Fatalf("4 numbers for 3: %v", err)
	}
}

func TestVectorTransformAllocs(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, vecSpec)
	rows := make([][]float64, 256)
	for i := range rows {
		rows[i] = []float64{float64(i), float64(-i), 0.5}
	}
	rec := vecRecord(t, mem, f32, vecLists["list"], rows)
	defer rec.Release()
	fit, _ := features.NewFitter(spec, features.FitConfig{})
	if err := fit.Add(rec); err != nil {
		t.Fatal(err)
	}
	st, _ := fit.Finish()
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	var b features.Batch
	if a := testing.AllocsPerRun(20, func() {
		if err := tr.TransformTo(&b, rec); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("TransformTo with vector fields allocates %v times per call in steady state, want 0", a)
	}
	// The vector fields' checks add nothing to what CheckRows allocates
	// for the other fields (a count that varies under the race detector).
	if raceEnabled {
		return
	}
	plain, err := features.NewTransformer(mustParse(t, "fields:\n  - {name: price, kind: numeric}\n"+noLabel), nil, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	checkAllocs := func(c *features.Checker) float64 {
		return testing.AllocsPerRun(20, func() {
			if _, err := c.CheckRows(rec, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	if a, base := checkAllocs(tr.Checker()), checkAllocs(plain.Checker()); a != base {
		t.Errorf("CheckRows with vector fields allocates %v times per call, %v without", a, base)
	}
}
