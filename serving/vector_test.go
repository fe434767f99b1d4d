package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// vectorSpec has a user vector on the context side and an item vector on
// the candidate side.
const vectorSpec = `fields:
  - {name: user_id, kind: categorical, buckets: 1000}
  - {name: uemb, kind: vector, dim: 3, normalize: per_dim}
  - {name: item_id, kind: categorical, buckets: 1000, side: candidate}
  - {name: iemb, kind: vector, dim: 4, normalize: global, side: candidate}
  - {name: price, kind: numeric, side: candidate}
tasks:
  - {name: ctr, kind: binary, label: click}
`

// vecRow is one event of vectorSpec; a nil vector is null.
type vecRow struct {
	user  int64
	uemb  []float64
	item  string
	iemb  []float32
	price float64
}

func randVecRow(r *rand.Rand) vecRow {
	row := vecRow{user: int64(r.IntN(500)), item: fmt.Sprintf("item-%d", r.IntN(300)), price: r.Float64() * 100}
	if r.IntN(10) > 0 {
		row.uemb = []float64{r.NormFloat64(), 3 + 2*r.NormFloat64(), r.Float64()}
	}
	if r.IntN(10) > 0 {
		row.iemb = []float32{float32(r.NormFloat64()), float32(r.NormFloat64() * 0.1), float32(r.Float64()), -1}
	}
	return row
}

