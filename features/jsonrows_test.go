package features_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
)

// jsonRowsSpec has a field of every kind and mode a serving batch holds.
const jsonRowsSpec = `fields:
  - {name: u, kind: categorical, exact: {capacity: 40, shared: 3, max_id_bytes: 8}}
  - {name: dev, kind: categorical, buckets: 50}
  - {name: cat, kind: categorical, vocab: {min_count: 1}, side: candidate}
  - {name: tags, kind: multi_categorical, buckets: 30, pooling: mean, side: candidate}
  - {name: xtags, kind: multi_categorical, exact: {capacity: 10, shared: 2}, pooling: sum}
  - {name: vtags, kind: multi_categorical, vocab: {min_count: 1}, pooling: mean}
  - {name: age, kind: numeric, transform: standardize}
  - {name: price, kind: numeric, transform: log1p, default: 3, side: candidate}
  - {name: hour, kind: numeric, transform: bucketize, buckets: 4}
  - {name: n, kind: numeric, missing_indicator: false}
  - {name: emb, kind: vector, dim: 3, normalize: per_dim, side: candidate}
  - {name: uemb, kind: vector, dim: 2, missing_indicator: false}
tasks: [{name: ctr, kind: binary, label: click}]
`

// rowsValue returns a random JSON value for field f of jsonRowsSpec, or
// absent: nil values are JSON nulls.
func rowsValue(r *rand.Rand, f string) (v any, present bool) {
	switch r.IntN(8) {
	case 0:
		return nil, false
	case 1:
		return nil, true
	}
	text := func(pre string, n int) any {
		switch r.IntN(6) {
		case 0:
			return json.Number(fmt.Sprint(r.IntN(n) - 3)) // a number as text, "-0" too
		case 1:
			return []any{1.50, 2e3, -0.0, true, false}[r.IntN(5)]
		case 2:
			return pre + strings.Repeat("long", 1+r.IntN(4)) + fmt.Sprint(r.IntN(3)) // cut at max_id_bytes
		}
		return fmt.Sprintf("%s%d", pre, r.IntN(n))
	}
	list := func(pre string) any {
		items := make([]any, r.IntN(4))
		for i := range items {
			if r.IntN(6) == 0 {
				items[i] = nil
			} else {
				items[i] = text(pre, 15)
			}
		}
		return items
	}
	num := func() any {
		switch r.IntN(10) {
		case 0:
			return json.Number("1e39") // beyond float32: the default
		case 1:
			return json.Number("-4e38")
		case 2:
			return json.Number(fmt.Sprint(r.IntN(100)))
		case 3:
			return json.Number("-0")
		}
		return r.NormFloat64() * 20
	}
	vec := func(dim int) any {
		items := make([]any, dim)
		for i := range items {
			items[i] = r.NormFloat64()
			switch r.IntN(30) {
			case 0:
				items[i] = nil
			case 1:
				items[i] = json.Number("5e38")
			}
		}
		return items
	}
	switch f {
	case "u":
		return text("u", 60), true
	case "dev":
		return text("d", 20), true
	case "cat":
		return text("c", 8), true
	case "tags", "xtags", "vtags":
		return list(f[:1]), true
	case "emb":
		return vec(3), true
	case "uemb":
		return vec(2), true
	}
	return num(), true
}

var rowsFields = []string{"u", "dev", "cat", "tags", "xtags", "vtags", "age", "price", "hour", "n", "emb", "uemb"}

func rowsEvent(r *rand.Rand) map[string]any {
	ev := map[string]any{}
	for _, f := range rowsFields {
		if v, ok := rowsValue(r, f); ok {
			ev[f] = v
		}
	}
	return ev
}

// rowsEvents draws n events of rowsEvent.
func rowsEvents(r *rand.Rand, n int) []map[string]any {
	evs := make([]map[string]any, n)
	for i := range evs {
		evs[i] = rowsEvent(r)
	}
	return evs
}

