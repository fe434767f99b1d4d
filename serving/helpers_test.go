package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// testSpec covers every field kind and transform, on both sides, plus a
// group key and a sample weight (which serving must ignore).
const testSpec = `fields:
  - {name: user_id, kind: categorical, buckets: 1000}
  - {name: device, kind: categorical, vocab: {min_count: 1}}
  - {name: user_tags, kind: multi_categorical, buckets: 100}
  - {name: age, kind: numeric, transform: standardize}
  - {name: hour, kind: numeric, transform: bucketize, buckets: 6}
  - {name: item_id, kind: categorical, buckets: 1000, side: candidate}
  - {name: category, kind: categorical, vocab: {min_count: 1}, side: candidate}
  - {name: price, kind: numeric, transform: log1p, side: candidate}
  - {name: item_tags, kind: multi_categorical, buckets: 100, pooling: sum, side: candidate}
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conv, parent: ctr}
group_key: user_id
sample_weight: w
`

var testDevices = []string{"ios", "android", "web"}
var testCategories = []string{"shoes", "books", "toys", "food"}

// testEvent returns a random training event (with labels) as JSON.
func testEvent(r *rand.Rand) map[string]any {
	tags := []any{}
	for range r.IntN(3) {
		tags = append(tags, fmt.Sprintf("t%d", r.IntN(20)))
	}
	itags := []any{}
	for range r.IntN(3) {
		itags = append(itags, fmt.Sprintf("i%d", r.IntN(20)))
	}
	click := float64(r.IntN(2))
	return map[string]any{
		"user_id":   r.IntN(500),
		"device":    testDevices[r.IntN(len(testDevices))],
		"user_tags": tags,
		"age":       18 + r.Float64()*50,
		"hour":      float64(r.IntN(24)),
		"item_id":   fmt.Sprintf("item-%d", r.IntN(300)),
		"category":  testCategories[r.IntN(len(testCategories))],
		"price":     r.Float64() * 100,
		"item_tags": itags,
		"click":     click,
		"conv":      click * float64(r.IntN(2)),
		"w":         1.0,
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testManifest fits stats on random events and returns a manifest and a
// randomly initialised model for it, with nSample sample events.
func testManifest(t testing.TB, seed uint64, nSample int) (*bundle.Manifest, *mmoe.Model) {
	t.Helper()
	spec, err := features.ParseSpec(strings.NewReader(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	dec, err := features.NewJSONDecoder(spec.Schema(true), features.JSONConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	for range 200 {
		if err := dec.Append(mustJSON(t, testEvent(r))); err != nil {
			t.Fatal(err)
		}
	}
	rec := dec.NewRecordBatch()
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
	tasks := []mtl.TaskConfig{{Name: "ctr", Kind: "binary", Label: "click"}, {Name: "cvr", Kind: "esmm", Label: "conv", Parent: "ctr"}}
	ts, err := mtl.NewTaskSet(tasks)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, stats, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := mmoe.Config{EmbeddingDim: 4, Experts: 3, ExpertHidden: []int{16, 8}, Tower: []int{4}, Seed: seed}
	model, err := mmoe.New(cfg, tr.Layout(), []string{"ctr", "cvr"})
	if err != nil {
		t.Fatal(err)
	}
	m := &bundle.Manifest{
		Spec:       testSpec,
		Stats:      mustJSON(t, stats),
		Model:      model.Config(),
		Tasks:      ts.Configs(),
		Objectives: ts.Objectives(),
	}
	for range nSample {
		m.Sample = append(m.Sample, bundle.SampleEvent{Event: mustJSON(t, testEvent(r))})
	}
	return m, model
}

// writeTestBundle writes a bundle under root and returns its directory.
func writeTestBundle(t testing.TB, root string, seed uint64) string {
	t.Helper()
	m, model := testManifest(t, seed, 8)
	if err := FillSampleScores(m, model, nil); err != nil {
		t.Fatal(err)
	}
	d := bundle.NewDir(root)
	v, err := bundle.Write(context.Background(), d, m, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d.Path(v)
}

// testRequest builds a request body with n candidates.
func testRequest(t testing.TB, r *rand.Rand, n int, extra string) []byte {
	t.Helper()
	var b bytes.Buffer
	ev := testEvent(r)
	ctx := map[string]any{"user_id": ev["user_id"], "device": ev["device"], "user_tags": ev["user_tags"], "age": ev["age"], "hour": ev["hour"]}
	b.WriteString(`{"context":`)
	b.Write(mustJSON(t, ctx))
	b.WriteString(`,"candidates":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		ev := testEvent(r)
		c := map[string]any{"item_id": ev["item_id"], "category": ev["category"], "price": ev["price"], "item_tags": ev["item_tags"]}
		b.Write(mustJSON(t, c))
	}
	b.WriteString(`]`)
	b.WriteString(extra)
	b.WriteString(`}`)
	return b.Bytes()
}
