package pipelines

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/serving"
)

// funnelTasks replaces the tasks of a generated spec.
func funnelTasks(t *testing.T, spec, tasks string) {
	t.Helper()
	replaceSection(t, spec, "tasks:", tasks)
}

// TestTrainSampleSpacesAndESCM trains a spec with a conversion task on the
// clicked rows only (mask), an ESMM conversion task with ESCM²'s doubly
// robust risk and one with the IPW risk: the bundle carries the tasks'
// keys and the imputation head, serving loads it (re-scoring its sample
// bit for bit), and each objective is evaluated on its own rows.
func TestTrainSampleSpacesAndESCM(t *testing.T) {
	if raceEnabled {
		// Trains three models for two epochs under the race detector in minutes on top of make
		// test's budget; the same single-goroutine paths train in the
		// other race tests. It runs without -race.
		t.Skip("skipped under the race detector")
	}
	dir, spec := genData(t, 60000, "")
	funnelTasks(t, spec, `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conversion, parent: ctr, counterfactual: dr, counterfactual_weight: 0.5}
  - {name: ipw, kind: esmm, label: conversion, parent: ctr, counterfactual: ipw, ipw_clip: 10}
  - {name: naive, kind: binary, label: conversion, mask: click}
`)
	out := filepath.Join(t.TempDir(), "models")
	test := filepath.Join(dir, "test-00000.parquet")
	res, err := TrainBatch(context.Background(), TrainBatchConfig{
		SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")}, Valid: []string{test}, Out: out, Epochs: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, m := range res.Final.Metrics {
		counts[m.Objective] = m.Count
		// The products and the CTR learn on this little data (the
		// conditional objectives have too few clicked test rows to say).
		if (m.Objective == "ctr" || m.Objective == "ctcvr" || m.Objective == "ctr_x_ipw") && !(m.AUC > 0.6) {
			t.Errorf("%s: AUC %.4f", m.Objective, m.AUC)
		}
	}
	if !(counts["naive"] > 0 && counts["naive"] == counts["cvr"] && counts["naive"] < counts["ctr"]/10) {
		t.Errorf("rows evaluated: %v; want naive and cvr on the clicked rows only", counts)
	}
	lm, err := LoadModel(res.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lm.Model.Heads(), []string{"ctr", "cvr", "ipw", "naive", "cvr_impute"}; !slices.Equal(got, want) {
		t.Errorf("heads %v, want %v", got, want)
	}
	if c := lm.Manifest.Tasks[1]; c.Counterfactual != mtl.CounterfactualDR || c.CounterfactualWeight != 0.5 || lm.Manifest.Tasks[3].Mask != "click" || lm.Manifest.Tasks[2].IPWClip != 10 {
		t.Errorf("manifest tasks %+v", lm.Manifest.Tasks)
	}
	if _, err := serving.LoadBundle(res.Bundle); err != nil {
		t.Fatalf("serving refuses the bundle: %v", err)
	}
}

// TestTrainRefusesBadTasks: configurations that cannot train are refused
// before the first step, with the key named.
func TestTrainRefusesBadTasks(t *testing.T) {
	dir, spec := genData(t, 6000, "")
	for _, c := range []struct{ name, tasks, want string }{
		{"mask on a missing column", `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: binary, label: conversion, mask: clicked}
`, `task "cvr": mask: column "clicked" is not in the data`},
		{"dr without esmm", `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: binary, label: conversion, counterfactual: dr}
`, `task "cvr": counterfactual "dr" needs an esmm task`},
		{"mask on esmm", `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conversion, parent: ctr, mask: click}
`, `task "cvr": mask "click": an esmm task trains on the entire space`},
	} {
		t.Run(c.name, func(t *testing.T) {
			funnelTasks(t, spec, c.tasks)
			out := filepath.Join(t.TempDir(), "models")
			_, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")}, Out: out})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if c.name == "mask on a missing column" && !errors.Is(err, ErrSpecColumns) {
				t.Errorf("err = %v, want ErrSpecColumns", err)
			}
			if m, _ := filepath.Glob(filepath.Join(out, "checkpoints", "*")); len(m) > 0 {
				t.Errorf("a refused run wrote checkpoints %v", m)
			}
		})
	}
}

// replaceSection replaces the top-level section starting with key (e.g.
// "tasks:") of the spec file with text, or appends text when it has none.
func replaceSection(t *testing.T, spec, key, text string) {
	t.Helper()
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	var out []string
	skipping, found := false, false
	for _, l := range lines {
		top := l != "" && l[0] != ' ' && l[0] != '-' && l[0] != '#' && l[0] != '\n'
		switch {
		case strings.HasPrefix(l, key):
			skipping, found = true, true
			out = append(out, text)
		case skipping && top:
			skipping = false
			out = append(out, l)
		case !skipping:
			out = append(out, l)
		}
	}
	if !found {
		out = append(out, text)
	}
	if err := os.WriteFile(spec, []byte(strings.Join(out, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTrainAITM trains gen --cart's three-step funnel with its AITM spec
// (arch aitm, and AIT as a head option on mmoe): the transfer follows the
// tasks' parents, the bundle carries it, and serving loads the bundle
// (re-scoring its sample bit for bit). AITM without a chain is refused
// before training, naming the key.
func TestTrainAITM(t *testing.T) {
	if raceEnabled {
		// Trains two models for two epochs under the race detector in minutes on top of make
		// test's budget; the same single-goroutine paths train in the
		// other race tests. It runs without -race.
		t.Skip("skipped under the race detector")
	}
	dir := t.TempDir()
	sum, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: 30000, Users: 2000, Items: 2000, Seed: 7, Files: 2, RowGroupRows: 4096, TaskCorr: 0.5, Cart: true})
	if err != nil {
		t.Fatal(err)
	}
	spec := sum.Spec
	for _, model := range []string{"model:\n  arch: aitm\n  expert_hidden: [16]\n  tower: [8]\n  embedding_dim: 4\n", "model:\n  arch: mmoe\n  ait: true\n  experts: 2\n  expert_hidden: [16]\n  tower: [8]\n  embedding_dim: 4\n"} {
		replaceSection(t, spec, "model:", model)
		replaceSection(t, spec, "train:", "train:\n  batch_size: 256\n  workers: 2\n")
		out := filepath.Join(t.TempDir(), "models")
		res, err := TrainBatch(context.Background(), TrainBatchConfig{
			SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")}, Valid: []string{filepath.Join(dir, "test-00000.parquet")}, Out: out, Epochs: 2,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Final.Metrics {
			if m.Objective == "ctr" && !(m.AUC > 0.6) {
				t.Errorf("ctr AUC %.4f", m.AUC)
			}
		}
		lm, err := LoadModel(res.Bundle)
		if err != nil {
			t.Fatal(err)
		}
		if c := lm.Model.Config(); !c.AIT || c.Transfer["cart"] != "ctr" || c.Transfer["cvr"] != "cart" || len(c.Transfer) != 2 {
			t.Errorf("model config %+v: want the transfer ctr -> cart -> cvr", c)
		}
		if c := lm.Manifest.Model; c.Transfer["cvr"] != "cart" {
			t.Errorf("manifest model %+v", c)
		}
		if _, err := serving.LoadBundle(res.Bundle); err != nil {
			t.Fatalf("serving refuses the bundle: %v", err)
		}
	}
	funnelTasks(t, spec, "tasks:\n  - {name: ctr, kind: binary, label: click}\n  - {name: cart, kind: binary, label: cart}\n")
	out := filepath.Join(t.TempDir(), "models")
	_, err = TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")}, Out: out})
	if err == nil || !strings.Contains(err.Error(), "no task has a parent") || !strings.Contains(err.Error(), "parent:") {
		t.Fatalf("AITM without a chain: err = %v", err)
	}
}
