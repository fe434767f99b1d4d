package mtl

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// pairAUC is the O(n²) definition: weighted pairs (positive, negative)
// ordered correctly, ties one half.
func pairAUC(p, y, w []float32) float64 {
	var num, den float64
	for i := range p {
		for j := range p {
			wp := float64(w[i]) * float64(y[i])
			wn := float64(w[j]) * (1 - float64(y[j]))
			if wp == 0 || wn == 0 {
				continue
			}
			den += wp * wn
			switch {
			case p[i] > p[j]:
				num += wp * wn
			case p[i] == p[j]:
				num += wp * wn / 2
			}
		}
	}
	return num / den
}

func randMetricsData(rng *rand.Rand, n int, levels int) (p, y, w []float32, g []uint64) {
	p, y, w, g = make([]float32, n), make([]float32, n), make([]float32, n), make([]uint64, n)
	for i := range n {
		// few distinct scores, so ties are frequent; negative scores too
		p[i] = float32(rng.IntN(levels)-levels/3) / float32(levels)
		if rng.Float32() < 0.3+0.4*max(p[i], 0) {
			y[i] = 1
		}
		w[i] = float32(rng.IntN(3) + 1)
		g[i] = uint64(rng.IntN(12)) << (8 * uint(rng.IntN(2))) // some keys beyond the low byte
	}
	return
}

func TestAUCMatchesPairwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	for _, n := range []int{2, 7, 100, 777} {
		for _, levels := range []int{3, 20, 1000} {
			p, y, w, _ := randMetricsData(rng, n, levels)
			y[0], y[1] = 0, 1
			want := pairAUC(p, y, w)
			if got := AUC(p, y, w); math.Abs(got-want) > 1e-12 {
				t.Fatalf("n %d levels %d: AUC %v, pairwise %v", n, levels, got, want)
			}
			ones := make([]float32, n)
			for i := range ones {
				ones[i] = 1
			}
			if got, want := AUC(p, y, nil), pairAUC(p, y, ones); math.Abs(got-want) > 1e-12 {
				t.Fatalf("n %d unweighted: AUC %v, pairwise %v", n, got, want)
			}
		}
	}
	if auc := AUC([]float32{0.1, 0.2}, []float32{1, 1}, nil); !math.IsNaN(auc) {
		t.Fatalf("one class: AUC %v, want NaN", auc)
	}
	if auc := AUC([]float32{0, float32(math.Copysign(0, -1)), 1}, []float32{1, 0, 1}, nil); auc != 0.75 {
		t.Fatalf("-0 and +0 must tie: AUC %v, want 0.75", auc)
	}
}

func TestGAUCMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	p, y, w, g := randMetricsData(rng, 600, 15)
	byGroup := map[uint64][]int{}
	for i, k := range g {
		byGroup[k] = append(byGroup[k], i)
	}
	var sum, wsum float64
	used := 0
	for _, rows := range byGroup {
		var gp, gy, gw []float32
		var pos, neg, wg float64
		for _, r := range rows {
			gp, gy, gw = append(gp, p[r]), append(gy, y[r]), append(gw, w[r])
			pos += float64(y[r])
			neg += 1 - float64(y[r])
			wg += float64(w[r])
		}
		if pos == 0 || neg == 0 {
			continue
		}
		used++
		sum += wg * pairAUC(gp, gy, gw)
		wsum += wg
	}
	got, n := GAUC(p, y, g, w)
	if n != used || math.Abs(got-sum/wsum) > 1e-12 {
		t.Fatalf("GAUC %v over %d groups, direct %v over %d", got, n, sum/wsum, used)
	}
	if used < 5 {
		t.Fatalf("test data too easy: %d groups", used)
	}
}

