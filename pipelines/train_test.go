package pipelines

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/serving"
)

// smallModel is a spec suffix that keeps test training fast.
const smallModel = `
model:
  arch: mmoe
  experts: 2
  expert_hidden: [16]
  tower: [8]
  embedding_dim: 4
train:
  batch_size: 256
  workers: 2
`

// genData writes a small generated data set with a fast spec and returns
// its directory and spec path.
func genData(t testing.TB, rows int64, extra string) (dir, spec string) {
	t.Helper()
	dir = t.TempDir()
	if _, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: rows, Users: 2000, Items: 2000, Seed: 7, Files: 2, RowGroupRows: 4096, TaskCorr: 0.5}); err != nil {
		t.Fatal(err)
	}
	spec = filepath.Join(dir, "spec.yaml")
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	// Replace gen's own model and train sections with a tiny model.
	if i := strings.Index(string(b), "\nmodel:"); i >= 0 {
		b = b[:i+1]
	}
	if err := os.WriteFile(spec, append(b, []byte(smallModel+extra)...), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, spec
}

func TestTrainBatchLearnsAndPublishes(t *testing.T) {
	dir, spec := genData(t, 60000, "")
	out := filepath.Join(t.TempDir(), "models")
	res, err := TrainBatch(context.Background(), TrainBatchConfig{
		SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")},
		Valid: []string{filepath.Join(dir, "test-00000.parquet")}, Out: out, Epochs: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Examples != 2*54000 {
		t.Errorf("examples = %d, want %d (2 epochs of 54000 rows)", res.Examples, 2*54000)
	}
	byName := map[string]mtl.Metrics{}
	for _, m := range res.Best.Metrics {
		byName[m.Objective] = m
	}
	// A model that learnt nothing has AUC 0.5; this data's ceiling is ~0.8.
	if auc := byName["ctr"].AUC; !(auc > 0.62) {
		t.Errorf("ctr AUC %.4f: the model did not learn", auc)
	}
	if auc := byName["ctcvr"].AUC; !(auc > 0.62) {
		t.Errorf("ctcvr AUC %.4f: the model did not learn", auc)
	}
	// The published bundle loads, and the latest link names it.
	link, err := os.Readlink(filepath.Join(out, bundle.LatestLink))
	if err != nil || filepath.Join(out, link) != res.Bundle {
		t.Fatalf("latest -> %q (%v), want %s", link, err, res.Bundle)
	}
	lm, err := LoadModel(filepath.Join(out, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(lm.Manifest.Sample) == 0 {
		t.Fatal("bundle has no sample events")
	}
	// Evaluating the published bundle reproduces the best validation result.
	ev, err := Evaluate(context.Background(), lm.Setup, lm.Model, EvalConfig{Paths: []string{filepath.Join(dir, "test-00000.parquet")}})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ev.Metrics {
		if d := math.Abs(m.AUC - res.Best.Metrics[i].AUC); d > 1e-9 {
			t.Errorf("%s: eval of the bundle gives AUC %.6f, training reported %.6f", m.Objective, m.AUC, res.Best.Metrics[i].AUC)
		}
	}
	// The bundle passes the server's load checks (which re-score its
	// sample events through the serving path, bit for bit).
	if _, err := serving.LoadBundle(res.Bundle); err != nil {
		t.Fatalf("the published bundle is refused by serving: %v", err)
	}
}

func TestResumeContinuesWhereTheCheckpointStopped(t *testing.T) {
	dir, spec := genData(t, 30000, "")
	data := []string{filepath.Join(dir, "train-*.parquet")}
	// One run of 60 steps, against 25 steps, a stop, and a resume to 60.
	full := filepath.Join(t.TempDir(), "full")
	a, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: full, MaxSteps: 60, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(t.TempDir(), "part")
	if _, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: part, MaxSteps: 25, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	b, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: part, MaxSteps: 60, Workers: 1, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.Steps != 60 || b.Steps != 60 || a.Examples != b.Examples {
		t.Fatalf("steps %d/%d examples %d/%d", a.Steps, b.Steps, a.Examples, b.Examples)
	}
	ma, err := LoadModel(a.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := LoadModel(b.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := ma.Model.Params(), mb.Model.Params()
	for i := range pa {
		for j := range pa[i].Data {
			if pa[i].Data[j] != pb[i].Data[j] {
				t.Fatalf("%s[%d]: uninterrupted %v, resumed %v", pa[i].Name, j, pa[i].Data[j], pb[i].Data[j])
			}
		}
	}
}

func TestTrainBadInput(t *testing.T) {
	dir, spec := genData(t, 20000, "")
	data := []string{filepath.Join(dir, "train-*.parquet")}
	write := func(text string) string {
		p := filepath.Join(t.TempDir(), "spec.yaml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base, _ := os.ReadFile(spec)
	ro := filepath.Join(t.TempDir(), "ro")
	os.MkdirAll(ro, 0o555)
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o644)
	cases := []struct {
		name string
		cfg  TrainBatchConfig
		want string
	}{
		{"missing label column", TrainBatchConfig{SpecPath: write(strings.Replace(string(base), "label: click", "label: clicked", 1)), Data: data}, "clicked"},
		{"non-binary label", TrainBatchConfig{SpecPath: write(strings.Replace(string(base), "label: click", "label: position", 1)), Data: data}, "position"},
		{"no match", TrainBatchConfig{SpecPath: spec, Data: []string{filepath.Join(dir, "nothing-*.parquet")}}, "nothing-"},
		{"unknown arch", TrainBatchConfig{SpecPath: write(strings.Replace(string(base), "arch: mmoe", "arch: moe", 1)), Data: data}, "moe"},
		{"output under a file", TrainBatchConfig{SpecPath: spec, Data: data, Out: filepath.Join(file, "m")}, "a-file"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		cases = append(cases, struct {
			name string
			cfg  TrainBatchConfig
			want string
		}{"read-only output", TrainBatchConfig{SpecPath: spec, Data: data, Out: filepath.Join(ro, "m")}, "ro"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.cfg.Out == "" {
				c.cfg.Out = filepath.Join(t.TempDir(), "m")
			}
			_, err := TrainBatch(context.Background(), c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one naming %q", err, c.want)
			}
			// No statistics saved for a later run to pick up.
			if _, err := os.Stat(features.StatsPath(c.cfg.SpecPath)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("stats file after a failed train: %v", err)
			}
		})
	}
}

func TestResumeRefusesAnotherSpec(t *testing.T) {
	dir, spec := genData(t, 20000, "")
	data := []string{filepath.Join(dir, "train-*.parquet")}
	out := filepath.Join(t.TempDir(), "m")
	if _, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: out, MaxSteps: 3}); err != nil {
		t.Fatal(err)
	}
	base, _ := os.ReadFile(spec)
	other := filepath.Join(dir, "other.yaml")
	os.WriteFile(other, []byte(strings.Replace(string(base), "expert_hidden: [16]", "expert_hidden: [12]", 1)), 0o644)
	os.Link(filepath.Join(dir, "spec.stats.json"), filepath.Join(dir, "other.stats.json"))
	_, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: other, Data: data, Out: out, Resume: true})
	if !errors.Is(err, ErrSpecMismatch) {
		t.Fatalf("err = %v, want ErrSpecMismatch", err)
	}
}

func TestNonFiniteLossStopsKeepingTheCheckpoint(t *testing.T) {
	dir, spec := genData(t, 20000, "")
	data := []string{filepath.Join(dir, "train-*.parquet")}
	out := filepath.Join(t.TempDir(), "m")
	if _, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: out, MaxSteps: 4}); err != nil {
		t.Fatal(err)
	}
	before, _ := bundle.Checkpoints(out).Versions(context.Background())
	// Resuming with a huge learning rate makes the loss diverge.
	base, _ := os.ReadFile(spec)
	if err := os.WriteFile(spec, append(base, []byte("  dense: {lr: 1.0e+30}\n  embedding: {lr: 1.0e+30}\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: out, Resume: true})
	if !errors.Is(err, mtl.ErrNonFinite) {
		t.Fatalf("err = %v, want ErrNonFinite", err)
	}
	for _, want := range []string{"step", "task", "checkpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	after, _ := bundle.Checkpoints(out).Versions(context.Background())
	if len(after) != len(before) || after[len(after)-1] != before[len(before)-1] {
		t.Fatalf("checkpoints changed from %v to %v", before, after)
	}
	if _, err := LoadModel(bundle.Checkpoints(out).Root()); err != nil {
		t.Fatalf("the last checkpoint does not load: %v", err)
	}
}

// TestResumeKeepsTheSharedPartFrozen: a warm-started run with the shared
// part frozen, interrupted and resumed, still leaves the shared parameters
// as the bundle it started from had them.
func TestResumeKeepsTheSharedPartFrozen(t *testing.T) {
	dir, spec := genData(t, 20000, "")
	data := []string{filepath.Join(dir, "train-*.parquet")}
	base := filepath.Join(t.TempDir(), "base")
	a, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: base, MaxSteps: 5})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "frozen")
	if _, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: out, MaxSteps: 3, InitFrom: a.Bundle, FreezeShared: true}); err != nil {
		t.Fatal(err)
	}
	b, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: out, MaxSteps: 8, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	ma, err := LoadModel(a.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := LoadModel(b.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := ma.Model.Params(), mb.Model.Params()
	changed := 0
	for i := range pa {
		same := slicesEqual(pa[i].Data, pb[i].Data)
		if mb.Model.TaskOf(i) == -1 && !same {
			t.Errorf("shared %s changed after the resume", pa[i].Name)
		}
		if mb.Model.TaskOf(i) >= 0 && !same {
			changed++
		}
	}
	if changed == 0 {
		t.Error("no task-specific parameter was trained")
	}
	ea, eb := ma.Model.Embeddings(), mb.Model.Embeddings()
	for i := range ea {
		if !slicesEqual(ea[i].Data, eb[i].Data) {
			t.Errorf("embedding %s changed after the resume", ea[i].Name)
		}
	}
}

func slicesEqual(a, b []float32) bool {
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