func marshalEvents(t testing.TB, evs []map[string]any) [][]byte {
	t.Helper()
	out := make([][]byte, len(evs))
	for i, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// arrowRecord decodes events with JSONDecoder into one record.
func arrowRecord(t testing.TB, mem memory.Allocator, schema *arrow.Schema, events [][]byte) arrow.RecordBatch {
	t.Helper()
	dec, err := features.NewJSONDecoder(schema, features.JSONConfig{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	for i, e := range events {
		if err := dec.Append(e); err != nil {
			t.Fatalf("event %d %s: %v", i, e, err)
		}
	}
	return dec.NewRecordBatch()
}

// fitted returns evs without the values beyond float32's range, which
// the Fitter refuses.
func fitted(evs []map[string]any) []map[string]any {
	out := make([]map[string]any, len(evs))
	for i, ev := range evs {
		m := map[string]any{}
	fields:
		for f, v := range ev {
			switch v := v.(type) {
			case json.Number:
				if x, _ := v.Float64(); math.Abs(x) > math.MaxFloat32 {
					continue fields
				}
			case []any:
				for _, x := range v {
					if x, ok := x.(json.Number); ok && (f == "emb" || f == "uemb") {
						if x, _ := x.Float64(); math.Abs(x) > math.MaxFloat32 {
							continue fields
						}
					}
				}
			}
			m[f] = v
		}
		out[i] = m
	}
	return out
}

// rowsTransformer fits jsonRowsSpec's statistics on evs and admits the
// exact ids of their first half, so that some ids have own rows.
func rowsTransformer(t testing.TB, evs []map[string]any) (*features.Transformer, *arrow.Schema) {
	t.Helper()
	spec := mustParse(t, jsonRowsSpec)
	schema := spec.Schema(false)
	rec := arrowRecord(t, memory.DefaultAllocator, schema, marshalEvents(t, fitted(evs)))
	ft, err := features.NewFitter(spec, features.FitConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := ft.Add(rec); err != nil {
		t.Fatal(err)
	}
	st, err := ft.Finish()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	half := rec.NewSlice(0, rec.NumRows()/2)
	var b features.Batch
	err = tr.TransformTo(&b, half)
	half.Release()
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.IDs().Admit(&b); err != nil {
		t.Fatal(err)
	}
	return tr, schema
}

// sameBatch reports the first difference between two batches, bit for bit.
func sameBatch(a, b *features.Batch) error {
	if a.Rows != b.Rows || a.DenseWidth != b.DenseWidth || len(a.Sparse) != len(b.Sparse) {
		return fmt.Errorf("rows %d/%d, dense width %d/%d, %d/%d sparse fields", a.Rows, b.Rows, a.DenseWidth, b.DenseWidth, len(a.Sparse), len(b.Sparse))
	}
	for i := range a.Sparse {
		x, y := &a.Sparse[i], &b.Sparse[i]
		if !slices.Equal(x.IDs, y.IDs) || !slices.Equal(x.Offsets, y.Offsets) || !slices.Equal(x.Keys, y.Keys) ||
			(x.Offsets == nil) != (y.Offsets == nil) || (x.Keys == nil) != (y.Keys == nil) {
			return fmt.Errorf("sparse field %d: ids %v / %v, offsets %v / %v, keys %x / %x", i, x.IDs, y.IDs, x.Offsets, y.Offsets, x.Keys, y.Keys)
		}
	}
	if len(a.Dense) != len(b.Dense) {
		return fmt.Errorf("dense %d / %d values", len(a.Dense), len(b.Dense))
	}
	for k := range a.Dense {
		if math.Float32bits(a.Dense[k]) != math.Float32bits(b.Dense[k]) {
			return fmt.Errorf("dense row %d column %d: %v / %v", k/a.DenseWidth, k%a.DenseWidth, a.Dense[k], b.Dense[k])
		}
	}
	if a.Labels != nil || b.Labels != nil || a.Weights != nil || b.Weights != nil || a.Groups != nil || b.Groups != nil {
		return fmt.Errorf("labels, weights or groups in a serving batch")
	}
	return nil
}

// TestJSONRowsMatchesTransform: events decoded straight into a batch by
// JSONRows give the batch of JSONDecoder + TransformTo, bit for bit, for
// every kind of field (exact ids admitted and not, cut or not; hash and
// vocabulary ids; pooled lists with null items; dense transforms with
// defaults and missing indicators; vectors with null and out-of-range
// items), with nulls, absent keys and numbers as categorical text; and a
// context merged into the rows where they lack a value gives the batch of
// the merged events.
func TestJSONRowsMatchesTransform(t *testing.T) {
	mem := checkedMem(t)
	r := rand.New(rand.NewPCG(7, 7))
	evs := rowsEvents(r, 400)
	events := marshalEvents(t, evs)
	tr, schema := rowsTransformer(t, evs)
	rows, err := features.NewJSONRows(tr, schema, features.JSONConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got, want features.Batch
	for _, n := range []int{0, 1, 33, 400} { // batches of other sizes reuse got
		rec := arrowRecord(t, mem, schema, events[:n])
		err := tr.TransformTo(&want, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		rows.Reset(&got)
		for i, e := range events[:n] {
			if err := rows.Append(e); err != nil {
				t.Fatalf("event %d %s: %v", i, e, err)
			}
		}
		rows.Finish()
		if f, _ := rows.Fault(); f != nil {
			t.Fatal(f)
		}
		if err := sameBatch(&got, &want); err != nil {
			t.Fatalf("%d events: %v", n, err)
		}
		for c, f := range schema.Fields() {
			var nulls []int32
			for i, ev := range evs[:n] {
				if ev[f.Name] == nil {
					nulls = append(nulls, int32(i))
				}
			}
			if !slices.Equal(rows.Nulls(c), nulls) {
				t.Fatalf("%d events: column %s: nulls %v, want %v", n, f.Name, rows.Nulls(c), nulls)
			}
		}
	}

	// Contexts: each merged into 60 events, against the merged events.
	var ctxBatch features.Batch
	ctxRows, err := features.NewJSONRows(tr, schema, features.JSONConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range 8 {
		ctx := rowsEvent(r)
		cands := evs[k*40 : k*40+60]
		merged := make([]map[string]any, len(cands))
		for i, c := range cands {
			m := map[string]any{}
			for f, v := range ctx {
				m[f] = v
			}
			for f, v := range c {
				if v != nil {
					m[f] = v
				}
			}
			merged[i] = m
		}
		rec := arrowRecord(t, mem, schema, marshalEvents(t, merged))
		err := tr.TransformTo(&want, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		ctxRows.Reset(&ctxBatch)
		if e := marshalEvents(t, []map[string]any{ctx})[0]; ctxRows.Append(e) != nil {
			t.Fatalf("%s: %v", e, ctxRows.Append(e))
		}
		ctxRows.Finish()
		rows.Reset(&got)
		for _, e := range marshalEvents(t, cands) {
			if err := rows.Append(e); err != nil {
				t.Fatal(err)
			}
		}
		rows.Finish()
		for c := range schema.Fields() {
			if len(ctxRows.Nulls(c)) == 0 {
				rows.Merge(c, &ctxBatch, false)
			}
		}
		if err := sameBatch(&got, &want); err != nil {
			t.Fatalf("context %d %v: %v", k, ctx, err)
		}
	}
}

// TestJSONRowsDuplicateKeys: an event that repeats a key takes its last
// value, a null included, as JSONDecoder + TransformTo does, also when
// the events before it lack the column (Append fills those rows later).
func TestJSONRowsDuplicateKeys(t *testing.T) {
	mem := checkedMem(t)
	r := rand.New(rand.NewPCG(8, 8))
	evs := rowsEvents(r, 200)
	tr, schema := rowsTransformer(t, evs)
	var events [][]byte
	for i, e := range marshalEvents(t, evs) {
		// A first value of another event's, overridden by the event's own
		// (or left as the value when the event lacks the key), and a
		// last null that overrides the event's own.
		f := rowsFields[i%len(rowsFields)]
		g := rowsFields[(i*7+3)%len(rowsFields)]
		first, _ := json.Marshal(evs[(i+1)%len(evs)][f])
		e = append([]byte(`{"`+f+`":`+string(first)+`,`), e[1:]...)
		if i%3 == 0 {
			e = append(e[:len(e)-1], []byte(`,"`+g+`":null}`)...)
		}
		events = append(events, e)
	}
	rec := arrowRecord(t, mem, schema, events)
	var got, want features.Batch
	err := tr.TransformTo(&want, rec)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := features.NewJSONRows(tr, schema, features.JSONConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rows.Reset(&got)
	for i, e := range events {
		if err := rows.Append(e); err != nil {
			t.Fatalf("event %d %s: %v", i, e, err)
		}
	}
	rows.Finish()
	if err := sameBatch(&got, &want); err != nil {
		t.Fatal(err)
	}
}

// TestJSONRowsErrors: a rejected event is refused with JSONDecoder's
// error and adds no row; a vector of a wrong length is TransformTo's
// error (the first vector field's, then the first row), reported by Fault
// while the rows are still appended; a context's faulty vector merged
// into a row is reported as the context's.
func TestJSONRowsErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	evs := rowsEvents(r, 50)
	tr, schema := rowsTransformer(t, evs)
	rows, err := features.NewJSONRows(tr, schema, features.JSONConfig{MaxEventBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := features.NewJSONDecoder(schema, features.JSONConfig{MaxEventBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	var b features.Batch
	rows.Reset(&b)
	for _, e := range []string{
		`{"u": "a", "age": "12"}`, `{"age": 1e400}`, `{"tags": "x"}`, `{"emb": [1, "a", 3]}`,
		`{"u": {}}`, `{"u": "a",}`, `[1]`, `{"dev": "` + strings.Repeat("x", 200) + `"}`, ``,
	} {
		want := dec.Append([]byte(e))
		got := rows.Append([]byte(e))
		if want == nil || got == nil || got.Error() != want.Error() {
			t.Errorf("%s: error %v, want %v", e, got, want)
		}
	}
	if rows.Rows() != 0 {
		t.Fatalf("%d rows after rejected events", rows.Rows())
	}

	events := []string{`{"emb": [1, 2, 3]}`, `{"uemb": [1]}`, `{"emb": [1, 2]}`, `{}`, `{"emb": [1, 2, 3, 4]}`}
	rec := arrowRecord(t, memory.DefaultAllocator, schema, func() (out [][]byte) {
		for _, e := range events {
			out = append(out, []byte(e))
		}
		return out
	}())
	want := tr.TransformTo(&features.Batch{}, rec)
	rec.Release()
	rows.Reset(&b)
	for _, e := range events {
		if err := rows.Append([]byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	rows.Finish()
	got, fromCtx := rows.Fault()
	if want == nil || got == nil || got.Error() != want.Error() || fromCtx || b.Rows != len(events) {
		t.Fatalf("fault %v (from the context: %v), want %v; %d rows", got, fromCtx, want, b.Rows)
	}
	if !rows.Faulty(schema.FieldIndices("emb")[0]) || rows.Faulty(schema.FieldIndices("age")[0]) {
		t.Error("Faulty does not name the vector field")
	}

	// A faulty context vector merged into row 1, before the rows' own
	// fault at row 2.
	var ctx features.Batch
	ctxRows, _ := features.NewJSONRows(tr, schema, features.JSONConfig{})
	ctxRows.Reset(&ctx)
	if err := ctxRows.Append([]byte(`{"emb": [1]}`)); err != nil {
		t.Fatal(err)
	}
	ctxRows.Finish()
	emb := schema.FieldIndices("emb")[0]
	if !ctxRows.Faulty(emb) {
		t.Fatal("context's fault not reported")
	}
	rows.Reset(&b)
	for _, e := range []string{`{"emb": [1, 2, 3]}`, `{}`, `{"emb": [1]}`} {
		if err := rows.Append([]byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	rows.Finish()
	rows.Merge(emb, &ctx, true)
	if got, fromCtx := rows.Fault(); got == nil || got.Row != 1 || !fromCtx {
		t.Fatalf("fault %v from the context %v, want row 1 from the context", got, fromCtx)
	}
}

// TestJSONRowsSchema: NewJSONRows takes a serving transform and the
// column types of Spec.Schema(false) only.
func TestJSONRowsSchema(t *testing.T) {
	spec := mustParse(t, "fields:\n  - {name: a, kind: categorical, buckets: 5}\n  - {name: x, kind: numeric}\n"+noLabel)
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := features.NewJSONRows(tr, spec.Schema(false), features.JSONConfig{}); err != nil {
		t.Fatal(err)
	}
	withLabels, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tr     *features.Transformer
		schema *arrow.Schema
		want   string
	}{
		{withLabels, spec.Schema(true), "serving batches"},
		{tr, arrow.NewSchema([]arrow.Field{{Name: "a", Type: i64, Nullable: true}, {Name: "x", Type: f64, Nullable: true}}, nil), `column "a": JSONRows wants utf8, found int64`},
		{tr, arrow.NewSchema([]arrow.Field{{Name: "a", Type: utf8, Nullable: true}}, nil), `column "x": missing`},
	} {
		if _, err := features.NewJSONRows(c.tr, c.schema, features.JSONConfig{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}

// TestJSONRowsAllocs: once its batch has grown, decoding a batch of
// events allocates nothing.
func TestJSONRowsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := rand.New(rand.NewPCG(9, 9))
	evs := rowsEvents(r, 200)
	events := marshalEvents(t, evs)
	tr, schema := rowsTransformer(t, evs)
	rows, err := features.NewJSONRows(tr, schema, features.JSONConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var b, ctx features.Batch
	ctxRows, _ := features.NewJSONRows(tr, schema, features.JSONConfig{})
	ctxRows.Reset(&ctx)
	if err := ctxRows.Append(events[0]); err != nil {
		t.Fatal(err)
	}
	ctxRows.Finish()
	run := func() {
		rows.Reset(&b)
		for _, e := range events {
			if err := rows.Append(e); err != nil {
				t.Fatal(err)
			}
		}
		rows.Finish()
		for c := range schema.NumFields() {
			rows.Merge(c, &ctx, false)
		}
	}
	run()
	if n := testing.AllocsPerRun(20, run); n != 0 {
		t.Errorf("%v allocations per batch of %d events, want 0", n, len(events))
	}
}
