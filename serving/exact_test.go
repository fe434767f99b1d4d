package serving

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// exactSpec has an exact user_id with a single default row (shared: 1)
// and an exact multi-categorical item_tags.
const exactSpec = `fields:
  - {name: user_id, kind: categorical, exact: {capacity: 8, shared: 1}}
  - {name: item_id, kind: categorical, buckets: 100, side: candidate}
  - {name: item_tags, kind: multi_categorical, exact: {capacity: 4, admit_after: 2}, side: candidate}
tasks:
  - {name: ctr, kind: binary, label: click}
`

// TestServeExactTables: a bundle with exact tables is served through its
// maps: an admitted id scores with its own row, an id the maps have
// never seen with the default row (every unknown id alike), never an
// error; /metrics shows the tables.
func TestServeExactTables(t *testing.T) {
	spec, err := features.ParseSpec(strings.NewReader(exactSpec))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ids := tr.IDs()
	// Admit users 1..5 (as training does, through the transform's keys).
	users := ids.Table(0)
	b := features.Batch{Rows: 5, Sparse: make([]features.SparseColumn, 3)}
	for i := range 5 {
		b.Sparse[0].IDs = append(b.Sparse[0].IDs, 1)
		b.Sparse[0].Keys = append(b.Sparse[0].Keys, users.Key(fmt.Sprint(i+1)))
	}
	b.Sparse[2] = features.SparseColumn{Offsets: make([]int32, 6)}
	if _, err := ids.Admit(&b); err != nil {
		t.Fatal(err)
	}
	ts, err := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "ctr", Kind: "binary", Label: "click"}})
	if err != nil {
		t.Fatal(err)
	}
	model, err := mmoe.New(mmoe.Config{EmbeddingDim: 4, Experts: 2, ExpertHidden: []int{8}, Tower: []int{4}, Seed: 9}, tr.Layout(), []string{"ctr"})
	if err != nil {
		t.Fatal(err)
	}
	m := &bundle.Manifest{Spec: exactSpec, Model: model.Config(), Tasks: ts.Configs(), Objectives: ts.Objectives()}
	for _, ev := range []string{`{"user_id": 1, "item_id": 3, "item_tags": ["a"]}`, `{"user_id": "zz-unknown", "item_id": 3, "item_tags": []}`} {
		m.Sample = append(m.Sample, bundle.SampleEvent{Event: []byte(ev)})
	}
	if err := FillSampleScores(m, model, ids); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := bundle.Write(context.Background(), bundle.NewDir(root), m, model, ids); err != nil {
		t.Fatal(err)
	}
	s, hs := newTestServer(t, root, ServerConfig{})
	if s.Scorer() == nil {
		t.Fatal("the bundle was not loaded")
	}
	score := func(user string) float32 {
		t.Helper()
		code, body, _ := post(t, hs.Client(), hs.URL+"/v1/score", []byte(`{"context": {"user_id": `+user+`}, "candidates": [{"item_id": 3, "item_tags": ["a", "b"]}]}`))
		if code != 200 {
			t.Fatalf("user %s: %d %s", user, code, body)
		}
		resp, err := s.Scorer().ScoreBody(context.Background(), []byte(`{"context": {"user_id": `+user+`}, "candidates": [{"item_id": 3, "item_tags": ["a", "b"]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Release()
		return resp.Results[0].Scores[0]
	}
	unknown := score(`"never-seen"`)
	if other := score(`123456789`); math.Float32bits(other) != math.Float32bits(unknown) {
		t.Errorf("two unknown ids score %v and %v: both should use the default row", unknown, other)
	}
	long := `"` + strings.Repeat("x", 5000) + `"`
	if got := score(long); math.Float32bits(got) != math.Float32bits(unknown) {
		t.Errorf("a 5000-byte unknown id scores %v, the default row %v", got, unknown)
	}
	own1, own2 := score(`1`), score(`"2"`)
	if own1 == unknown || own2 == unknown || own1 == own2 {
		t.Errorf("admitted ids 1 and 2 score %v and %v, unknown ids %v: each should have its own row", own1, own2, unknown)
	}
	code, body := get(t, hs.URL+"/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`onestone_exact_table{field="user_id",figure="rows"} 5`,
		`onestone_exact_table{field="user_id",figure="capacity"} 8`,
		`onestone_exact_table{field="user_id",figure="admissions"} 5`,
		`onestone_exact_table{field="item_tags",figure="rows"} 0`,
		fmt.Sprintf(`onestone_exact_table{field="user_id",figure="map_bytes"} %d`, spec.Fields[0].Exact.MapBytes()),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
