package mtl

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSpacesAndHeads(t *testing.T) {
	s := mustTasks(t,
		TaskConfig{Name: "ctr", Label: "click"},
		TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", Label: "buy", Counterfactual: CounterfactualDR},
		TaskConfig{Name: "naive", Label: "buy", Mask: "click"},
		TaskConfig{Name: "dwell", Kind: KindRegression, Mask: "logged_in"},
		TaskConfig{Name: "cart", Label: "cart", Parent: "ctr", CalibratorWeight: 0.5, Mask: "logged_in"},
	)
	if got, want := s.Columns(), []string{"click", "buy", "buy", "dwell", "cart", "logged_in"}; !slices.Equal(got, want) {
		t.Errorf("columns %v, want %v", got, want)
	}
	if got, want := s.Heads(), []string{"ctr", "cvr", "naive", "dwell", "cart", "cvr_impute"}; !slices.Equal(got, want) {
		t.Errorf("heads %v, want %v", got, want)
	}
	if got, want := s.HeadParents(), []int{-1, 0, -1, -1, 0, -1}; !slices.Equal(got, want) {
		t.Errorf("head parents %v, want %v", got, want)
	}
	masks := map[string]string{}
	for _, o := range s.ObjectiveSpecs() {
		masks[o.Name] = o.Mask
	}
	want := map[string]string{"ctr": "", "cvr": "click", "ctcvr": "", "naive": "click", "dwell": "logged_in", "cart": "logged_in"}
	for k, v := range want {
		if m, ok := masks[k]; !ok || m != v {
			t.Errorf("objective %q mask %q (present %v), want %q", k, m, ok, v)
		}
	}
	if len(masks) != len(want) {
		t.Errorf("objectives %v: the imputation head has no objective", s.Objectives())
	}
	if c := s.Task(1); c.CounterfactualWeight != 1 || c.IPWClip != 15 {
		t.Errorf("counterfactual defaults: weight %v, clip %v", c.CounterfactualWeight, c.IPWClip)
	}
	// A binary task's parent does not make it a product.
	if got := s.chain[4]; !slices.Equal(got, []int{4}) {
		t.Errorf("chain of a binary task with a parent: %v", got)
	}
	// PredictTo takes every head and scores the objectives.
	logits := make([][]float32, len(s.Heads()))
	for h := range logits {
		logits[h] = []float32{0.5, -1}
	}
	scores, err := s.PredictTo(nil, logits)
	if err != nil || len(scores) != len(s.Objectives()) {
		t.Fatalf("PredictTo: %d scores, %v", len(scores), err)
	}
	if _, err := s.PredictTo(nil, logits[:5]); err == nil {
		t.Error("PredictTo without the imputation head: no error")
	}
}

// refFunnelLoss is the loss LossTo should compute, written out directly
// from the documented formulas: each task's mean over its sample space
// (mask column, and the rows a delayed task re-sends skipped), the
// calibrator, and the counterfactual risk with the propensities frozen
// (prop[t][r], already clipped; the stop-gradient makes them constants),
// and for dr the imputed label in the risk (frozen[t][r]) and the task's
// logit in the imputation loss (frozen2[t][r]).
func refFunnelLoss(s *TaskSet, logits, labels [][]float32, w []float32, tw []float64, prop, frozen, frozen2 [][]float64) float64 {
	ll := func(p, y float64) float64 { return -y*math.Log(p) - (1-y)*math.Log(1-p) }
	sig := func(z float32) float64 { return 1 / (1 + math.Exp(-float64(z))) }
	softplus := func(x float64) float64 { return math.Log1p(math.Exp(x)) }
	d := s.Delayed()
	n := len(logits[0])
	var total float64
	for t := range s.Len() {
		c := s.Task(t)
		var sum, W, msum, Wm float64
		for r := range n {
			if d >= 0 && t != d && labels[d][r] == 1 {
				continue
			}
			if m := slices.Index(s.Columns(), c.Mask); c.Mask != "" && labels[m][r] != 1 {
				continue
			}
			wr := float64(w[r])
			W += wr
			y := float64(labels[t][r])
			switch c.Kind {
			case KindRegression:
				e := float64(logits[t][r]) - y
				sum += wr * e * e
			case KindBinary:
				sum += wr * ll(sig(logits[t][r]), y)
				if c.CalibratorWeight > 0 {
					sum += wr * c.CalibratorWeight * math.Max(sig(logits[t][r])-sig(logits[s.Parent(t)][r]), 0)
				}
			case KindESMM:
				p := sig(logits[t][r])
				for _, h := range s.chain[t][1:] {
					p *= sig(logits[h][r])
				}
				sum += wr * ll(p, y)
				if c.MaskedCVRWeight > 0 && labels[s.Parent(t)][r] == 1 {
					msum += wr * ll(sig(logits[t][r]), y)
					Wm += wr
				}
				if c.Counterfactual == "" {
					break
				}
				ipw := float64(labels[s.Parent(t)][r]) / prop[t][r]
				delta := ll(sig(logits[t][r]), y)
				if c.Counterfactual == CounterfactualIPW {
					sum += wr * c.CounterfactualWeight * ipw * delta
					break
				}
				// ê = logloss(r̃, pCVR) with r̃ frozen in the risk; the
				// imputation loss with the task's logit frozen.
				z := float64(logits[t][r])
				rt := sig(logits[s.impute[t]][r])
				imp := softplus(z) - frozen[t][r]*z
				e := (rt - y) * frozen2[t][r]
				sum += wr * c.CounterfactualWeight * (imp + ipw*(delta-imp) + ipw*e*e)
			}
		}
		if W == 0 {
			continue
		}
		l := sum / W
		if Wm > 0 {
			l += c.MaskedCVRWeight * msum / Wm
		}
		total += tw[t] * l
	}
	return total
}

