package features_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/onestone/onestone/features"
)

const fullSpec = `
fields:
  - name: user_id
    kind: categorical
    buckets: 100000
  - name: category
    kind: categorical
    vocab: {min_count: 5, max_size: 50000}
    side: candidate
  - name: user_tags
    kind: multi_categorical
    buckets: 10000
    pooling: sum
  - name: price
    kind: numeric
    transform: log1p
    missing_indicator: true
    default: 0
    side: candidate
  - name: age
    kind: numeric
    transform: bucketize
    buckets: 10
  - name: score
    kind: numeric
    transform: standardize
    missing_indicator: false
    default: -1.5
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conversion, parent: ctr}
  - {name: dwell, kind: regression, label: dwell_time}
group_key: user_id
sample_weight: weight
model: {experts: 8}
train: {epochs: 1}
join: {click_window: 30m}
`

func mustParse(t testing.TB, text string) *features.Spec {
	t.Helper()
	s, err := features.ParseSpec(strings.NewReader(text))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	return s
}

func TestParseSpec(t *testing.T) {
	s := mustParse(t, fullSpec)
	want := []features.Field{
		{Name: "user_id", Kind: features.Categorical, Buckets: 100000, MissingIndicator: true, Line: 3},
		{Name: "category", Kind: features.Categorical, Vocab: &features.Vocab{MinCount: 5, MaxSize: 50000}, Side: features.SideCandidate, MissingIndicator: true, Line: 6},
		{Name: "user_tags", Kind: features.MultiCategorical, Buckets: 10000, Pooling: features.PoolSum, MissingIndicator: true, Line: 10},
		{Name: "price", Kind: features.Numeric, Transform: features.TransformLog1p, MissingIndicator: true, Side: features.SideCandidate, Line: 14},
		{Name: "age", Kind: features.Numeric, Transform: features.TransformBucketize, Buckets: 10, Line: 20},
		{Name: "score", Kind: features.Numeric, Transform: features.TransformStandardize, Default: -1.5, Line: 24},
	}
	if !reflect.DeepEqual(s.Fields, want) {
		t.Errorf("fields:\n got %+v\nwant %+v", s.Fields, want)
	}
	wantTasks := []features.Task{
		{Name: "ctr", Kind: features.TaskBinary, Label: "click"},
		{Name: "cvr", Kind: features.TaskESMM, Label: "conversion", Parent: "ctr"},
		{Name: "dwell", Kind: features.TaskRegression, Label: "dwell_time"},
	}
	if !reflect.DeepEqual(s.Tasks, wantTasks) {
		t.Errorf("tasks: got %+v", s.Tasks)
	}
	if s.GroupKey != "user_id" || s.SampleWeight != "weight" {
		t.Errorf("group %q weight %q", s.GroupKey, s.SampleWeight)
	}
	cols := s.Columns(false)
	if want := []string{"user_id", "category", "user_tags", "price", "age", "score", "weight"}; !reflect.DeepEqual(cols, want) {
		t.Errorf("Columns(false) = %v, want %v", cols, want)
	}
	cols = s.Columns(true)
	if want := []string{"user_id", "category", "user_tags", "price", "age", "score", "weight", "click", "conversion", "dwell_time"}; !reflect.DeepEqual(cols, want) {
		t.Errorf("Columns(true) = %v, want %v", cols, want)
	}
	sc := s.Schema(true)
	wantSchema := arrow.NewSchema([]arrow.Field{
		{Name: "user_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "category", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "user_tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "price", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "age", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "weight", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "click", Type: arrow.PrimitiveTypes.Float64},
		{Name: "conversion", Type: arrow.PrimitiveTypes.Float64},
		{Name: "dwell_time", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	if !sc.Equal(wantSchema) {
		t.Errorf("Schema(true) =\n%v\nwant\n%v", sc, wantSchema)
	}
	if got := s.Schema(false).NumFields(); got != 7 {
		t.Errorf("Schema(false) has %d fields, want 7", got)
	}
}

func TestParseSpecDefaults(t *testing.T) {
	s := mustParse(t, `
fields:
  - {name: tags, kind: multi_categorical, vocab: {}}
  - {name: x, kind: numeric}
tasks: [{name: t, kind: regression, label: y}]
`)
	tags, x := s.Fields[0], s.Fields[1]
	if tags.Pooling != features.PoolMean || tags.Vocab.MinCount != 1 || tags.Vocab.MaxSize != 0 || tags.Side != features.SideContext {
		t.Errorf("multi_categorical defaults: %+v %+v", tags, *tags.Vocab)
	}
	if x.Transform != features.TransformNone || !x.MissingIndicator || x.Default != 0 {
		t.Errorf("numeric defaults: %+v", x)
	}
}

func TestParseSpecErrors(t *testing.T) {
	const task = "tasks: [{name: ctr, kind: binary, label: click}]\n"
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"empty", "", "empty document"},
		{"not a mapping", "- a\n- b\n", "want a mapping at the top level"},
		{"unknown top-level", "fields: []\nfoo: 1\n" + task, `line 2: unknown top-level key "foo"`},
		{"no fields", task, "no fields"},
		{"no task", "fields: [{name: a, kind: categorical, buckets: 10}]\n", "no tasks"},
		{"empty tasks", "fields: [{name: a, kind: categorical, buckets: 10}]\ntasks: []\n", "no tasks"},
		{"unknown kind", "fields:\n  - name: a\n    kind: categorial\n    buckets: 3\n" + task, `line 3: field "a": unknown kind "categorial"`},
		{"missing kind", "fields:\n  - name: a\n    buckets: 3\n" + task, `field "a": missing kind`},
		{"unknown key", "fields:\n  - name: a\n    kind: categorical\n    bucket: 3\n" + task, `line 4: field "a": unknown key "bucket"`},
		{"key not for kind", "fields:\n  - name: a\n    kind: categorical\n    buckets: 3\n    pooling: sum\n" + task, `line 5: field "a": key "pooling" does not apply to a categorical field`},
		{"buckets zero", "fields:\n  - name: a\n    kind: categorical\n    buckets: 0\n" + task, `line 4: field "a": buckets must be in [1, `},
		{"buckets negative", "fields: [{name: a, kind: categorical, buckets: -5}]\n" + task, "buckets must be in"},
		{"buckets huge", "fields: [{name: a, kind: categorical, buckets: 9999999999}]\n" + task, "buckets must be in"},
		{"buckets string", "fields: [{name: a, kind: categorical, buckets: many}]\n" + task, `buckets: want an integer, found "many"`},
		{"buckets and vocab", "fields: [{name: a, kind: categorical, buckets: 3, vocab: {}}]\n" + task, "exactly one of buckets"},
		{"neither buckets nor vocab", "fields: [{name: a, kind: categorical}]\n" + task, "exactly one of buckets"},
		{"vocab min_count", "fields: [{name: a, kind: categorical, vocab: {min_count: 0}}]\n" + task, "min_count must be >= 1"},
		{"vocab unknown key", "fields: [{name: a, kind: categorical, vocab: {min: 1}}]\n" + task, `vocab: unknown key "min"`},
		{"vocab not a map", "fields: [{name: a, kind: categorical, vocab: 5}]\n" + task, "vocab: want a mapping"},
		{"duplicate field", "fields:\n  - {name: a, kind: categorical, buckets: 3}\n  - {name: a, kind: numeric}\n" + task, `line 3: field "a": duplicate field name`},
		{"duplicate key", "fields:\n  - name: a\n    kind: numeric\n    kind: numeric\n" + task, `line 4: field "a": duplicate key "kind"`},
		{"no name", "fields: [{kind: numeric}]\n" + task, "missing name"},
		{"bad side", "fields: [{name: a, kind: numeric, side: item}]\n" + task, `unknown side "item"`},
		{"bad pooling", "fields: [{name: a, kind: multi_categorical, buckets: 3, pooling: max}]\n" + task, `unknown pooling "max"`},
		{"bad transform", "fields: [{name: a, kind: numeric, transform: sqrt}]\n" + task, `unknown transform "sqrt"`},
		{"bucketize without buckets", "fields: [{name: a, kind: numeric, transform: bucketize}]\n" + task, "bucketize needs buckets"},
		{"buckets without bucketize", "fields: [{name: a, kind: numeric, buckets: 4}]\n" + task, "buckets applies to a numeric field only with transform: bucketize"},
		{"bucketize default", "fields: [{name: a, kind: numeric, transform: bucketize, buckets: 4, default: 1}]\n" + task, "default does not apply"},
		{"missing_indicator not bool", "fields: [{name: a, kind: numeric, missing_indicator: 3}]\n" + task, "want true or false"},
		{"default not number", "fields: [{name: a, kind: numeric, default: x}]\n" + task, "default: want a number"},
		{"default nan", "fields: [{name: a, kind: numeric, default: .nan}]\n" + task, "default must be finite"},
		{"indicator collision", "fields:\n  - {name: a, kind: numeric}\n  - {name: a.missing, kind: numeric}\n" + task, `field "a.missing": name collides with the missing-indicator column of field "a"`},
		{"fields not a list", "fields: 3\n" + task, "fields: want a list"},
		{"task unknown kind", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: multiclass, label: y}]\n", `task "t": unknown kind "multiclass"`},
		{"task unknown key", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: binary, label: y, weight: 2}]\n", `task: unknown key "weight"`},
		{"task no label", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: binary}]\n", `task "t": missing label`},
		{"task duplicate", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: binary, label: y}, {name: t, kind: binary, label: z}]\n", `task "t": duplicate task name`},
		{"esmm no parent", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: esmm, label: y}]\n", `task "t": esmm needs a parent`},
		{"esmm unknown parent", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: esmm, label: y, parent: ctr}]\n", `parent "ctr" is not a task`},
		{"esmm regression parent", "fields: [{name: a, kind: numeric}]\ntasks: [{name: r, kind: regression, label: z}, {name: t, kind: esmm, label: y, parent: r}]\n", `parent "r" must be a binary or esmm task`},
		{"esmm self parent", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: esmm, label: y, parent: t}]\n", `task "t": is its own parent`},
		{"parent on regression", "fields: [{name: a, kind: numeric}]\ntasks: [{name: c, kind: binary, label: y}, {name: t, kind: regression, label: z, parent: c}]\n", "parent applies to esmm and binary tasks only"},
		{"binary parent esmm", "fields: [{name: a, kind: numeric}]\ntasks: [{name: c, kind: binary, label: y}, {name: e, kind: esmm, label: x, parent: c}, {name: t, kind: binary, label: z, parent: e}]\n", "must be a binary task (the previous step"},
		{"mask own label", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: binary, label: y, mask: y}]\n", `mask "y" is the task's own label`},
		{"mask weight", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: binary, label: y, mask: w}]\nsample_weight: w\n", `mask "w" is the group key or sample weight`},
		{"mask type", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: binary, label: y, mask: [a]}]\n", "task: mask"},
		{"task key", "fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: binary, label: y, counterfactual_wieght: 1}]\n", `unknown key "counterfactual_wieght"`},
		{"label is a field", "fields: [{name: click, kind: numeric}]\n" + task, `label column "click" is also an input field`},
		{"weight categorical", "fields: [{name: w, kind: categorical, buckets: 2}]\n" + task + "sample_weight: w\n", "want a numeric column"},
		{"group multi", "fields: [{name: g, kind: multi_categorical, buckets: 2}]\n" + task + "group_key: g\n", "want a single-valued column"},
		{"group_key not string", "fields: [{name: a, kind: numeric}]\n" + task + "group_key: [a]\n", "group_key: want a string"},
		{"two documents", "fields: [{name: a, kind: numeric}]\n" + task + "---\nfoo: 1\n", "want one YAML document"},
		{"yaml syntax", "fields: [{name: a\n", "features: spec:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := features.ParseSpec(strings.NewReader(tc.spec))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "features: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
			if !errors.Is(err, features.ErrSpec) {
				t.Errorf("error %q does not wrap ErrSpec", err)
			}
		})
	}
}