// vecRecord builds the rows as Parquet would give them: int64 ids, the
// user vector as list<double>, the item vector as fixed_size_list<float, 4>,
// and a click column when clicks is not nil.
func vecRecord(mem memory.Allocator, rows []vecRow, clicks []int64) arrow.RecordBatch {
	fields := []arrow.Field{
		{Name: "user_id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "uemb", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64), Nullable: true},
		{Name: "item_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "iemb", Type: arrow.FixedSizeListOf(4, arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "price", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	}
	if clicks != nil {
		fields = append(fields, arrow.Field{Name: "click", Type: arrow.PrimitiveTypes.Int64})
	}
	rb := array.NewRecordBuilder(mem, arrow.NewSchema(fields, nil))
	defer rb.Release()
	for i, row := range rows {
		rb.Field(0).(*array.Int64Builder).Append(row.user)
		lb := rb.Field(1).(*array.ListBuilder)
		if row.uemb == nil {
			lb.AppendNull()
		} else {
			lb.Append(true)
			lb.ValueBuilder().(*array.Float64Builder).AppendValues(row.uemb, nil)
		}
		rb.Field(2).(*array.StringBuilder).Append(row.item)
		fb := rb.Field(3).(*array.FixedSizeListBuilder)
		if row.iemb == nil {
			fb.AppendNull()
		} else {
			fb.Append(true)
			fb.ValueBuilder().(*array.Float32Builder).AppendValues(row.iemb, nil)
		}
		rb.Field(4).(*array.Float64Builder).Append(row.price)
		if clicks != nil {
			rb.Field(5).(*array.Int64Builder).Append(clicks[i])
		}
	}
	return rb.NewRecordBatch()
}

// writeVectorBundle fits vectorSpec on random rows, writes a bundle of a
// randomly initialised model with sample events holding vectors, and
// returns the model.
func writeVectorBundle(t *testing.T, root string, seed uint64) *mmoe.Model {
	t.Helper()
	spec, err := features.ParseSpec(strings.NewReader(vectorSpec))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 2))
	rows := make([]vecRow, 300)
	clicks := make([]int64, len(rows))
	for i := range rows {
		rows[i], clicks[i] = randVecRow(r), int64(r.IntN(2))
	}
	rec := vecRecord(memory.DefaultAllocator, rows, clicks)
	defer rec.Release()
	ft, err := features.NewFitter(spec, features.FitConfig{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if err := ft.Add(rec); err != nil {
		t.Fatal(err)
	}
	stats, err := ft.Finish()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "ctr", Kind: "binary", Label: "click"}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, stats, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	model, err := mmoe.New(mmoe.Config{EmbeddingDim: 4, Experts: 3, ExpertHidden: []int{16, 8}, Tower: []int{4}, Seed: seed}, tr.Layout(), []string{"ctr"})
	if err != nil {
		t.Fatal(err)
	}
	m := &bundle.Manifest{Spec: vectorSpec, Stats: mustJSON(t, stats), Model: model.Config(), Tasks: ts.Configs(), Objectives: ts.Objectives()}
	// The sample: the first rows as JSON events, as a trainer writes them
	// from its Parquet data.
	feats := vecRecord(memory.DefaultAllocator, rows[:8], nil)
	defer feats.Release()
	enc, err := features.NewJSONEncoder(feats.Schema())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		m.Sample = append(m.Sample, bundle.SampleEvent{Event: enc.AppendRow(nil, feats, i)})
	}
	if err := FillSampleScores(m, model, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Write(context.Background(), bundle.NewDir(root), m, model, nil); err != nil {
		t.Fatal(err)
	}
	return model
}

// TestVectorScoring serves a bundle with a context and a candidate vector
// field (LoadBundle re-scores its sample events, which hold vectors):
// the scores of a request over HTTP equal, bit for bit, the offline
// scores of the same events in a typed record; a wrong length or type is
// a 400 naming the field.
func TestVectorScoring(t *testing.T) {
	root := t.TempDir()
	model := writeVectorBundle(t, root, 5)
	// The vectors are dense inputs: 3 + missing, 4 + missing, price +
	// missing after 2 embeddings of 4.
	if l := model.Layout(); len(l.Dense) != 3+1+4+1+2 || l.Dense[0].Name != "uemb[0]" || l.Dense[4].Name != "iemb[0]" || l.Dense[4].Side != features.SideCandidate {
		t.Fatalf("dense layout %+v", l.Dense)
	}
	srv, ts := newTestServer(t, root, ServerConfig{})
	sc := srv.Scorer()
	if sc == nil || sc.Bundle().SampleCheck == SampleNone {
		t.Fatal("no bundle loaded, or no sample checked")
	}

	r := rand.New(rand.NewPCG(9, 9))
	ctxRow := randVecRow(r)
	ctxRow.uemb = []float64{0.5, 2.75, 0.125}
	const n = 90
	rows := make([]vecRow, n)
	var cands []map[string]any
	for i := range rows {
		c := randVecRow(r)
		row := vecRow{user: ctxRow.user, uemb: ctxRow.uemb, item: c.item, iemb: c.iemb, price: c.price}
		cand := map[string]any{"item_id": c.item, "price": c.price}
		if c.iemb != nil {
			cand["iemb"] = jsonFloats32(c.iemb)
		}
		if i%30 == 7 { // a candidate with its own user vector
			row.uemb = []float64{-1, 0, 1e-3}
			cand["uemb"] = row.uemb
		}
		rows[i] = row
		cands = append(cands, cand)
	}
	rec := vecRecord(memory.DefaultAllocator, rows, nil)
	defer rec.Release()
	offline, err := sc.ScoreRecordTo(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := map[string]any{"user_id": ctxRow.user, "uemb": ctxRow.uemb}
	online := scoreHTTP(t, ts, map[string]any{"context": ctx, "candidates": cands})
	for i := range rows {
		if math.Float32bits(online[i]) != math.Float32bits(offline[0][i]) {
			t.Errorf("candidate %d: online %v, offline %v", i, online[i], offline[0][i])
		}
	}
	// Without the candidates that override the context (every part reads
	// the context's share once).
	var plain []map[string]any
	var plainRows []int
	for i, c := range cands {
		if _, own := c["uemb"]; !own {
			plain = append(plain, c)
			plainRows = append(plainRows, i)
		}
	}
	online = scoreHTTP(t, ts, map[string]any{"context": ctx, "candidates": plain})
	for k, i := range plainRows {
		if math.Float32bits(online[k]) != math.Float32bits(offline[0][i]) {
			t.Errorf("candidate %d (context only): online %v, offline %v", i, online[k], offline[0][i])
		}
	}

	for _, c := range []struct {
		body  string
		field string
		msg   string
	}{
		{`{"context":{"uemb":[1,2]},"candidates":[{"item_id":"a"}]}`, "context.uemb", "want a vector of 3 numbers, found 2"},
		{`{"candidates":[{"item_id":"a","iemb":[1,2,3,4]},{"iemb":[1,2,3,4]},{"iemb":[1,2,3,4,5]}]}`, "candidates[2].iemb", "want a vector of 4 numbers, found 5"},
		{`{"candidates":[{"item_id":"a"},{"iemb":[1,"2",3,4]}]}`, "candidates[1].iemb", "want array of numbers, found string"},
		{`{"candidates":[{"iemb":7}]}`, "candidates[0].iemb", "want array of numbers, found number"},
		// A candidate that does not decode comes before another's wrong
		// length, as when the part was decoded before its transform.
		{`{"candidates":[{"item_id":"a","iemb":[1]},{"iemb":7}]}`, "candidates[1].iemb", "want array of numbers, found number"},
		// A candidate that takes the context's vector names the context.
		{`{"context":{"uemb":[1]},"candidates":[{"item_id":"a","user_id":"x"}]}`, "context.uemb", "want a vector of 3 numbers, found 1"},
	} {
		code, b, _ := post(t, ts.Client(), ts.URL+"/v1/score", []byte(c.body))
		var e errorBody
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("%s: %d %s", c.body, code, b)
		}
		if code != 400 || e.Field != c.field || !strings.Contains(e.Error, c.msg) {
			t.Errorf("%s: %d %+v, want 400 naming %s: %s", c.body, code, e, c.field, c.msg)
		}
	}
	// Score in-process too: the error is a RequestError.
	_, err = sc.ScoreBody(context.Background(), []byte(`{"candidates":[{"iemb":[1]}]}`))
	var re *RequestError
	if !errors.As(err, &re) || re.Field != "candidates[0].iemb" || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("ScoreBody: %v", err)
	}
}

// jsonFloats32 writes float32s in their shortest text, as the score API's
// clients and the JSON encoder do.
func jsonFloats32(xs []float32) json.RawMessage {
	var b []byte
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, ']')
}

// scoreHTTP posts a request and returns the ctr score of each candidate,
// by index.
func scoreHTTP(t *testing.T, ts *httptest.Server, req map[string]any) []float32 {
	t.Helper()
	code, b, _ := post(t, ts.Client(), ts.URL+"/v1/score", mustJSON(t, req))
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var doc struct {
		Results []struct {
			Index  int                        `json:"index"`
			Scores map[string]json.RawMessage `json:"scores"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(doc.Results))
	for _, res := range doc.Results {
		v, err := strconv.ParseFloat(string(res.Scores["ctr"]), 32)
		if err != nil {
			t.Fatal(err)
		}
		out[res.Index] = float32(v)
	}
	return out
}