// funnelBatch draws logits for every head and labels for every column:
// roots and extra mask columns at random, a child's label (esmm or binary
// with a parent: the next step of a funnel) 1 only where its parent's is.
func funnelBatch(rng *rand.Rand, s *TaskSet, n int, scale float64) (logits, labels [][]float32, w []float32) {
	logits = make([][]float32, len(s.Heads()))
	for h := range logits {
		logits[h] = make([]float32, n)
		for r := range n {
			logits[h][r] = float32(scale * (2*rng.Float64() - 1))
		}
	}
	labels = make([][]float32, len(s.Columns()))
	done := make([]bool, len(labels))
	var fill func(c int)
	fill = func(c int) {
		if done[c] {
			return
		}
		done[c] = true
		labels[c] = make([]float32, n)
		p := -1
		if c < s.Len() {
			p = s.Parent(c)
			if s.Task(c).Kind == KindRegression {
				for r := range n {
					labels[c][r] = float32(rng.NormFloat64())
				}
				return
			}
		}
		if p >= 0 {
			fill(p)
		}
		for r := range n {
			if p < 0 || labels[p][r] == 1 {
				labels[c][r] = float32(rng.IntN(2))
			}
		}
	}
	for c := range labels {
		fill(c)
	}
	w = make([]float32, n)
	for r := range w {
		w[r] = float32(0.2 + 2*rng.Float64())
	}
	return logits, labels, w
}

// checkFunnelGradient compares LossTo with refFunnelLoss and its gradient
// with central differences of it, and returns the mismatches; corrupt adds
// 10% to the largest gradient coordinate first.
func checkFunnelGradient(t *testing.T, s *TaskSet, logits, labels [][]float32, w []float32, tw []float64, corrupt bool) int {
	t.Helper()
	H, n := len(logits), len(logits[0])
	d := make([][]float32, H)
	for i := range d {
		d[i] = make([]float32, n)
	}
	losses, err := s.LossTo(nil, d, logits, labels, w, tw)
	if err != nil {
		t.Fatal(err)
	}
	prop := make([][]float64, s.Len())
	frozen := make([][]float64, s.Len())
	frozen2 := make([][]float64, s.Len())
	for k := range s.Len() {
		c := s.Task(k)
		if c.Counterfactual == "" {
			continue
		}
		prop[k], frozen[k], frozen2[k] = make([]float64, n), make([]float64, n), make([]float64, n)
		for r := range n {
			p := 1.0
			for _, h := range s.chain[s.Parent(k)] {
				p /= 1 + math.Exp(-float64(logits[h][r]))
			}
			prop[k][r] = math.Max(p, 1/c.IPWClip)
			if c.Counterfactual == CounterfactualDR {
				frozen[k][r] = 1 / (1 + math.Exp(-float64(logits[s.impute[k]][r])))
				frozen2[k][r] = float64(logits[k][r])
			}
		}
	}
	var got float64
	for i, l := range losses {
		got += tw[i] * l
	}
	if want := refFunnelLoss(s, logits, labels, w, tw, prop, frozen, frozen2); math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
		t.Errorf("loss %v, reference %v", got, want)
	}
	if corrupt {
		bi, br := 0, 0
		for i := range d {
			for r := range d[i] {
				if math.Abs(float64(d[i][r])) > math.Abs(float64(d[bi][br])) {
					bi, br = i, r
				}
			}
		}
		d[bi][br] *= 1.1
	}
	bad := 0
	for i := range H {
		for r := range n {
			z := logits[i][r]
			h := 1e-3 * math.Max(1, math.Abs(float64(z)))
			if nearCalibratorKink(s, logits, i, r, 2*h) {
				continue // max(·, 0) has no derivative there
			}
			zp, zm := float32(float64(z)+h), float32(float64(z)-h)
			logits[i][r] = zp
			lp := refFunnelLoss(s, logits, labels, w, tw, prop, frozen, frozen2)
			logits[i][r] = zm
			lm := refFunnelLoss(s, logits, labels, w, tw, prop, frozen, frozen2)
			logits[i][r] = z
			fd := (lp - lm) / float64(zp-zm)
			if diff := math.Abs(fd - float64(d[i][r])); diff > 2e-4+2e-3*math.Abs(fd) {
				bad++
				if !corrupt {
					t.Errorf("head %s row %d logit %v: grad %v, finite difference %v", s.Heads()[i], r, z, d[i][r], fd)
				}
			}
		}
	}
	return bad
}

