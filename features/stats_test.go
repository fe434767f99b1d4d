package features_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
)

func TestFitterNumericMatchesNaive(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, "fields: [{name: x, kind: numeric, transform: standardize}]\n"+noLabel)
	rng := rand.New(rand.NewPCG(7, 7))
	ft, err := features.NewFitter(spec, features.FitConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var all []float64
	for range 3 {
		xs := make([]any, 1000)
		for i := range xs {
			switch {
			case i%97 == 0:
				xs[i] = nil
			case i%101 == 0:
				xs[i] = math.Inf(-1)
			default:
				v := 1e6 + rng.NormFloat64()*3 // large offset: Welford stays exact where sum of squares would not
				xs[i] = v
				all = append(all, v)
			}
		}
		rec := record(t, mem, col{"x", f64, xs})
		err := ft.Add(rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := ft.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, v := range all {
		sum += v
	}
	mean := sum / float64(len(all))
	var ss float64
	for _, v := range all {
		ss += (v - mean) * (v - mean)
	}
	std := math.Sqrt(ss / float64(len(all)))
	fs := st.Fields["x"]
	if st.Rows != 3000 || fs.Values != int64(len(all)) || fs.Nulls != 3000-int64(len(all)) {
		t.Errorf("rows %d values %d nulls %d", st.Rows, fs.Values, fs.Nulls)
	}
	if math.Abs(fs.Numeric.Mean-mean) > 1e-9*mean || math.Abs(fs.Numeric.Std-std) > 1e-9*std {
		t.Errorf("mean %v std %v, want %v %v", fs.Numeric.Mean, fs.Numeric.Std, mean, std)
	}
}

func TestFitterDeterministicAndSampled(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, "fields: [{name: x, kind: numeric, transform: bucketize, buckets: 8}]\n"+noLabel)
	fit := func(seed uint64) *features.Stats {
		rng := rand.New(rand.NewPCG(1, 1))
		xs := make([]any, 20000)
		for i := range xs {
			xs[i] = rng.Float64()
		}
		return fitStats(t, spec, features.FitConfig{Seed: seed, QuantileSample: 2000}, record(t, mem, col{"x", f64, xs}))
	}
	a, b, c := fit(1), fit(1), fit(2)
	if !reflect.DeepEqual(a, b) {
		t.Error("same seed, different stats")
	}
	if reflect.DeepEqual(a.Fields["x"].Boundaries, c.Fields["x"].Boundaries) {
		t.Error("different seeds gave identical reservoir boundaries")
	}
	bs := a.Fields["x"].Boundaries
	if len(bs) != 7 || a.Fields["x"].Sampled != 2000 {
		t.Fatalf("boundaries %v sampled %d", bs, a.Fields["x"].Sampled)
	}
	for k, v := range bs {
		if want := float64(k+1) / 8; math.Abs(v-want) > 0.04 {
			t.Errorf("boundary %d = %v, want about %v (uniform data)", k, v, want)
		}
	}
}

func TestFitterLabelsAndErrors(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, `fields: [{name: c, kind: categorical, buckets: 3}, {name: x, kind: numeric}]
tasks: [{name: ctr, kind: binary, label: click}, {name: d, kind: regression, label: dwell}]
sample_weight: w
group_key: g
`)
	st := fitStats(t, spec, features.FitConfig{}, record(t, mem,
		col{"c", utf8, vals[any]("a", "b", nil, "a")},
		col{"x", i64, vals[any](1, 2, 3, 4)},
		col{"click", boolean, vals[any](true, false, false, false)},
	))
	if l := st.Labels["click"]; l == nil || l.Count != 4 || l.Mean != 0.25 {
		t.Errorf("click stats %+v", l)
	}
	if _, ok := st.Labels["dwell"]; ok || st.Fields["c"].Nulls != 1 || st.Fields["c"].Vocab != nil {
		t.Errorf("labels %v, c stats %+v", st.Labels, st.Fields["c"])
	}
	for _, tc := range []struct {
		name string
		cols []col
		want string
		kind error
	}{
		{"missing field", []col{{"c", utf8, vals[any]("a")}}, `features: column "x": missing from the record`, features.ErrSchema},
		{"wrong type", []col{{"c", f64, vals[any](1.0)}, {"x", f64, vals[any](1.0)}}, `features: column "c": want categorical`, features.ErrSchema},
		{"bad label", []col{{"c", utf8, vals[any]("a", "b")}, {"x", f64, vals[any](1.0, 2.0)}, {"click", i64, vals[any](0, 3)}}, `features: column "click": row 1: binary label must be 0 or 1, found 3`, features.ErrValue},
		{"null weight", []col{{"c", utf8, vals[any]("a")}, {"x", f64, vals[any](1.0)}, {"w", f64, vals[any](nil)}}, `features: column "w": row 0: null sample weight`, features.ErrValue},
		{"group list", []col{{"c", utf8, vals[any]("a")}, {"x", f64, vals[any](1.0)}, {"g", listUTF8(), vals[any]([]any{"a"})}}, `features: column "g": want group key`, features.ErrSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft, err := features.NewFitter(spec, features.FitConfig{})
			if err != nil {
				t.Fatal(err)
			}
			rec := record(t, mem, tc.cols...)
			err = ft.Add(rec)
			rec.Release()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.kind) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := features.NewFitter(spec, features.FitConfig{QuantileSample: -1}); err == nil {
		t.Error("negative QuantileSample accepted")
	}
}

func TestStatsSaveLoad(t *testing.T) {
	mem := checkedMem(t)
	spec := mustParse(t, benchSpec)
	st := fitStats(t, spec, features.FitConfig{Seed: 5}, benchRecord(t, mem, 2000, 3))
	dir := t.TempDir()
	p := filepath.Join(dir, "spec.stats.json")
	if err := st.Save(p); err != nil {
		t.Fatal(err)
	}
	got, err := features.LoadStats(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Error("stats differ after a save/load round trip")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
	// Overwrite in place.
	if err := st.Save(p); err != nil {
		t.Fatal(err)
	}
	// A transformer built from loaded stats produces the same batches.
	rec := benchRecord(t, mem, 300, 9)
	defer rec.Release()
	var b1, b2 features.Batch
	t1, _ := features.NewTransformer(spec, st, features.TransformerConfig{Labels: true})
	t2, _ := features.NewTransformer(spec, got, features.TransformerConfig{Labels: true})
	if err := t1.TransformTo(&b1, rec); err != nil {
		t.Fatal(err)
	}
	if err := t2.TransformTo(&b2, rec); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b1, b2) {
		t.Error("batches differ between fitted and loaded stats")
	}

	for name, text := range map[string]string{
		"syntax":        `{"version": 1, "rows": `,
		"version":       `{"version": 2, "rows": 0, "fields": {}}`,
		"unknown key":   `{"version": 1, "rows": 0, "fields": {}, "extra": 1}`,
		"null field":    `{"version": 1, "rows": 0, "fields": {"x": null}}`,
		"vocab lengths": `{"version": 1, "rows": 0, "fields": {"x": {"kind": "categorical", "nulls": 0, "values": 0, "vocab": {"values": ["a"], "counts": [], "distinct": 1}}}}`,
		"boundaries":    `{"version": 1, "rows": 0, "fields": {"x": {"kind": "numeric", "nulls": 0, "values": 0, "boundaries": [2, 1]}}}`,
	} {
		bad := filepath.Join(dir, name+".json")
		os.WriteFile(bad, []byte(text), 0o644)
		if _, err := features.LoadStats(bad); !errors.Is(err, features.ErrStats) || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: error %v", name, err)
		}
	}
	if _, err := features.LoadStats(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := st.Save(filepath.Join(dir, "no", "such", "dir.json")); err == nil {
		t.Error("Save into a missing directory succeeded")
	}
}