func TestAccumulator(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	p, y, w, g := randMetricsData(rng, 300, 50)
	for i := range p {
		p[i] = min(max(p[i], 0.01), 0.99) // probabilities
	}
	a, err := NewAccumulator(AccumulatorConfig{Objective: "ctr", Capacity: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddBatch(p[:100], y[:100], nil, g[:100], w[:100]); err != nil {
		t.Fatal(err)
	}
	if err := a.AddBatch(p[100:], y[100:], nil, g[100:], w[100:]); err != nil {
		t.Fatal(err)
	}
	m, err := a.Compute()
	if err != nil {
		t.Fatal(err)
	}
	var ll, W, sp, sy float64
	for i := range p {
		pi, yi, wi := float64(p[i]), float64(y[i]), float64(w[i])
		ll += wi * -(yi*math.Log(pi) + (1-yi)*math.Log(1-pi))
		W += wi
		sp += wi * pi
		sy += wi * yi
	}
	gauc, _ := GAUC(p, y, g, w)
	checks := []struct {
		name      string
		got, want float64
	}{
		{"auc", m.AUC, pairAUC(p, y, w)}, {"gauc", m.GAUC, gauc}, {"logloss", m.LogLoss, ll / W},
		{"calibration", m.Calibration, sp / sy}, {"rmse", m.RMSE, RMSE(p, y, w)}, {"weight", m.WeightSum, W},
		{"logloss func", LogLoss(p, y, w), ll / W}, {"calibration func", Calibration(p, y, w), sp / sy},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9*math.Max(1, math.Abs(c.want)) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if m.Count != 300 {
		t.Errorf("count %d", m.Count)
	}

	// Masked rows and windows.
	mask := make([]float32, len(p))
	for i := range mask {
		mask[i] = float32(i % 2)
	}
	win, _ := NewAccumulator(AccumulatorConfig{Objective: "cvr", Window: 50})
	if err := win.AddBatch(p, y, mask, nil, nil); err != nil {
		t.Fatal(err)
	}
	if win.Len() != 50 {
		t.Fatalf("window holds %d rows, want 50", win.Len())
	}
	var lp, ly []float32
	for i := 201; i < 300; i += 2 { // the last 50 masked-in rows
		lp, ly = append(lp, p[i]), append(ly, y[i])
	}
	wm, err := win.Compute()
	if err != nil {
		t.Fatal(err)
	}
	if want := AUC(lp, ly, nil); math.Abs(wm.AUC-want) > 1e-12 || !math.IsNaN(wm.GAUC) {
		t.Fatalf("window AUC %v want %v, GAUC %v want NaN", wm.AUC, want, wm.GAUC)
	}

	// JSON: NaN becomes null and back.
	b, err := json.Marshal(wm)
	if err != nil {
		t.Fatal(err)
	}
	var back Metrics
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(back.GAUC) || back.AUC != wm.AUC || back.Objective != "cvr" {
		t.Fatalf("round trip %s -> %+v", b, back)
	}

	a.Reset()
	a.Add(float32(math.NaN()), 1, 0, 1)
	if _, err := a.Compute(); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("NaN prediction: %v", err)
	}
	a.Reset()
	a.Add(0.5, 2, 0, 1)
	if _, err := a.Compute(); !errors.Is(err, ErrLabel) {
		t.Fatalf("label 2: %v", err)
	}
}

func BenchmarkAUC1M(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 1 << 20
	a, _ := NewAccumulator(AccumulatorConfig{Objective: "ctr", Capacity: n})
	for range n {
		p := rng.Float32()
		var y float32
		if rng.Float32() < p*0.1 {
			y = 1
		}
		a.Add(p, y, rng.Uint64N(50_000), 1)
	}
	a.Compute() // size the scratch
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Compute(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds()/1e6, "Mrows/s")
}

func TestEvaluatorAndLabelIndex(t *testing.T) {
	tasks := mustTasks(t, TaskConfig{Name: "ctr", Label: "click"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", Label: "buy"})
	cols := []string{"buy", "dwell", "click"}
	idx, err := tasks.LabelIndex(cols)
	if err != nil || idx[0] != 2 || idx[1] != 0 {
		t.Fatalf("LabelIndex = %v, %v", idx, err)
	}
	if _, err := tasks.LabelIndex([]string{"click"}); !errors.Is(err, ErrConfig) || !contains(err.Error(), `"buy" not found`) {
		t.Fatalf("missing label: %v", err)
	}
	e, err := NewEvaluator(tasks, cols, 0)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(31, 31))
	n := 400
	labels := [][]float32{make([]float32, n), make([]float32, n), make([]float32, n)}
	logits := [][]float32{randSlice(rng, n, 1), randSlice(rng, n, 1)}
	for r := range n {
		if rng.Float32() < 0.4 {
			labels[2][r] = 1
			if rng.Float32() < 0.5 {
				labels[0][r] = 1
			}
		}
	}
	scores, _ := tasks.PredictTo(nil, logits)
	if err := e.AddBatch(scores, labels, nil, nil); err != nil {
		t.Fatal(err)
	}
	ms, err := e.Compute()
	if err != nil {
		t.Fatal(err)
	}
	var cp, cy []float32 // cvr on clicked rows
	for r := range n {
		if labels[2][r] == 1 {
			cp, cy = append(cp, scores[1][r]), append(cy, labels[0][r])
		}
	}
	if ms[0].AUC != AUC(scores[0], labels[2], nil) || ms[1].AUC != AUC(cp, cy, nil) || ms[1].Count != int64(len(cp)) || ms[2].AUC != AUC(scores[2], labels[0], nil) {
		t.Fatalf("evaluator metrics %+v", ms)
	}
	if ms[2].Objective != "ctcvr" || ms[2].Count != int64(n) {
		t.Fatalf("ctcvr metrics %+v", ms[2])
	}
}