// nearCalibratorKink reports whether head i's logit in row r is within
// eps of a calibrator's kink: max(σ(child) − σ(parent), 0) where the two
// logits are equal, so a finite difference across it means nothing.
func nearCalibratorKink(s *TaskSet, logits [][]float32, i, r int, eps float64) bool {
	for k := range s.Len() {
		if s.Task(k).CalibratorWeight == 0 {
			continue
		}
		p := s.Parent(k)
		if (i == k || i == p) && math.Abs(float64(logits[k][r])-float64(logits[p][r])) < eps {
			return true
		}
	}
	return false
}

// TestFunnelLossGradient checks masks, ESCM²'s counterfactual risks and
// AITM's calibrator against their formulas written out, and their
// gradients against finite differences, including a check that a 10%
// error in one coordinate is caught.
func TestFunnelLossGradient(t *testing.T) {
	sets := map[string][]TaskConfig{
		"binary mask": {{Name: "ctr", Label: "click"}, {Name: "cvr", Label: "buy", Parent: "ctr", Mask: "click"}},
		"mask column": {{Name: "ctr", Label: "click"}, {Name: "dwell", Kind: KindRegression, Mask: "member"}, {Name: "like", Mask: "member"}},
		"mask resend": {{Name: "ctr", Label: "click", Mask: "member"},
			{Name: "cvr", Kind: KindESMM, Parent: "ctr", Label: "buy", DelayedFeedback: DelayedResend}},
		"ipw":        {{Name: "ctr", Label: "click"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Label: "buy", Counterfactual: CounterfactualIPW, CounterfactualWeight: 0.7}},
		"ipw masked": {{Name: "ctr", Label: "click"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Label: "buy", Counterfactual: CounterfactualIPW, MaskedCVRWeight: 0.4, IPWClip: 3}},
		"dr":         {{Name: "ctr", Label: "click"}, {Name: "cvr", Kind: KindESMM, Parent: "ctr", Label: "buy", Counterfactual: CounterfactualDR, CounterfactualWeight: 0.5}},
		"dr chain": {{Name: "click"}, {Name: "cart", Kind: KindESMM, Parent: "click"},
			{Name: "buy", Kind: KindESMM, Parent: "cart", Counterfactual: CounterfactualDR, IPWClip: 50}},
		"calibrator": {{Name: "click"}, {Name: "cart", Parent: "click", CalibratorWeight: 0.6},
			{Name: "buy", Parent: "cart", CalibratorWeight: 0.8}},
	}
	// In a fixed order, each from its own seed: the data must not depend
	// on the map's iteration order.
	for i, name := range slices.Sorted(maps.Keys(sets)) {
		cfgs := sets[name]
		rng := rand.New(rand.NewPCG(11, uint64(i)))
		s := mustTasks(t, cfgs...)
		for _, scale := range []float64{1, 4} {
			logits, labels, w := funnelBatch(rng, s, 23, scale)
			tw := make([]float64, s.Len())
			for i := range tw {
				tw[i] = 0.5 + rng.Float64()
			}
			if bad := checkFunnelGradient(t, s, logits, labels, w, tw, false); bad != 0 {
				t.Errorf("%s scale %v: %d gradient mismatches", name, scale, bad)
			}
			if bad := checkFunnelGradient(t, s, logits, labels, w, tw, true); bad != 1 {
				t.Errorf("%s scale %v: a 10%% error in one coordinate gave %d mismatches, want 1", name, scale, bad)
			}
		}
	}
}

