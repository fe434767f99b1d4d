package mtl

import "math"

// This file holds the loss terms that tie a task to its parent, the
// previous step of a funnel, beyond ESMM's product: ESCM²'s counterfactual
// risk on an esmm head (TaskConfig.Counterfactual) and AITM's calibrator on
// a binary head (TaskConfig.CalibratorWeight).

// counterfactualLoss adds ESCM²'s counterfactual risk of esmm task t
// (CounterfactualIPW or CounterfactualDR, see there) over the rows skip
// does not hold: it returns Σ_r w_r·λ_c·term_r and adds scale·w_r·λ_c times
// the term's gradient to the task's head and, for dr, to its imputation
// head. The propensity is a constant: nothing reaches the parent's chain.
func (s *TaskSet) counterfactualLoss(t int, dLogits, logits, labels [][]float32, w []float32, scale float64, skip []float32) (float64, error) {
	c := s.tasks[t]
	p := s.parent[t]
	lambda := c.CounterfactualWeight
	minProp := 1 / c.IPWClip
	dr := c.Counterfactual == CounterfactualDR
	z, y, o, d := logits[t], labels[t], labels[p], dLogits[t]
	var u, du []float32
	if dr {
		u, du = logits[s.impute[t]], dLogits[s.impute[t]]
	}
	var sum float64
	for r := range z {
		if skip != nil && skip[r] >= 0.5 {
			continue
		}
		or := float64(o[r])
		if or != 0 && or != 1 {
			return 0, &LossError{Row: r, Value: or, Err: ErrLabel, Hint: "the parent's label (the propensity's event, e.g. the click) must be 0 or 1"}
		}
		wr := lambda
		if w != nil {
			wr *= float64(w[r])
		}
		// The inverse propensity o/ô, ô the parent's clipped probability.
		var ipw float64
		if or == 1 {
			var logP float64
			for _, h := range s.chain[p] {
				logP -= softplus(-float64(logits[h][r]))
			}
			ipw = 1 / max(math.Exp(logP), minProp)
		}
		zr, yr := float64(z[r]), float64(y[r])
		sig := sigmoid(zr)
		delta := softplus(zr) - yr*zr // logloss of the head's own sigmoid
		if !dr {
			if ipw == 0 {
				continue
			}
			sum += wr * ipw * delta
			d[r] += float32(scale * wr * ipw * (sig - yr))
			continue
		}
		if !finite32(u[r]) {
			return 0, errNonFiniteLogit
		}
		// The imputed label r̃ and error ê = logloss(r̃, pCVR); δ − ê =
		// (r̃ − y)·z.
		rt := sigmoid(float64(u[r]))
		imputed := softplus(zr) - rt*zr
		e := (rt - yr) * zr
		sum += wr * ((1-ipw)*imputed + ipw*delta + ipw*e*e)
		d[r] += float32(scale * wr * ((1-ipw)*(sig-rt) + ipw*(sig-yr)))
		du[r] += float32(scale * wr * 2 * ipw * (rt - yr) * zr * zr * rt * (1 - rt))
	}
	return sum, nil
}

// calibratorLoss adds AITM's behavioural-expectation calibrator of binary
// task t over the rows in its loss (rowIn): it returns Σ_r w_r·α·max(p_t −
// p_parent, 0) with p the heads' sigmoids, and adds scale·w_r·α times its
// gradient to both heads.
func (s *TaskSet) calibratorLoss(t int, dLogits, logits [][]float32, w []float32, scale float64, mask, skip []float32) (float64, error) {
	p := s.parent[t]
	alpha := s.tasks[t].CalibratorWeight
	zt, zp, dt, dp := logits[t], logits[p], dLogits[t], dLogits[p]
	var sum float64
	for r := range zt {
		if !rowIn(mask, skip, r) {
			continue
		}
		if !finite32(zp[r]) {
			return 0, errNonFiniteLogit
		}
		pt, pp := sigmoid(float64(zt[r])), sigmoid(float64(zp[r]))
		if pt <= pp {
			continue
		}
		wr := alpha
		if w != nil {
			wr *= float64(w[r])
		}
		sum += wr * (pt - pp)
		dt[r] += float32(scale * wr * pt * (1 - pt))
		dp[r] -= float32(scale * wr * pp * (1 - pp))
	}
	return sum, nil
}
