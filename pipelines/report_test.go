package pipelines

import (
	"bytes"
	"context"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

var gateLayout = features.Layout{
	Sparse: []features.SparseField{{Name: "a", Cardinality: 10}},
	Dense:  []features.DenseField{{Name: "x0"}, {Name: "x1"}, {Name: "x2"}},
	Labels: []string{"y1", "y2"},
}

func gateBatch(rows int) *features.Batch {
	rng := rand.New(rand.NewPCG(9, 9))
	b := &features.Batch{Rows: rows, DenseWidth: 3, Dense: make([]float32, 3*rows)}
	ids := make([]int32, rows)
	for i := range rows {
		ids[i] = int32(rng.IntN(10))
		for j := range 3 {
			b.Dense[3*i+j] = float32(rng.NormFloat64())
		}
	}
	b.Sparse = []features.SparseColumn{{IDs: ids}}
	return b
}

func param(t *testing.T, m *mmoe.Model, name string) []float32 {
	t.Helper()
	for _, p := range m.Params() {
		if p.Name == name {
			return p.Data
		}
	}
	t.Fatalf("no parameter %s", name)
	return nil
}

// The report's own expert forward must match the model's: with no tower, a
// shared-bottom head reads the expert's output directly.
func TestFirstLevelExpertsMatchModel(t *testing.T) {
	for _, act := range []string{mmoe.ActReLU, mmoe.ActTanh, mmoe.ActGELU} {
		m, err := mmoe.New(mmoe.Config{Arch: mmoe.ArchSharedBottom, EmbeddingDim: 2, ExpertHidden: []int{6, 5}, Tower: []int{}, Activation: act, Seed: 1}, gateLayout, []string{"t1", "t2"})
		if err != nil {
			t.Fatal(err)
		}
		b := gateBatch(50)
		ws := m.NewWorkspace(b.Rows)
		if err := m.Forward(ws, b); err != nil {
			t.Fatal(err)
		}
		x, rows, width := ws.Input()
		outs, names, err := firstLevelExperts(m, x, rows, width)
		if err != nil {
			t.Fatal(err)
		}
		if len(outs) != 1 || names[0] != "experts.0" || outs[0].h != 5 {
			t.Fatalf("%s: experts %v", act, names)
		}
		hw, hb := param(t, m, "heads.t1.weight"), param(t, m, "heads.t1.bias")
		for r := range rows {
			z := float64(hb[0])
			for j := range 5 {
				z += float64(hw[j]) * float64(outs[0].y[r*5+j])
			}
			if math.Abs(z-float64(ws.Logits[0][r])) > 1e-4 {
				t.Fatalf("%s row %d: logit from the report's expert %v, model %v", act, r, z, ws.Logits[0][r])
			}
		}
	}
}

func TestAnalyzeGatesFindsCollapseAndCopies(t *testing.T) {
	m, err := mmoe.New(mmoe.Config{Arch: mmoe.ArchMMoE, Experts: 4, EmbeddingDim: 2, ExpertHidden: []int{8}, Tower: []int{4}, Seed: 2}, gateLayout, []string{"t1", "t2"})
	if err != nil {
		t.Fatal(err)
	}
	b := gateBatch(400)
	a, err := AnalyzeGates(m, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Alerts) != 0 {
		t.Fatalf("a fresh model has alerts: %v", a.Alerts)
	}
	var sum float64
	for _, u := range a.Utilisation {
		sum += u
	}
	if math.Abs(sum-1) > 1e-5 || len(a.Weights) != 2 || len(a.Weights[0]) != 4 {
		t.Fatalf("utilisation %v (sum %v), weights %v", a.Utilisation, sum, a.Weights)
	}
	// Task t2's gate: weights 0, a large bias on expert 2: it collapses.
	clear(param(t, m, "gates.t2.weight"))
	param(t, m, "gates.t2.bias")[2] = 20
	// Expert 3 a copy of expert 1: the same function.
	copy(param(t, m, "experts.3.layers.0.weight"), param(t, m, "experts.1.layers.0.weight"))
	copy(param(t, m, "experts.3.layers.0.bias"), param(t, m, "experts.1.layers.0.bias"))
	a, err = AnalyzeGates(m, b)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(a.Alerts, "\n")
	if !strings.Contains(all, "gate collapse: task t2's gate gives expert 2") || strings.Contains(all, "task t1's gate") {
		t.Fatalf("alerts:\n%s", all)
	}
	if !strings.Contains(all, "same function: experts.1 and experts.3") || math.Abs(a.CKA[1][3]-1) > 1e-6 {
		t.Fatalf("alerts:\n%s\nCKA %v", all, a.CKA)
	}
	if a.TopExpert[1] != 2 || a.TopShare[1] != 1 {
		t.Fatalf("top expert %v share %v", a.TopExpert, a.TopShare)
	}
	// A dead expert: every unit's output constant.
	clear(param(t, m, "experts.0.layers.0.weight"))
	a, err = AnalyzeGates(m, b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(a.Alerts, "\n"), "dead expert: experts.0") {
		t.Fatalf("alerts: %v", a.Alerts)
	}
}

func TestTrainingReportWritesPage(t *testing.T) {
	dir, spec := genData(t, 12000, "  eval_every: 10\n")
	rep, err := NewReport(ReportConfig{Dir: filepath.Join(t.TempDir(), "report"), Valid: []string{filepath.Join(dir, "test-00000.parquet")}, SampleRows: 500})
	if err != nil {
		t.Fatal(err)
	}
	_, err = TrainBatch(context.Background(), TrainBatchConfig{
		SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")}, Valid: []string{filepath.Join(dir, "test-00000.parquet")},
		Out: t.TempDir(), MaxSteps: 30, EvalLimit: 1000, Observers: []Observer{rep},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Write(); err != nil {
		t.Fatal(err)
	}
	g := rep.Gates()
	if g == nil || g.Rows != 500 || g.Step != 30 || len(g.Experts) != 2 {
		t.Fatalf("gate analysis %+v", g)
	}
	html, err := os.ReadFile(filepath.Join(rep.cfg.Dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"loss.png", "metric.png", "weights.png", "gates.png", "utilisation.png", "similarity.png"} {
		if !bytes.Contains(html, []byte(`src="`+f+`"`)) {
			t.Errorf("index.html does not show %s", f)
		}
		data, err := os.ReadFile(filepath.Join(rep.cfg.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if img.Bounds().Dx() < 200 || img.Bounds().Dy() < 150 {
			t.Fatalf("%s: %v", f, img.Bounds())
		}
	}
	if !bytes.Contains(html, []byte("ctr")) || !bytes.Contains(html, []byte("Alert thresholds")) {
		t.Fatalf("index.html:\n%s", html)
	}
	if len(rep.evals) != 4 { // steps 10, 20, 30 and the final evaluation
		t.Fatalf("%d evaluations recorded", len(rep.evals))
	}
	if len(rep.steps) != 30 || len(rep.losses) != 2 {
		t.Fatalf("%d steps, %d loss series", len(rep.steps), len(rep.losses))
	}
}