func TestLoadSpecAndStatsPath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(p, []byte(fullSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := features.LoadSpec(p); err != nil {
		t.Fatal(err)
	}
	if _, err := features.LoadSpec(filepath.Join(dir, "nope.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(p, []byte("fields: []\n"), 0o644)
	if _, err := features.LoadSpec(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("bad spec error should name the file: %v", err)
	}
	for in, want := range map[string]string{
		"spec.yaml":           "spec.stats.json",
		"conf/census.yml":     "conf/census.stats.json",
		"/a/b.c/spec":         "/a/b.c/spec.stats.json",
		"dir.v2/feature.spec": "dir.v2/feature.stats.json",
	} {
		if got := features.StatsPath(in); got != want {
			t.Errorf("StatsPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSpecJSONValidate(t *testing.T) {
	s := mustParse(t, fullSpec)
	// A spec travels in model bundles as JSON: it must round-trip.
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"side":"candidate"`) || !strings.Contains(string(js), `"pooling":"sum"`) {
		t.Errorf("sides and poolings should marshal as text: %s", js)
	}
	var back features.Spec
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
	for i := range s.Fields {
		s.Fields[i].Line = 0 // not serialised
	}
	if !reflect.DeepEqual(&back, s) {
		t.Errorf("JSON round trip:\n got %+v\nwant %+v", back, *s)
	}
	if err := json.Unmarshal([]byte(`{"fields": [{"name": "a", "kind": "categorical", "side": "item"}]}`), &back); err == nil {
		t.Error("unknown side accepted")
	}
	s.Fields[0].Buckets = 0
	if err := s.Validate(); !errors.Is(err, features.ErrSpec) {
		t.Errorf("Validate after breaking buckets: %v", err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add(fullSpec)
	f.Add("fields: [{name: a, kind: numeric}]\ntasks: [{name: t, kind: binary, label: y}]\n")
	f.Add("fields: &x [{name: a, kind: categorical, buckets: 2}]\ntasks: *x\n")
	f.Add("fields:\n  - name: a\n    kind: multi_categorical\n    vocab: {min_count: 2}\ntasks: [{name: t, kind: esmm, label: y, parent: t}]\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := features.ParseSpec(strings.NewReader(text))
		if err != nil {
			if !errors.Is(err, features.ErrSpec) {
				t.Fatalf("error does not wrap ErrSpec: %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed spec fails Validate: %v", err)
		}
		s.Columns(true)
		s.Schema(true)
		if _, err := features.NewTransformer(s, nil, features.TransformerConfig{}); err != nil && !errors.Is(err, features.ErrStats) {
			t.Fatalf("NewTransformer: %v", err)
		}
	})
}
