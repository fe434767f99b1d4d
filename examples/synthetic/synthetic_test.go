package synthetic

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/pipelines"
)

func TestTasksHaveTheAskedCorrelation(t *testing.T) {
	for _, p := range []float64{1, 0.9, 0.5, 0, -0.3} {
		ts, err := NewTasks(Config{Dir: "x", Corr: p, Dim: 20, Scale: 2, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(ts.Cosine-p) > 1e-12 {
			t.Fatalf("p=%v: cosine %v", p, ts.Cosine)
		}
		if n := math.Sqrt(dotf(ts.W1, ts.W1)); math.Abs(n-2) > 1e-12 {
			t.Fatalf("‖w1‖ = %v, want c = 2", n)
		}
		if n := math.Sqrt(dotf(ts.W2, ts.W2)); math.Abs(n-2) > 1e-12 {
			t.Fatalf("‖w2‖ = %v, want c = 2", n)
		}
		if len(ts.Alpha) != 10 || len(ts.Beta) != 10 {
			t.Fatalf("%d sines", len(ts.Alpha))
		}
	}
	ts, _ := NewTasks(Config{Dir: "x", Dim: 3, Sines: 1, Seed: 1})
	x := []float64{1, 2, 3}
	z := dotf(ts.W1, x)
	if got, want := ts.Label(ts.W1, x, 0.25), z+math.Sin(ts.Alpha[0]*z+ts.Beta[0])+0.25; got != want {
		t.Fatalf("label %v, want %v", got, want)
	}
}

func TestGenerateWritesDataWhoseLabelCorrelationFallsWithP(t *testing.T) {
	var prev float64 = 2
	for _, p := range []float64{1, 0.5, 0} {
		dir := t.TempDir()
		ts, err := Generate(Config{Dir: dir, Corr: p, Dim: 10, TrainRows: 3000, ValidRows: 500, Seed: 2})
		if err != nil {
			t.Fatal(err)
		}
		if !(ts.LabelCorr < prev) {
			t.Fatalf("p=%v: label correlation %v not below %v", p, ts.LabelCorr, prev)
		}
		prev = ts.LabelCorr
		for _, f := range []string{"train.parquet", "valid.parquet", "spec.yaml"} {
			if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
				t.Fatalf("%s: %v", f, err)
			}
		}
		spec, _ := os.ReadFile(filepath.Join(dir, "spec.yaml"))
		if !strings.Contains(string(spec), "name: x9,") || strings.Contains(string(spec), "name: x10,") || !strings.Contains(string(spec), "kind: regression") {
			t.Fatalf("spec:\n%s", spec)
		}
	}
	if prev > 0.1 {
		t.Fatalf("p=0: label correlation %v, want about 0", prev)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{}, {Dir: "x", Corr: 1.5}, {Dir: "x", Dim: 1}, {Dir: "x", TrainRows: -1}} {
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "synthetic: ") {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}

func TestGeneratedDataTrains(t *testing.T) {
	dir := t.TempDir()
	ts, err := Generate(Config{Dir: dir, Corr: 0.5, Dim: 10, TrainRows: 4000, ValidRows: 1000, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipelines.TrainBatch(context.Background(), pipelines.TrainBatchConfig{
		SpecPath: filepath.Join(dir, "spec.yaml"), Data: []string{filepath.Join(dir, "train.parquet")},
		Valid: []string{filepath.Join(dir, "valid.parquet")}, Out: filepath.Join(dir, "models"), Epochs: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The labels' standard deviation is the RMSE of predicting the mean.
	for i, m := range res.Final.Metrics {
		w := ts.W1
		if i == 1 {
			w = ts.W2
		}
		sd := labelSD(ts, w)
		if m.Kind != "regression" || !(m.RMSE < 0.5*sd) {
			t.Fatalf("task %s: RMSE %v, label sd %v: the model did not learn", m.Objective, m.RMSE, sd)
		}
	}
}

// labelSD estimates the standard deviation of the labels of weight w.
func labelSD(ts *Tasks, w []float64) float64 {
	rng := rand.New(rand.NewPCG(9, 9))
	x := make([]float64, ts.Dim)
	var s, ss float64
	const n = 20000
	for range n {
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		y := ts.Label(w, x, ts.Noise*rng.NormFloat64())
		s += y
		ss += y * y
	}
	return math.Sqrt(ss/n - (s/n)*(s/n))
}
