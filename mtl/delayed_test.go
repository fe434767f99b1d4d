package mtl

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestDelayedFeedbackConfig(t *testing.T) {
	for name, cfgs := range map[string][]TaskConfig{
		"regression": {{Name: "dwell", Kind: KindRegression, DelayedFeedback: DelayedFNW}},
		"unknown":    {{Name: "ctr", DelayedFeedback: "esdfm"}},
		"two": {{Name: "ctr", DelayedFeedback: DelayedResend},
			{Name: "cvr", Kind: KindESMM, Parent: "ctr", DelayedFeedback: DelayedFNW}},
	} {
		if _, err := NewTaskSet(cfgs); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
	s := mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", DelayedFeedback: DelayedFNW})
	if s.Delayed() != 1 || mustTasks(t, TaskConfig{Name: "ctr"}).Delayed() != -1 {
		t.Errorf("Delayed() = %d", s.Delayed())
	}
}

// refLoss is the loss LossTo should compute with a delayed-feedback task,
// written out directly: every task but the delayed one d averages over the
// rows where d's label is 0; d averages over all rows, with the
// fake-negative weights taken from the probabilities frozen (fixed at the
// point where the gradient is checked, as the stop-gradient makes them).
func refLoss(s *TaskSet, logits, labels [][]float32, w []float32, tw []float64, frozen [][]float64) float64 {
	d := s.Delayed()
	fnw := s.Task(d).DelayedFeedback == DelayedFNW
	ll := func(p, y float64) float64 { return -y*math.Log(p) - (1-y)*math.Log(1-p) }
	weight := func(p, y float64) float64 { // Ktena et al.: 1+p for positives, (1-p)(1+p) for negatives
		if y == 1 {
			return 1 + p
		}
		return (1 - p) * (1 + p)
	}
	sig := func(z float32) float64 { return 1 / (1 + math.Exp(-float64(z))) }
	n := len(logits[0])
	var total float64
	for t := range s.Len() {
		c := s.Task(t)
		var sum, W, msum, Wm float64
		for r := range n {
			if t != d && labels[d][r] == 1 {
				continue
			}
			y := float64(labels[t][r])
			p := sig(logits[t][r])
			if c.Kind == KindESMM {
				for _, h := range s.chain[t][1:] {
					p *= sig(logits[h][r])
				}
			}
			f := 1.0
			if t == d && fnw {
				f = weight(frozen[0][r], y)
			}
			sum += float64(w[r]) * f * ll(p, y)
			W += float64(w[r])
			if c.MaskedCVRWeight > 0 && labels[s.Parent(t)][r] == 1 {
				mf := 1.0
				if t == d && fnw {
					mf = weight(frozen[1][r], y)
				}
				msum += float64(w[r]) * mf * ll(sig(logits[t][r]), y)
				Wm += float64(w[r])
			}
		}
		l := sum / W
		if Wm > 0 {
			l += c.MaskedCVRWeight * msum / Wm
		}
		total += tw[t] * l
	}
	return total
}

// delayedBatch draws logits and labels as the join emits them: a row per
// impression (click c, conversion 0) and, for some clicked ones, a re-sent
// row (click 1, conversion 1).
func delayedBatch(rng *rand.Rand, T, n int, scale float64) (logits, labels [][]float32, w []float32) {
	logits, labels = make([][]float32, T), make([][]float32, T)
	for i := range T {
		logits[i], labels[i] = make([]float32, n), make([]float32, n)
		for r := range n {
			logits[i][r] = float32(scale * (2*rng.Float64() - 1))
		}
	}
	for r := range n {
		switch rng.IntN(3) {
		case 1: // a click
			labels[0][r] = 1
		case 2: // a re-sent conversion
			for i := range T {
				labels[i][r] = 1
			}
		}
	}
	w = make([]float32, n)
	for r := range w {
		w[r] = float32(0.2 + 2*rng.Float64())
	}
	return logits, labels, w
}

// checkDelayedGradient compares LossTo's gradient with central differences
// of refLoss (weights frozen at logits) and returns the mismatches; corrupt
// adds 10% to the largest gradient coordinate first.
func checkDelayedGradient(t *testing.T, s *TaskSet, logits, labels [][]float32, w []float32, tw []float64, corrupt bool) int {
	t.Helper()
	T, n := len(logits), len(logits[0])
	d := make([][]float32, T)
	for i := range d {
		d[i] = make([]float32, n)
	}
	losses, err := s.LossTo(nil, d, logits, labels, w, tw)
	if err != nil {
		t.Fatal(err)
	}
	// The frozen probabilities: the delayed task's own (its chain's
	// product) and its head's sigmoid (the masked term's).
	dt := s.Delayed()
	frozen := [][]float64{make([]float64, n), make([]float64, n)}
	for r := range n {
		p := 1.0
		for _, h := range s.chain[dt] {
			p /= 1 + math.Exp(-float64(logits[h][r]))
		}
		frozen[0][r] = p
		frozen[1][r] = 1 / (1 + math.Exp(-float64(logits[dt][r])))
	}
	var got float64
	for i, l := range losses {
		got += tw[i] * l
	}
	if want := refLoss(s, logits, labels, w, tw, frozen); math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
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
	for i := range T {
		for r := range n {
			z := logits[i][r]
			h := 1e-3 * math.Max(1, math.Abs(float64(z)))
			zp, zm := float32(float64(z)+h), float32(float64(z)-h)
			logits[i][r] = zp
			lp := refLoss(s, logits, labels, w, tw, frozen)
			logits[i][r] = zm
			lm := refLoss(s, logits, labels, w, tw, frozen)
			logits[i][r] = z
			fd := (lp - lm) / float64(zp-zm)
			if diff := math.Abs(fd - float64(d[i][r])); diff > 2e-4+2e-3*math.Abs(fd) {
				bad++
				if !corrupt {
					t.Errorf("head %d row %d logit %v: grad %v, finite difference %v", i, r, z, d[i][r], fd)
				}
			}
		}
	}
	return bad
}

func TestDelayedFeedbackGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	sets := map[string]*TaskSet{
		"esmm resend": mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", DelayedFeedback: DelayedResend}),
		"esmm fnw":    mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", DelayedFeedback: DelayedFNW}),
		"esmm fnw masked": mustTasks(t, TaskConfig{Name: "ctr"},
			TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr", DelayedFeedback: DelayedFNW, MaskedCVRWeight: 0.7}),
		"binary fnw": mustTasks(t, TaskConfig{Name: "click"}, TaskConfig{Name: "buy", DelayedFeedback: DelayedFNW}),
	}
	for name, s := range sets {
		for _, scale := range []float64{1, 4} {
			logits, labels, w := delayedBatch(rng, s.Len(), 23, scale)
			tw := []float64{0.5 + rng.Float64(), 0.5 + rng.Float64()}
			if bad := checkDelayedGradient(t, s, logits, labels, w, tw, false); bad != 0 {
				t.Errorf("%s scale %v: %d gradient mismatches", name, scale, bad)
			}
			// The check catches a 10% error in one coordinate.
			if bad := checkDelayedGradient(t, s, logits, labels, w, tw, true); bad != 1 {
				t.Errorf("%s scale %v: a 10%% error in one coordinate gave %d mismatches, want 1", name, scale, bad)
			}
		}
	}
}

// TestDelayedFeedbackFixedPoints trains a CTR and a CVR logit shared by all
// rows on the stream the join emits for a population with click rate a and
// conversion rate b among clicks: rows (click 0), weight 1-a; (click 1,
// conversion 0), weight a; re-sent (click 1, conversion 1), weight a·b.
// Only fake-negative weighting recovers pCTCVR = a·b; every mode that skips
// the re-sent rows in the CTR task recovers pCTR = a.
func TestDelayedFeedbackFixedPoints(t *testing.T) {
	const a, b = 0.2, 0.3
	labels := [][]float32{{0, 1, 1}, {0, 0, 1}}
	w := []float32{1 - a, a, a * b}
	for _, c := range []struct {
		mode           string
		masked         float64
		wantCTR, wantP float64
	}{
		{"", 0, (a + a*b) / (1 + a*b), a * b / (1 + a*b)}, // labels taken as final: the click counts twice
		{DelayedResend, 0, a, a * b / (1 + a*b)},
		{DelayedFNW, 0, a, a * b},
		{DelayedFNW, 1, a, a * b},
	} {
		s := mustTasks(t, TaskConfig{Name: "ctr"}, TaskConfig{Name: "cvr", Kind: KindESMM, Parent: "ctr",
			DelayedFeedback: c.mode, MaskedCVRWeight: c.masked})
		z := [2]float64{0, 0}
		d := [][]float32{make([]float32, 3), make([]float32, 3)}
		for range 20000 {
			logits := [][]float32{{float32(z[0]), float32(z[0]), float32(z[0])}, {float32(z[1]), float32(z[1]), float32(z[1])}}
			if _, err := s.LossTo(nil, d, logits, labels, w, nil); err != nil {
				t.Fatal(err)
			}
			for h := range 2 {
				var g float64
				for _, v := range d[h] {
					g += float64(v)
				}
				z[h] -= 4 * g
			}
		}
		ctr := 1 / (1 + math.Exp(-z[0]))
		p := ctr / (1 + math.Exp(-z[1]))
		if math.Abs(ctr-c.wantCTR) > 1e-4 || math.Abs(p-c.wantP) > 1e-4 {
			t.Errorf("mode %q masked %v: pCTR %.5f pCTCVR %.5f, want %.5f %.5f", c.mode, c.masked, ctr, p, c.wantCTR, c.wantP)
		}
	}
}
