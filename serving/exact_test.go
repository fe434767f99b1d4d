package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
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

// exactBundle writes a bundle of exactSpec whose user_id table has admitted
// users 1..5 (its item_tags table admitted nothing) under a new root.
func exactBundle(t *testing.T) (spec *features.Spec, root string) {
	t.Helper()
	var err error
	spec, err = features.ParseSpec(strings.NewReader(exactSpec))
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
	root = t.TempDir()
	if _, err := bundle.Write(context.Background(), bundle.NewDir(root), m, model, ids); err != nil {
		t.Fatal(err)
	}
	return spec, root
}

// TestServeExactTables: a bundle with exact tables is served through its
// maps: an admitted id scores with its own row, an id the maps have
// never seen with the default row (every unknown id alike), never an
// error; /metrics shows the tables.
func TestServeExactTables(t *testing.T) {
	spec, root := exactBundle(t)
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

// TestServeExactUnknownIDs: through the HTTP server, the ids that the
// bundle's maps do not know are counted per field in
// onestone_exact_unknown_ids_total, once per object they appear in (a
// context's id copied into candidates counts once), and /v1/model shows
// the figures of the exact tables.
func TestServeExactUnknownIDs(t *testing.T) {
	spec, root := exactBundle(t)
	s, hs := newTestServer(t, root, ServerConfig{Scorer: ScorerConfig{Workers: 2, BatchRows: 2}})
	metric := func(field string) string {
		t.Helper()
		code, body := get(t, hs.URL+"/metrics")
		if code != 200 {
			t.Fatalf("metrics: %d", code)
		}
		prefix := `onestone_exact_unknown_ids_total{field="` + field + `"} `
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				return v
			}
		}
		t.Fatalf("metrics lack %s", prefix)
		return ""
	}
	if u, tags := metric("user_id"), metric("item_tags"); u != "0" || tags != "0" {
		t.Fatalf("before any request: user_id %s, item_tags %s; want 0 and 0", u, tags)
	}
	reqs := []struct {
		body string
		want []int64 // user_id, item_tags
	}{
		// The context's unknown user counts once, though two candidates
		// take it (the third overrides it with a known user, so the
		// context is copied into the others); ["a", "b"] are unknown tags.
		{`{"context": {"user_id": "zz"}, "candidates": [{"item_id": 3, "item_tags": ["a", "b"]}, {"item_id": 4, "item_tags": []}, {"item_id": 5, "user_id": 2}]}`, []int64{1, 2}},
		// Candidates of their own: each unknown user once per candidate.
		{`{"candidates": [{"user_id": "x1", "item_id": 1}, {"user_id": "x1", "item_id": 2}, {"user_id": 1, "item_id": 3}, {"user_id": 5, "item_id": 3, "item_tags": ["c"]}, {"user_id": 99, "item_id": 3}]}`, []int64{3, 1}},
		// A known context user used by every candidate: nothing unknown.
		{`{"context": {"user_id": 4}, "candidates": [{"item_id": 1}, {"item_id": 2}, {"item_id": 3}]}`, []int64{0, 0}},
		// An unknown context user that no candidate needs still counts.
		{`{"context": {"user_id": "gone"}, "candidates": [{"item_id": 1, "user_id": 3}]}`, []int64{1, 0}},
	}
	var total [2]int64
	for i, r := range reqs {
		resp, err := s.Scorer().ScoreBody(context.Background(), []byte(r.body))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := slices.Clone(resp.UnknownIDs); !slices.Equal(got, r.want) {
			t.Errorf("request %d: UnknownIDs %v, want %v", i, got, r.want)
		}
		resp.Release()
		if code, body, _ := post(t, hs.Client(), hs.URL+"/v1/score", []byte(r.body)); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
		total[0] += r.want[0]
		total[1] += r.want[1]
	}
	if u, tags := metric("user_id"), metric("item_tags"); u != fmt.Sprint(total[0]) || tags != fmt.Sprint(total[1]) {
		t.Errorf("after the requests: user_id %s, item_tags %s; want %d and %d", u, tags, total[0], total[1])
	}

	code, body := get(t, hs.URL+"/v1/model")
	if code != 200 {
		t.Fatalf("/v1/model: %d %s", code, body)
	}
	var info ModelInfo
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	want := []features.IDTableStats{
		{Field: "user_id", Capacity: 8, Rows: 5, Admissions: 5, MapBytes: spec.Fields[0].Exact.MapBytes(), Clock: 5},
		{Field: "item_tags", Capacity: 4, MapBytes: spec.Fields[2].Exact.MapBytes(), Clock: 5},
	}
	if !reflect.DeepEqual(info.ExactTables, want) {
		t.Errorf("/v1/model exact_tables %+v, want %+v", info.ExactTables, want)
	}
	if !strings.Contains(string(body), `"exact_tables"`) || !strings.Contains(string(body), `"waiting": 0`) {
		t.Errorf("/v1/model does not show the exact tables' figures: %s", body)
	}
}