// TestMaskNormalisation: a task's loss is the mean over its own space,
// whatever the rows outside it hold, and a batch with no row in the space
// adds nothing.
func TestMaskNormalisation(t *testing.T) {
	s := mustTasks(t, TaskConfig{Name: "ctr", Label: "click"}, TaskConfig{Name: "cvr", Label: "buy", Mask: "click"})
	logits := [][]float32{{0, 0, 0, 0}, {2, -1, 30, -30}}
	labels := [][]float32{{1, 1, 0, 0}, {1, 0, 0, 0}}
	w := []float32{1, 3, 5, 7}
	d := [][]float32{make([]float32, 4), make([]float32, 4)}
	losses, err := s.LossTo(nil, d, logits, labels, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := (1*softplus(-2) + 3*softplus(-1)) / 4
	if math.Abs(losses[1]-want) > 1e-12 {
		t.Errorf("masked loss %v, want %v (the mean over the 2 clicked rows)", losses[1], want)
	}
	if d[1][2] != 0 || d[1][3] != 0 {
		t.Errorf("rows outside the space got gradients %v", d[1])
	}
	labels[0] = []float32{0, 0, 0, 0}
	labels[1] = []float32{0, 0, 0, 0}
	if losses, err = s.LossTo(losses, d, logits, labels, w, nil); err != nil || losses[1] != 0 || slices.ContainsFunc(d[1], func(v float32) bool { return v != 0 }) {
		t.Errorf("empty space: loss %v, gradients %v, err %v", losses[1], d[1], err)
	}
}

// TestCounterfactualFixedPoints trains a CTR, a CVR and (dr) an imputation
// logit shared by all rows of a population with click rate a and
// conversion rate b among clicks, the CVR head with ESCM²'s risk alone:
// its optimum is the CVR b over the entire space (the conversion label
// being 0 on the unclicked rows), and dr's imputed label converges to b
// too.
func TestCounterfactualFixedPoints(t *testing.T) {
	const a, b = 0.2, 0.3 // click rate, conversion rate among clicks
	// Rows: no click (weight 1-a), click without conversion a(1-b), click
	// and conversion ab.
	labels := [][]float32{{0, 1, 1}, {0, 0, 1}}
	w := []float32{1 - a, a * (1 - b), a * b}
	for _, mode := range []string{CounterfactualIPW, CounterfactualDR} {
		s := mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", Counterfactual: mode, CounterfactualWeight: 1})
		z := make([]float64, len(s.Heads()))
		d := make([][]float32, len(z))
		for h := range d {
			d[h] = make([]float32, 3)
		}
		// The CVR head follows the counterfactual term alone: the gradient
		// of the plain ESMM loss is taken off.
		plain := mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr"})
		dp := [][]float32{make([]float32, 3), make([]float32, 3)}
		logits := make([][]float32, len(z))
		for h := range z {
			logits[h] = make([]float32, 3)
		}
		for range 40000 {
			for h := range z {
				for r := range 3 {
					logits[h][r] = float32(z[h])
				}
			}
			if _, err := s.LossTo(nil, d, logits, labels, w, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := plain.LossTo(nil, dp, logits[:2], labels, w, nil); err != nil {
				t.Fatal(err)
			}
			for h := range z {
				var g float64
				for r, v := range d[h] {
					g += float64(v)
					if h == 1 {
						g -= float64(dp[1][r])
					}
				}
				z[h] -= 2 * g
			}
		}
		cvr := 1 / (1 + math.Exp(-z[1]))
		if math.Abs(cvr-b) > 1e-3 {
			t.Errorf("%s: the counterfactual risk alone gives pCVR %.5f, want %.5f", mode, cvr, b)
		}
		if mode == CounterfactualDR {
			if imp := 1 / (1 + math.Exp(-z[2])); math.Abs(imp-b) > 1e-3 {
				t.Errorf("dr: imputed label %.5f, want %.5f (the CVR among clicks)", imp, b)
			}
		}
	}
}
