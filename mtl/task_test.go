package mtl

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustTasks(t testing.TB, cfgs ...TaskConfig) *TaskSet {
	t.Helper()
	s, err := NewTaskSet(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewTaskSetErrors(t *testing.T) {
	cases := []struct {
		name string
		cfgs []TaskConfig
		want string
	}{
		{"empty", nil, "no tasks"},
		{"unknown kind", []TaskConfig{{Name: "ctr", Kind: "poisson"}}, `unknown kind "poisson"`},
		{"duplicate", []TaskConfig{{Name: "ctr"}, {Name: "ctr"}}, "defined twice"},
		{"esmm no parent", []TaskConfig{{Name: "cvr", Kind: KindESMM}}, "needs a parent"},
		{"esmm missing parent", []TaskConfig{{Name: "cvr", Kind: KindESMM, Parent: "ctr"}}, `parent "ctr" is not a task`},
		{"esmm regression parent", []TaskConfig{{Name: "dwell", Kind: KindRegression}, {Name: "cvr", Kind: KindESMM, Parent: "dwell"}}, "want binary or esmm"},
		{"self parent", []TaskConfig{{Name: "cvr", Kind: KindESMM, Parent: "cvr"}}, "its own parent"},
		{"cycle", []TaskConfig{{Name: "a", Kind: KindESMM, Parent: "b"}, {Name: "b", Kind: KindESMM, Parent: "a"}}, "cycle"},
		{"parent on regression", []TaskConfig{{Name: "dwell", Kind: KindRegression, Parent: "x"}}, "only allowed for kinds"},
		{"binary parent missing", []TaskConfig{{Name: "ctr", Parent: "x"}}, `parent "x" is not a task`},
		{"binary parent esmm", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr"}, {Name: "buy", Parent: "cvr"}}, "must be binary"},
		{"binary cycle", []TaskConfig{{Name: "a", Parent: "b"}, {Name: "b", Parent: "a"}}, "cycle"},
		{"mask on esmm", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Mask: "ctr"}}, "entire space"},
		{"mask own label", []TaskConfig{{Name: "ctr", Mask: "ctr"}}, "own label"},
		{"mask on regression label", []TaskConfig{{Name: "dwell", Kind: KindRegression}, {Name: "ctr", Mask: "dwell"}}, "regression task"},
		{"counterfactual on binary", []TaskConfig{{Name: "ctr", Counterfactual: CounterfactualIPW}}, "needs an esmm task"},
		{"counterfactual unknown", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Counterfactual: "snips"}}, `unknown counterfactual "snips"`},
		{"counterfactual weight alone", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", CounterfactualWeight: 0.5}}, "need counterfactual"},
		{"counterfactual weight", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Counterfactual: CounterfactualDR, CounterfactualWeight: -1}}, "counterfactual_weight -1"},
		{"ipw clip", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Counterfactual: CounterfactualIPW, IPWClip: 0.5}}, "ipw_clip 0.5"},
		{"counterfactual delayed", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Counterfactual: CounterfactualIPW, DelayedFeedback: DelayedFNW}}, "cannot be combined"},
		{"impute head taken", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Counterfactual: CounterfactualDR}, {Name: "cvr_impute"}}, `head "cvr_impute"`},
		{"calibrator without parent", []TaskConfig{{Name: "ctr", CalibratorWeight: 0.5}}, "calibrator_weight needs"},
		{"calibrator on esmm", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", CalibratorWeight: 0.5}}, "calibrator_weight needs"},
		{"calibrator negative", []TaskConfig{{Name: "ctr"}, {Name: "buy", Parent: "ctr", CalibratorWeight: -1}}, "calibrator_weight -1"},
		{"negative mask weight", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", MaskedCVRWeight: -1}}, "masked_cvr_weight"},
		{"objective collision", []TaskConfig{{Name: "ctr"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr"}, {Name: "ctcvr"}}, `"ctcvr" is produced twice`},
		{"bad name", []TaskConfig{{Name: "c tr"}}, "name may only hold"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewTaskSet(c.cfgs)
			if err == nil || !errors.Is(err, ErrConfig) || !contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrConfig containing %q", err, c.want)
			}
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (func() bool {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
		return false
	})())
}

func TestObjectives(t *testing.T) {
	s := mustTasks(t, TaskConfig{Name: "ctr", Label: "click"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", Label: "buy"}, TaskConfig{Name: "dwell", Kind: KindRegression})
	if got, want := s.Objectives(), []string{"ctr", "cvr", "ctcvr", "dwell"}; !slices.Equal(got, want) {
		t.Fatalf("objectives %v, want %v", got, want)
	}
	if o := s.ObjectiveSpecs()[1]; o.Mask != "click" || o.Label != "buy" || o.Product {
		t.Fatalf("cvr objective %+v", o)
	}
	if got, want := s.Labels(), []string{"click", "buy", "dwell"}; !slices.Equal(got, want) {
		t.Fatalf("labels %v, want %v", got, want)
	}
	// A chain impression -> click -> cart -> buy names its products.
	c := mustTasks(t, TaskConfig{Name: "buy", Kind: KindESMM, Parent: "cart"}, TaskConfig{Name: "click"}, TaskConfig{Name: "cart", Kind: KindESMM, Parent: "click"})
	if got, want := c.Objectives(), []string{"buy", "click_x_cart_x_buy", "click", "cart", "click_x_cart"}; !slices.Equal(got, want) {
		t.Fatalf("chain objectives %v, want %v", got, want)
	}

	logits := [][]float32{{0, 2, -40}, {0, -1, 40}, {1.5, -2, 7}}
	scores, err := s.PredictTo(nil, logits)
	if err != nil {
		t.Fatal(err)
	}
	for r := range 3 {
		pctr := sigmoid(float64(logits[0][r]))
		pcvr := sigmoid(float64(logits[1][r]))
		want := []float64{pctr, pcvr, pctr * pcvr, float64(logits[2][r])}
		for o := range want {
			if d := math.Abs(float64(scores[o][r]) - want[o]); d > 1e-6*math.Max(1, math.Abs(want[o])) {
				t.Errorf("row %d objective %s: %v, want %v", r, s.Objectives()[o], scores[o][r], want[o])
			}
		}
	}
	if _, err := s.PredictTo(scores[:2], logits); !errors.Is(err, ErrShape) {
		t.Fatalf("short scores: err = %v, want ErrShape", err)
	}
}

// totalLoss is Σ_t tw_t·L_t, the objective whose gradient LossTo returns.
func totalLoss(t *testing.T, s *TaskSet, logits, labels [][]float32, w []float32, tw []float64) float64 {
	d := make([][]float32, len(logits))
	for i := range d {
		d[i] = make([]float32, len(logits[i]))
	}
	losses, err := s.LossTo(nil, d, logits, labels, w, tw)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for i, l := range losses {
		sum += tw[i] * l
	}
	return sum
}

func TestLossGradientFiniteDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	sets := map[string]*TaskSet{
		"binary+regression": mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "dwell", Kind: KindRegression}),
		"esmm":              mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr"}),
		"esmm+masked":       mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", MaskedCVRWeight: 0.7}),
		"chain":             mustTasks(t, TaskConfig{Name: "click"}, TaskConfig{Name: "cart", Kind: KindESMM, Parent: "click", MaskedCVRWeight: 0.3}, TaskConfig{Name: "buy", Kind: KindESMM, Parent: "cart"}),
	}
	for name, s := range sets {
		for _, scale := range []float64{1, 4, 30} {
			T, n := s.Len(), 23
			logits := make([][]float32, T)
			labels := make([][]float32, T)
			for i := range T {
				logits[i] = make([]float32, n)
				labels[i] = make([]float32, n)
				for r := range n {
					logits[i][r] = float32(scale * (2*rng.Float64() - 1))
					if s.Task(i).Kind == KindRegression {
						labels[i][r] = float32(rng.NormFloat64())
					} else if p := s.Parent(i); p >= 0 {
						labels[i][r] = labels[p][r] * float32(rng.IntN(2)) // joint event
					} else {
						labels[i][r] = float32(rng.IntN(2))
					}
				}
			}
			if scale == 30 { // the extremes themselves
				logits[0][0], logits[T-1][1] = 30, -30
			}
			w := make([]float32, n)
			for r := range w {
				w[r] = float32(0.2 + 2*rng.Float64())
			}
			tw := make([]float64, T)
			for i := range tw {
				tw[i] = 0.5 + rng.Float64()
			}
			d := make([][]float32, T)
			for i := range d {
				d[i] = make([]float32, n)
			}
			if _, err := s.LossTo(nil, d, logits, labels, w, tw); err != nil {
				t.Fatal(err)
			}
			for i := range T {
				for r := range n {
					if math.IsNaN(float64(d[i][r])) || math.IsInf(float64(d[i][r]), 0) {
						t.Fatalf("%s scale %v: dLogit[%d][%d] = %v", name, scale, i, r, d[i][r])
					}
					z := logits[i][r]
					h := 1e-3 * math.Max(1, math.Abs(float64(z)))
					zp, zm := float32(float64(z)+h), float32(float64(z)-h)
					logits[i][r] = zp
					lp := totalLoss(t, s, logits, labels, w, tw)
					logits[i][r] = zm
					lm := totalLoss(t, s, logits, labels, w, tw)
					logits[i][r] = z
					fd := (lp - lm) / float64(zp-zm)
					if diff := math.Abs(fd - float64(d[i][r])); diff > 2e-4+2e-3*math.Abs(fd) {
						t.Errorf("%s scale %v: head %d row %d logit %v: grad %v, finite difference %v", name, scale, i, r, z, d[i][r], fd)
					}
				}
			}
		}
	}
}

func TestLossValues(t *testing.T) {
	s := mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", MaskedCVRWeight: 0.5}, TaskConfig{Name: "dwell", Kind: KindRegression})
	logits := [][]float32{{0.3, -1.2, 2}, {1, 0.5, -0.7}, {1, 2, 3}}
	labels := [][]float32{{1, 0, 1}, {1, 0, 0}, {1.5, 2, 2}}
	w := []float32{1, 2, 3}
	d := [][]float32{make([]float32, 3), make([]float32, 3), make([]float32, 3)}
	losses, err := s.LossTo(nil, d, logits, labels, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	ll := func(p, y float64) float64 { return -y*math.Log(p) - (1-y)*math.Log(1-p) }
	var want [3]float64
	var mask, mw float64
	for r := range 3 {
		pa, pb := sigmoid(float64(logits[0][r])), sigmoid(float64(logits[1][r]))
		wr := float64(w[r])
		want[0] += wr * ll(pa, float64(labels[0][r])) / 6
		want[1] += wr * ll(pa*pb, float64(labels[1][r])) / 6
		if labels[0][r] == 1 {
			mask += wr * ll(pb, float64(labels[1][r]))
			mw += wr
		}
		e := float64(logits[2][r] - labels[2][r])
		want[2] += wr * e * e / 6
	}
	want[1] += 0.5 * mask / mw
	for i := range want {
		if math.Abs(losses[i]-want[i]) > 1e-9 {
			t.Errorf("task %d loss %v, want %v", i, losses[i], want[i])
		}
	}
}

func TestLossErrors(t *testing.T) {
	s := mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr"})
	d := [][]float32{make([]float32, 2), make([]float32, 2)}
	_, err := s.LossTo(nil, d, [][]float32{{0, 0}, {0, 0}}, [][]float32{{1, 2}, {0, 0}}, nil, nil)
	var le *LossError
	if !errors.As(err, &le) || !errors.Is(err, ErrLabel) || le.Task != "ctr" || le.Row != 1 {
		t.Fatalf("label 2: err = %v", err)
	}
	_, err = s.LossTo(nil, d, [][]float32{{0, 0}, {0, 0}}, [][]float32{{1, 0}, {0.5, 0}}, nil, nil)
	if !errors.As(err, &le) || !errors.Is(err, ErrLabel) || le.Task != "cvr" || le.Row != 0 || !contains(err.Error(), "0 or 1") {
		t.Fatalf("label 0.5: err = %v", err)
	}
	_, err = s.LossTo(nil, d, [][]float32{{0, float32(math.NaN())}, {0, 0}}, [][]float32{{1, 0}, {0, 0}}, nil, nil)
	if !errors.As(err, &le) || !errors.Is(err, ErrNonFinite) || le.Task != "ctr" || le.Row != 1 || !contains(err.Error(), "learning rate") {
		t.Fatalf("NaN logit: err = %v", err)
	}
	_, err = s.LossTo(nil, d, [][]float32{{0, 0}, {float32(math.Inf(1)), 0}}, [][]float32{{1, 0}, {0, 0}}, nil, nil)
	if !errors.As(err, &le) || !errors.Is(err, ErrNonFinite) || le.Task != "cvr" || le.Row != 0 {
		t.Fatalf("Inf logit: err = %v", err)
	}
	_, err = s.LossTo(nil, d, [][]float32{{0, 0}, {0, 0}}, [][]float32{{1, 0}, {0, 0}}, []float32{1, -1}, nil)
	if !errors.Is(err, ErrLabel) {
		t.Fatalf("negative weight: err = %v", err)
	}
	_, err = s.LossTo(nil, d, [][]float32{{0, 0}, {0}}, [][]float32{{1, 0}, {0, 0}}, nil, nil)
	if !errors.Is(err, ErrShape) {
		t.Fatalf("ragged: err = %v", err)
	}
}

func BenchmarkLoss1024x2(b *testing.B) {
	s := mustTasks(b, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr"})
	rng := rand.New(rand.NewPCG(1, 1))
	n := 1024
	logits, labels, d := make([][]float32, 2), make([][]float32, 2), make([][]float32, 2)
	for i := range 2 {
		logits[i], labels[i], d[i] = make([]float32, n), make([]float32, n), make([]float32, n)
		for r := range n {
			logits[i][r] = float32(rng.NormFloat64() * 3)
			labels[i][r] = float32(rng.IntN(2))
		}
	}
	losses := make([]float64, 2)
	tw := []float64{1, 1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.LossTo(losses, d, logits, labels, nil, tw); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
}

func TestLossExtremeLogitsFinite(t *testing.T) {
	s := mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", MaskedCVRWeight: 1})
	vals := []float32{-3e38, -1e4, -30, 0, 30, 1e4, 3e38}
	var za, zb, ya, yb []float32
	for _, a := range vals {
		for _, b := range vals {
			for _, y := range [][2]float32{{0, 0}, {1, 0}, {1, 1}} {
				za, zb, ya, yb = append(za, a), append(zb, b), append(ya, y[0]), append(yb, y[1])
			}
		}
	}
	n := len(za)
	d := [][]float32{make([]float32, n), make([]float32, n)}
	losses, err := s.LossTo(nil, d, [][]float32{za, zb}, [][]float32{ya, yb}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range losses {
		if math.IsNaN(l) || math.IsInf(l, 0) {
			t.Fatalf("task %d loss %v", i, l)
		}
	}
	// Per row |dL/dz| is at most 1 for each logloss term, divided by its
	// weight sum: ctr gets its own logloss and the ESMM term (1/n each),
	// cvr the ESMM term (1/n) and the masked term (1/Wm, Wm = 2n/3).
	for h := range d {
		for r, g := range d[h] {
			if math.IsNaN(float64(g)) || math.Abs(float64(g))*float64(n) > 2.5+1e-3 {
				t.Fatalf("head %d row %d (logits %v, %v): gradient %v", h, r, za[r], zb[r], g)
			}
		}
	}
}
